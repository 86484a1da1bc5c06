using System.Text;

namespace CTCal.Export.Onnx;

/// <summary>One dimension of a graph input or output: a fixed size, a symbolic name, or neither (unknown).</summary>
/// <param name="Value">The fixed size, or null.</param>
/// <param name="Param">The symbolic name (e.g. "batch"), or null.</param>
public readonly record struct OnnxDimension(long? Value, string? Param);

/// <summary>A graph input or output: its name, ONNX element type (1 float, 6 int32, 7 int64, 10 float16, ...) and dims.</summary>
public sealed record OnnxValueSummary(string Name, int ElementType, IReadOnlyList<OnnxDimension> Dims)
{
    /// <summary>The fixed size of dimension <paramref name="axis"/>, or null when it is symbolic, unknown or absent.</summary>
    public long? Fixed(int axis) => axis < Dims.Count ? Dims[axis].Value : null;
}

/// <summary>
/// What an ONNX model's graph declares, read without loading it: the inputs and outputs with their shapes, every
/// initializer's name and dims, and the node names and operator counts. The file is scanned as protobuf wire format
/// (ModelProto.graph = 7; GraphProto node = 1, initializer = 5, input = 11, output = 12), and tensor data
/// (<c>raw_data</c> and the typed data fields) is skipped with a seek, so a multi-gigabyte model with embedded weights
/// costs a few megabytes of reading. Used by the plugin to infer defaults of ONNX folders made by other tools.
/// </summary>
public sealed class OnnxModelSummary
{
    private OnnxModelSummary(string path) => Path = path;

    /// <summary>The file read.</summary>
    public string Path { get; }

    /// <summary>Graph inputs that are not initializers (IR &lt; 4 lists initializers as inputs too).</summary>
    public IReadOnlyList<OnnxValueSummary> Inputs => _inputs.Where(i => !_initializers.ContainsKey(i.Name)).ToList();

    /// <summary>Graph outputs.</summary>
    public IReadOnlyList<OnnxValueSummary> Outputs => _outputs;

    /// <summary>Initializer name -> dims.</summary>
    public IReadOnlyDictionary<string, long[]> Initializers => _initializers;

    /// <summary>Node names (empty names left out).</summary>
    public IReadOnlyList<string> NodeNames => _nodeNames;

    /// <summary>Operator type -> number of nodes.</summary>
    public IReadOnlyDictionary<string, int> OpTypes => _opTypes;

    private readonly List<OnnxValueSummary> _inputs = [];
    private readonly List<OnnxValueSummary> _outputs = [];
    private readonly Dictionary<string, long[]> _initializers = new(StringComparer.Ordinal);
    private readonly List<string> _nodeNames = [];
    private readonly Dictionary<string, int> _opTypes = new(StringComparer.Ordinal);

    /// <summary>The input named <paramref name="name"/>, or null.</summary>
    public OnnxValueSummary? Input(string name) => Inputs.FirstOrDefault(i => i.Name == name);

    /// <summary>The output named <paramref name="name"/>, or null.</summary>
    public OnnxValueSummary? Output(string name) => _outputs.FirstOrDefault(o => o.Name == name);

