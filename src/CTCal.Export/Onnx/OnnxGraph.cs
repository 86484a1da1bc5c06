using System.Runtime.InteropServices;
using CTCal.Export.Onnx.Proto;
using Google.Protobuf;

namespace CTCal.Export.Onnx;

/// <summary>A model weight the graph uses: the diffusers state-dict key (also the ONNX initializer name) and the shape the
/// graph expects. Its bytes are streamed by <see cref="OnnxModelWriter"/> from an <see cref="IWeightSource"/>.</summary>
public sealed record WeightRequirement(string Name, long[] Shape);

/// <summary>A graph input or output: name, element type ("float32", "int32", ...) and dims (long = fixed, string = symbolic).</summary>
public sealed record TensorSignature(string Name, string ElementType, object[] Dims);

/// <summary>
/// Builds one ONNX graph in memory without any weight bytes: nodes with unique names, small constants, inputs/outputs
/// with symbolic dimensions, and a list of <see cref="WeightRequirement"/>s whose data is streamed at write time.
/// </summary>
/// <remarks>
/// Opset 17 (default domain, IR version 8): the oldest opset with <c>LayerNormalization</c>, and one that ONNX Runtime
/// 1.31 (CPU, CUDA) and DirectML fully implement. GroupNorm is written as Reshape [B, G, -1] + InstanceNormalization +
/// per-channel affine rather than <c>GroupNormalization</c>, whose scale/bias semantics changed between opsets 18 and 21
/// (per-group in 18, per-channel in 21) and which ORT's CPU provider and DirectML do not support uniformly.
/// </remarks>
public sealed class OnnxGraph
{
    public const int Opset = 17;
    public const long IrVersion = 8;

    /// <summary>ONNX Runtime's contrib-operator domain; its operator set is version 1.</summary>
    public const string ContribDomain = "com.microsoft";
    public const int ContribOpset = 1;

    private readonly List<NodeProto> _nodes = [];
    private readonly List<ValueInfoProto> _inputs = [];
    private readonly List<ValueInfoProto> _outputs = [];
    private readonly List<TensorSignature> _inputSignatures = [];
    private readonly List<TensorSignature> _outputSignatures = [];
    private readonly List<(TensorProto Tensor, byte[] Data)> _constants = [];
    private readonly Dictionary<string, WeightRequirement> _weights = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _weightValues = new(StringComparer.Ordinal);
    private readonly HashSet<string> _unusedWeights = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _opCounters = new(StringComparer.Ordinal);
    private int _constCounter;

    public OnnxGraph(string name, bool fp16Weights, FusedOps? fused = null)
    {
        Name = name;
        Fp16Weights = fp16Weights;
        Fused = fused ?? FusedOps.None;
    }

    /// <summary>The contrib-operator fusions the layer helpers (<see cref="OnnxOps"/>) may write.</summary>
    public FusedOps Fused { get; }

    /// <summary>Whether a <see cref="ContribDomain"/> node was added (the model then imports that operator set).</summary>
    public bool UsesContribOps { get; private set; }

    public string Name { get; }

    /// <summary>Weights are stored as FLOAT16 initializers followed by a Cast to float, so computation stays fp32.</summary>
    public bool Fp16Weights { get; }

    /// <summary>Prefix of node names created next (the diffusers module path, e.g. <c>down_blocks.0.resnets.1</c>).</summary>
    public string Scope { get; set; } = "";

    public IReadOnlyCollection<WeightRequirement> Weights => _weights.Values;

    /// <summary>
    /// State-dict keys of the model that this graph deliberately does not read because they cannot affect its outputs (SD3's
    /// last block's add_q_proj: its text queries are discarded). A LoRA may target them; the update then changes nothing.
    /// </summary>
    public IReadOnlyCollection<string> UnusedWeights => _unusedWeights;

    /// <summary>Records <paramref name="name"/> as a model tensor this graph does not need (see <see cref="UnusedWeights"/>).</summary>
    public void Unused(string name) => _unusedWeights.Add(name);

    public IReadOnlyList<NodeProto> Nodes => _nodes;

    public IReadOnlyList<TensorSignature> InputSignatures => _inputSignatures;

