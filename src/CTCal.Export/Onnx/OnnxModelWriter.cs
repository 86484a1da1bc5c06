using System.Security.Cryptography;
using CTCal.Export.Onnx.Proto;
using Google.Protobuf;

namespace CTCal.Export.Onnx;

/// <summary>Supplies weight bytes at write time. Implementations stream them (memory-mapped file, per-tensor buffers).</summary>
public interface IWeightSource
{
    /// <summary>Writes the tensor <paramref name="name"/> as little-endian float32 or (when <paramref name="fp16"/>) float16,
    /// exactly element-count x element-size bytes, to <paramref name="destination"/>.</summary>
    void Write(string name, bool fp16, Stream destination);
}

/// <summary>A file the writer produced, relative to the component folder, with its SHA-256.</summary>
public sealed record WrittenFile(string RelativePath, long Bytes, string Sha256);

/// <summary>
/// Serializes an <see cref="OnnxGraph"/> to <c>model.onnx</c> while streaming the weights, so no protobuf object ever holds
/// weight bytes. Below <see cref="DefaultExternalDataThreshold"/> the initializers are embedded: the writer emits the
/// ModelProto/GraphProto framing itself (lengths computed up front) and copies each tensor's bytes straight into the
/// <c>raw_data</c> field. Above it (protobuf messages are limited to 2 GiB) the tensors go to <c>model.onnx.data</c>
/// beside the model (ONNX external data: relative location, offset, length; tensors of 1 MiB or more aligned to 64 KiB).
/// </summary>
public static class OnnxModelWriter
{
    public const long DefaultExternalDataThreshold = 2_000_000_000;
    public const string ModelFileName = "model.onnx";
    public const string DataFileName = "model.onnx.data";
    private const long Alignment = 64 * 1024;
    private const long AlignFrom = 1024 * 1024;

    /// <summary>Writes the model into <paramref name="directory"/> and returns the files written.</summary>
    /// <param name="onBytes">Called with the number of weight bytes written so far (for progress).</param>
    public static IReadOnlyList<WrittenFile> Write(OnnxGraph graph, IWeightSource weights, string directory, long externalDataThreshold,
        Action<long>? onBytes = null, CancellationToken ct = default)
    {
        Directory.CreateDirectory(directory);
        var model = new ModelProto
        {
            IrVersion = OnnxGraph.IrVersion,
            ProducerName = "CTCal.Export",
            ProducerVersion = typeof(OnnxModelWriter).Assembly.GetName().Version?.ToString() ?? "0",
            DocString = $"{graph.Name} exported by CTCal.Export from diffusers safetensors",
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = OnnxGraph.Opset });
        if (graph.UsesContribOps) model.OpsetImport.Add(new OperatorSetIdProto { Domain = OnnxGraph.ContribDomain, Version = OnnxGraph.ContribOpset });

        var tensors = graph.Weights.Select(w => new WeightTensor(w, graph.Fp16Weights)).ToList();
        long totalBytes = tensors.Sum(t => t.ByteLength);
        var gp = graph.ToGraphProtoWithoutWeights();
        long written = 0;
        void Progress(long n)
        {
            written += n;
            onBytes?.Invoke(written);
        }

        string modelPath = Path.Combine(directory, ModelFileName);
        // a protobuf message (and so an embedded model) must stay below 2 GiB whatever threshold is asked for
        long embedLimit = Math.Min(externalDataThreshold, int.MaxValue - (16L << 20));
        if (totalBytes + gp.CalculateSize() < embedLimit)
        {
            using var hashing = new HashingStream(new FileStream(modelPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20));
            WriteEmbedded(model, gp, tensors, weights, hashing, Progress, ct);
            hashing.Flush();
            return [new WrittenFile(ModelFileName, hashing.Length, hashing.HashHex())];
        }