    /// <summary>Reads <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">not an ONNX model (truncated or malformed protobuf); names the file.</exception>
    public static OnnxModelSummary Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var summary = new OnnxModelSummary(path);
        var reader = new WireReader(stream, path);
        try
        {
            bool sawGraph = false;
            reader.ReadMessage(stream.Length, (field, wire) =>
            {
                if (field == 7 && wire == 2)
                {
                    sawGraph = true;
                    long end = reader.LengthEnd();
                    reader.ReadMessage(end, (f, w) => summary.ReadGraphField(reader, f, w));
                    return true;
                }
                return false;
            });
            if (!sawGraph) throw new InvalidDataException($"{path}: not an ONNX model (no graph)");
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path}: not an ONNX model (truncated protobuf)", e);
        }
        return summary;
    }

    private bool ReadGraphField(WireReader r, int field, int wire)
    {
        if (wire != 2) return false;
        long end = r.LengthEnd();
        switch (field)
        {
            case 1: // NodeProto
                string name = "", op = "";
                r.ReadMessage(end, (f, w) =>
                {
                    if (w != 2) return false;
                    if (f == 3) { name = r.String(); return true; }
                    if (f == 4) { op = r.String(); return true; }
                    return false;
                });
                if (name.Length > 0) _nodeNames.Add(name);
                _opTypes[op] = _opTypes.GetValueOrDefault(op) + 1;
                return true;
            case 5: // TensorProto
                string tensor = "";
                var dims = new List<long>();
                r.ReadMessage(end, (f, w) =>
                {
                    if (f == 1 && w == 0) { dims.Add((long)r.Varint()); return true; }
                    if (f == 1 && w == 2) { long e = r.LengthEnd(); while (r.Position < e) dims.Add((long)r.Varint()); return true; }
                    if (f == 8 && w == 2) { tensor = r.String(); return true; }
                    return false;
                });
                _initializers[tensor] = [.. dims];
                return true;
            case 11:
                _inputs.Add(ReadValueInfo(r, end));
                return true;
            case 12:
                _outputs.Add(ReadValueInfo(r, end));
                return true;
            default:
                r.SkipTo(end);
                return true;
        }
    }

    private static OnnxValueSummary ReadValueInfo(WireReader r, long end)
    {
        string name = "";
        int elementType = 0;
        var dims = new List<OnnxDimension>();
        r.ReadMessage(end, (f, w) =>
        {
            if (f == 1 && w == 2) { name = r.String(); return true; }
            if (f != 2 || w != 2) return false;
            r.ReadMessage(r.LengthEnd(), (tf, tw) => // TypeProto
            {
                if (tf != 1 || tw != 2) return false;
                r.ReadMessage(r.LengthEnd(), (xf, xw) => // TypeProto.Tensor
                {
                    if (xf == 1 && xw == 0) { elementType = (int)r.Varint(); return true; }
                    if (xf != 2 || xw != 2) return false;
                    r.ReadMessage(r.LengthEnd(), (sf, sw) => // TensorShapeProto
                    {
                        if (sf != 1 || sw != 2) return false;
                        long? value = null;
                        string? param = null;
                        r.ReadMessage(r.LengthEnd(), (df, dw) => // Dimension
                        {
                            if (df == 1 && dw == 0) { value = (long)r.Varint(); return true; }
                            if (df == 2 && dw == 2) { param = r.String(); return true; }
                            return false;
                        });
                        dims.Add(new OnnxDimension(value, param));
                        return true;
                    });
                    return true;
                });
                return true;
            });
            return true;
        });
        return new OnnxValueSummary(name, elementType, dims);
    }

    /// <summary>Protobuf wire-format reading over a seekable stream; unknown fields are skipped by seeking.</summary>
    private sealed class WireReader(Stream stream, string path)
    {
        public long Position => stream.Position;

        /// <summary>Reads fields until <paramref name="end"/>; <paramref name="handle"/> returns false to have a field skipped.</summary>
        public void ReadMessage(long end, Func<int, int, bool> handle)
        {
            while (stream.Position < end)
            {
                ulong key = Varint();
                int field = (int)(key >> 3), wire = (int)(key & 7);
                long start = stream.Position;
                if (handle(field, wire)) continue;
                stream.Position = start;
                Skip(wire);
            }
            if (stream.Position != end) throw new InvalidDataException($"{path}: malformed protobuf (a field overruns its message at byte {stream.Position})");
        }

        /// <summary>Reads a length prefix and returns where the field ends.</summary>
        public long LengthEnd()
        {
            long length = (long)Varint();
            long end = stream.Position + length;
            if (length < 0 || end > stream.Length) throw new InvalidDataException($"{path}: malformed protobuf (length {length} at byte {stream.Position} runs past the end)");
            return end;
        }

        public string String()
        {
            long end = LengthEnd();
            var bytes = new byte[end - stream.Position];
            stream.ReadExactly(bytes);
            return Encoding.UTF8.GetString(bytes);
        }

        public ulong Varint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                int b = stream.ReadByte();
                if (b < 0) throw new EndOfStreamException();
                result |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return result;
            }
            throw new InvalidDataException($"{path}: malformed protobuf (varint longer than 10 bytes at byte {stream.Position})");
        }

        public void SkipTo(long end) => stream.Position = end;

        private void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: SkipTo(stream.Position + 8); break;
                case 2: SkipTo(LengthEnd()); break;
                case 5: SkipTo(stream.Position + 4); break;
                default: throw new InvalidDataException($"{path}: malformed protobuf (wire type {wire} at byte {stream.Position})");
            }
            if (stream.Position > stream.Length) throw new EndOfStreamException();
        }
    }
}