    public IReadOnlyList<TensorSignature> OutputSignatures => _outputSignatures;

    private static string TypeName(TensorProto.Types.DataType type) => type switch
    {
        TensorProto.Types.DataType.Float => "float32",
        TensorProto.Types.DataType.Float16 => "float16",
        TensorProto.Types.DataType.Int32 => "int32",
        TensorProto.Types.DataType.Int64 => "int64",
        _ => type.ToString().ToLowerInvariant(),
    };

    internal IReadOnlyList<(TensorProto Tensor, byte[] Data)> Constants => _constants;

    /// <summary>Weight name -> the value nodes read (the name itself, or with <see cref="Fp16Weights"/> its Cast's output).</summary>
    internal IReadOnlyDictionary<string, string> WeightValues => _weightValues;

    /// <summary>Whether a graph pass rewrote the graph to compute in float16 (<see cref="Float16Compute"/>).</summary>
    public bool ComputesInFloat16 { get; private set; }

    /// <summary>
    /// Replaces the node list with <paramref name="nodes"/> (a rewrite of this graph by <see cref="Onnx.Float16Compute"/>) and
    /// drops the constants no node reads any more.
    /// </summary>
    internal void ReplaceNodesForFloat16(IReadOnlyList<NodeProto> nodes)
    {
        _nodes.Clear();
        _nodes.AddRange(nodes);
        var read = new HashSet<string>(_nodes.SelectMany(n => n.Input), StringComparer.Ordinal);
        _constants.RemoveAll(c => !read.Contains(c.Tensor.Name));
        ComputesInFloat16 = true;
    }

    /// <summary>A FLOAT16 constant of <paramref name="shape"/> holding <paramref name="values"/> rounded to half precision.</summary>
    internal string ConstFloat16(ReadOnlySpan<float> values, long[] shape)
    {
        var data = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
            BitConverter.TryWriteBytes(data.AsSpan(i * 2), BitConverter.HalfToUInt16Bits((Half)values[i]));
        return AddConstant(TensorProto.Types.DataType.Float16, data, shape);
    }

    /// <summary>Appends a node built elsewhere (a graph pass's Cast) with a fresh unique name under <paramref name="scope"/>.</summary>
    internal NodeProto NewNode(string opType, string scope, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        string saved = Scope;
        Scope = scope;
        string name = NodeName(opType);
        Scope = saved;
        var node = new NodeProto { OpType = opType, Name = name, Domain = "" };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        return node;
    }

    /// <summary>Declares a graph input; a dimension is a <see cref="long"/> (fixed) or a <see cref="string"/> (symbolic).</summary>
    public string Input(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        _inputs.Add(ValueInfo(name, type, dims));
        _inputSignatures.Add(new TensorSignature(name, TypeName(type), dims));
        return name;
    }

    /// <summary>Declares <paramref name="value"/> as the graph output <paramref name="name"/> (through an Identity node).</summary>
    public void Output(string value, string name, TensorProto.Types.DataType type, params object[] dims)
    {
        Op("Identity", [value], output: name);
        _outputs.Add(ValueInfo(name, type, dims));
        _outputSignatures.Add(new TensorSignature(name, TypeName(type), dims));
    }

    private static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
        {
            shape.Dim.Add(d switch
            {
                string s => new TensorShapeProto.Types.Dimension { DimParam = s },
                int i => new TensorShapeProto.Types.Dimension { DimValue = i },
                long l => new TensorShapeProto.Types.Dimension { DimValue = l },
                _ => throw new ArgumentException($"dimension {d} of '{name}' must be int, long or string"),
            });
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    /// <summary>
    /// The weight <paramref name="name"/> (a state-dict key) with the expected <paramref name="shape"/>, as a float value.
    /// Using the same weight twice reuses one initializer.
    /// </summary>
    public string Weight(string name, params long[] shape)
    {
        if (_weights.TryGetValue(name, out var existing))
        {
            if (!existing.Shape.SequenceEqual(shape))
                throw new InvalidOperationException($"weight '{name}' used with shapes [{string.Join(",", existing.Shape)}] and [{string.Join(",", shape)}]");
            return _weightValues[name];
        }
        _weights[name] = new WeightRequirement(name, shape);
        string value = name;
        if (Fp16Weights)
        {
            value = name + "_fp32";
            AddNode("Cast", [name], [value], [Attr("to", (long)TensorProto.Types.DataType.Float)], name + "/Cast");
        }
        _weightValues[name] = value;
        return value;
    }

    public string ConstFloat(float[] values, params long[] shape) =>
        AddConstant(TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), shape);