        string dataPath = Path.Combine(directory, DataFileName);
        WrittenFile dataFile;
        using (var data = new HashingStream(new FileStream(dataPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20)))
        {
            foreach (var t in tensors)
            {
                ct.ThrowIfCancellationRequested();
                if (t.ByteLength >= AlignFrom && data.Length % Alignment != 0)
                    data.Write(new byte[Alignment - data.Length % Alignment]);
                long offset = data.Length;
                WriteTensorData(t, weights, data, Progress);
                var header = t.Header();
                header.DataLocation = TensorProto.Types.DataLocation.External;
                header.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = DataFileName });
                header.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                header.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = t.ByteLength.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                gp.Initializer.Add(header);
            }
            data.Flush();
            dataFile = new WrittenFile(DataFileName, data.Length, data.HashHex());
        }
        model.Graph = gp;
        using (var file = new HashingStream(new FileStream(modelPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20)))
        {
            model.WriteTo(file);
            file.Flush();
            return [new WrittenFile(ModelFileName, file.Length, file.HashHex()), dataFile];
        }
    }

    // ModelProto fields, then field 7 (graph) framed by hand: GraphProto fields, then each initializer (field 5) whose
    // raw_data (field 9) bytes are copied from the weight source. Protobuf parsers accept fields in any order.
    private static void WriteEmbedded(ModelProto model, GraphProto gp, List<WeightTensor> tensors, IWeightSource weights, Stream output,
        Action<long> progress, CancellationToken ct)
    {
        var headers = tensors.Select(t => t.Header()).ToList();
        var sizes = new long[tensors.Count];
        long graphSize = gp.CalculateSize();
        for (int i = 0; i < tensors.Count; i++)
        {
            long rawField = CodedOutputStream.ComputeTagSize(TensorProto.RawDataFieldNumber) + LengthSize(tensors[i].ByteLength) + tensors[i].ByteLength;
            sizes[i] = headers[i].CalculateSize() + rawField;
            graphSize += CodedOutputStream.ComputeTagSize(GraphProto.InitializerFieldNumber) + LengthSize(sizes[i]) + sizes[i];
        }
        if (graphSize > int.MaxValue) throw new InvalidOperationException($"graph '{gp.Name}' is {graphSize} bytes, too large to embed; use external data");

        var cos = new CodedOutputStream(output, leaveOpen: true);
        model.WriteTo(cos);
        cos.WriteTag(ModelProto.GraphFieldNumber, WireFormat.WireType.LengthDelimited);
        cos.WriteLength((int)graphSize);
        gp.WriteTo(cos);
        for (int i = 0; i < tensors.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            cos.WriteTag(GraphProto.InitializerFieldNumber, WireFormat.WireType.LengthDelimited);
            cos.WriteLength((int)sizes[i]);
            headers[i].WriteTo(cos);
            cos.WriteTag(TensorProto.RawDataFieldNumber, WireFormat.WireType.LengthDelimited);
            cos.WriteLength((int)tensors[i].ByteLength);
            cos.Flush();
            WriteTensorData(tensors[i], weights, output, progress);
        }
        cos.Flush();
    }

    private static int LengthSize(long length) => CodedOutputStream.ComputeLengthSize(checked((int)length));

    private static void WriteTensorData(WeightTensor t, IWeightSource weights, Stream output, Action<long> progress)
    {
        long before = output.Position;
        weights.Write(t.Requirement.Name, t.Fp16, output);
        long n = output.Position - before;
        if (n != t.ByteLength)
            throw new InvalidOperationException($"weight '{t.Requirement.Name}': wrote {n} bytes, expected {t.ByteLength}");
        progress(n);
    }

    private sealed record WeightTensor(WeightRequirement Requirement, bool Fp16)
    {
        public long ByteLength => Requirement.Shape.Aggregate(1L, (a, b) => a * b) * (Fp16 ? 2 : 4);

        public TensorProto Header()
        {
            var t = new TensorProto
            {
                Name = Requirement.Name,
                DataType = (int)(Fp16 ? TensorProto.Types.DataType.Float16 : TensorProto.Types.DataType.Float),
            };
            t.Dims.AddRange(Requirement.Shape);
            return t;
        }
    }

    /// <summary>Write-only stream that hashes (SHA-256) and counts what passes through; owns the inner stream.</summary>
    private sealed class HashingStream(Stream inner) : Stream
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private long _length;

        public string HashHex() => Convert.ToHexString(_hash.GetHashAndReset()).ToLowerInvariant();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => _length;
        public override long Position { get => _length; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            _hash.AppendData(buffer);
            inner.Write(buffer);
            _length += buffer.Length;
        }

        public override void WriteByte(byte value) => Write([value]);

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
                _hash.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
