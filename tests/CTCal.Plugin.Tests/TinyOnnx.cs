using System.Text;

namespace CTCal.Tests;

/// <summary>
/// Writes tiny ONNX models by hand (protobuf wire format, onnx.proto field numbers) so tests can exercise the
/// pipeline's input handling without an exporter: <see cref="Graph"/> collects nodes, initializers, inputs, outputs.
/// </summary>
internal static class TinyOnnx
{
    public const int Float = 1;
    public const int Int32 = 6;
    public const int Int64 = 7;
    public const int Float16 = 10;
    public const int Double = 11;

    /// <summary>A graph under construction. Dimensions are <c>long</c> (fixed) or <c>string</c> (symbolic).</summary>
    public sealed class Graph
    {
        private readonly List<byte[]> _nodes = new();
        private readonly List<byte[]> _initializers = new();
        private readonly List<byte[]> _inputs = new();
        private readonly List<byte[]> _outputs = new();

        public Graph Input(string name, int elemType, params object[] dims)
        {
            _inputs.Add(ValueInfo(name, elemType, dims));
            return this;
        }

        public Graph Output(string name, int elemType, params object[] dims)
        {
            _outputs.Add(ValueInfo(name, elemType, dims));
            return this;
        }

        public Graph Init(string name, long[] dims, float[] values)
        {
            var bytes = new byte[values.Length * 4];
            Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
            _initializers.Add(Tensor(name, Float, dims, bytes));
            return this;
        }

        public Graph Init(string name, long[] dims, long[] values)
        {
            var bytes = new byte[values.Length * 8];
            Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
            _initializers.Add(Tensor(name, Int64, dims, bytes));
            return this;
        }

        /// <summary>Adds a node; attributes are (name, value) with value int/long, float, long[] or float[].</summary>
        public Graph Node(string op, string[] inputs, string[] outputs, params (string Name, object Value)[] attributes)
        {
            var node = new Pb();
            foreach (var i in inputs)
            {
                node.String(1, i);
            }

            foreach (var o in outputs)
            {
                node.String(2, o);
            }

            node.String(3, $"{op}_{_nodes.Count}");
            node.String(4, op);
            foreach (var (name, value) in attributes)
            {
                var a = new Pb();
                a.String(1, name);
                switch (value)
                {
                    case float f:
                        a.Fixed32(2, BitConverter.SingleToInt32Bits(f));
                        a.Int(20, 1);
                        break;
                    case int n:
                        a.Int(3, n);
                        a.Int(20, 2);
                        break;
                    case long n:
                        a.Int(3, n);
                        a.Int(20, 2);
                        break;
                    case long[] ns:
                        foreach (var n in ns)
                        {
                            a.Int(8, n);
                        }

                        a.Int(20, 7);
                        break;
                    default:
                        throw new ArgumentException($"attribute type {value.GetType()}");
                }

                node.Message(5, a);
            }

            _nodes.Add(node.ToArray());
            return this;
        }

        /// <summary>A Cast of <paramref name="input"/> to <paramref name="to"/> named <paramref name="output"/>, when <paramref name="apply"/>.</summary>
        public Graph CastIf(bool apply, string input, string output, int to) =>
            apply ? Node("Cast", new[] { input }, new[] { output }, ("to", (long)to)) : this;

        /// <summary>Writes the model (IR 7, default opset <paramref name="opset"/>) to <paramref name="path"/>.</summary>
        public void Save(string path, int opset = 13)
        {
            var graph = new Pb();
            foreach (var n in _nodes)
            {
                graph.Bytes(1, n);
            }

            graph.String(2, "tiny");
            foreach (var t in _initializers)
            {
                graph.Bytes(5, t);
            }

            foreach (var i in _inputs)
            {
                graph.Bytes(11, i);
            }

            foreach (var o in _outputs)
            {
                graph.Bytes(12, o);
            }

            var model = new Pb();
            model.Int(1, 7);
            model.String(2, "ctcal-tests");
            var opsetId = new Pb();
            opsetId.Int(2, opset);
            model.Message(8, opsetId);
            model.Message(7, graph);
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            File.WriteAllBytes(path, model.ToArray());
        }

        private static byte[] Tensor(string name, int type, long[] dims, byte[] raw)
        {
            var t = new Pb();
            foreach (var d in dims)
            {
                t.Int(1, d);
            }

            t.Int(2, type);
            t.String(8, name);
            t.Bytes(9, raw);
            return t.ToArray();
        }

        private static byte[] ValueInfo(string name, int elemType, object[] dims)
        {
            var shape = new Pb();
            foreach (var d in dims)
            {
                var dim = new Pb();
                if (d is string param)
                {
                    dim.String(2, param);
                }
                else
                {
                    dim.Int(1, Convert.ToInt64(d));
                }

                shape.Message(1, dim);
            }

            var tensor = new Pb();
            tensor.Int(1, elemType);
            tensor.Message(2, shape);
            var type = new Pb();
            type.Message(1, tensor);
            var info = new Pb();
            info.String(1, name);
            info.Message(2, type);
            return info.ToArray();
        }
    }

    /// <summary>Protobuf wire-format writer: varints, length-delimited fields, fixed32.</summary>
    private sealed class Pb
    {
        private readonly MemoryStream _stream = new();

        public void Int(int field, long value)
        {
            Tag(field, 0);
            Varint((ulong)value);
        }

        public void Fixed32(int field, int value)
        {
            Tag(field, 5);
            _stream.Write(BitConverter.GetBytes(value));
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Message(int field, Pb message) => Bytes(field, message.ToArray());

        public void Bytes(int field, byte[] value)
        {
            Tag(field, 2);
            Varint((ulong)value.Length);
            _stream.Write(value);
        }

        public byte[] ToArray() => _stream.ToArray();

        private void Tag(int field, int wire) => Varint((ulong)((field << 3) | wire));

        private void Varint(ulong value)
        {
            while (value >= 0x80)
            {
                _stream.WriteByte((byte)(value | 0x80));
                value >>= 7;
            }

            _stream.WriteByte((byte)value);
        }
    }
}