    public string ConstInt64(params long[] values) =>
        AddConstant(TensorProto.Types.DataType.Int64, MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), [values.Length]);

    public string ScalarFloat(float value) =>
        AddConstant(TensorProto.Types.DataType.Float, BitConverter.GetBytes(value), []);

    public string ScalarInt64(long value) =>
        AddConstant(TensorProto.Types.DataType.Int64, BitConverter.GetBytes(value), []);

    private string AddConstant(TensorProto.Types.DataType type, byte[] data, long[] shape)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw data is little-endian");
        string name = $"const_{_constCounter++}";
        var tensor = new TensorProto { Name = name, DataType = (int)type };
        tensor.Dims.AddRange(shape);
        _constants.Add((tensor, data));
        return name;
    }

    /// <summary>Adds a node with one output and returns the output's name.</summary>
    public string Op(string opType, string[] inputs, string? output = null, params AttributeProto[] attributes)
    {
        string name = NodeName(opType);
        string outName = output ?? name + "_out";
        AddNode(opType, inputs, [outName], attributes, name);
        return outName;
    }

    /// <summary>Adds a <see cref="ContribDomain"/> node with one output and returns the output's name.</summary>
    public string ContribOp(string opType, string[] inputs, params AttributeProto[] attributes) =>
        ContribOpMulti(opType, inputs, [true], attributes)[0];

    /// <summary>
    /// Adds a <see cref="ContribDomain"/> node; <paramref name="wanted"/> says, per output position, whether that output is
    /// used (an unused optional output gets the empty name). Returns the names (empty where not wanted).
    /// </summary>
    public string[] ContribOpMulti(string opType, string[] inputs, bool[] wanted, params AttributeProto[] attributes)
    {
        string name = NodeName(opType);
        string[] outNames = wanted.Select((w, i) => w ? $"{name}_out{i}" : "").ToArray();
        AddNode(opType, inputs, outNames, attributes, name, ContribDomain);
        UsesContribOps = true;
        return outNames;
    }

    /// <summary>Adds a node with <paramref name="outputs"/> outputs and returns their names.</summary>
    public string[] OpMulti(string opType, string[] inputs, int outputs, params AttributeProto[] attributes)
    {
        string name = NodeName(opType);
        string[] outNames = Enumerable.Range(0, outputs).Select(i => $"{name}_out{i}").ToArray();
        AddNode(opType, inputs, outNames, attributes, name);
        return outNames;
    }

    private string NodeName(string opType)
    {
        string prefix = Scope.Length == 0 ? opType : $"{Scope}/{opType}";
        int n = _opCounters.TryGetValue(prefix, out int c) ? c : 0;
        _opCounters[prefix] = n + 1;
        return n == 0 ? prefix : $"{prefix}_{n}";
    }

    private void AddNode(string opType, string[] inputs, string[] outputs, AttributeProto[] attributes, string name, string domain = "")
    {
        var node = new NodeProto { OpType = opType, Name = name, Domain = domain };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        _nodes.Add(node);
    }

    public static AttributeProto Attr(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Attr(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto Attr(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    public static AttributeProto Attr(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>The graph without weight initializers (constants are included: they are small).</summary>
    internal GraphProto ToGraphProtoWithoutWeights()
    {
        var g = new GraphProto { Name = Name };
        g.Node.AddRange(_nodes);
        g.Input.AddRange(_inputs);
        g.Output.AddRange(_outputs);
        foreach (var (tensor, data) in _constants)
        {
            var t = tensor.Clone();
            t.RawData = ByteString.CopyFrom(data);
            g.Initializer.Add(t);
        }
        return g;
    }
}
