using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// Records the attention probabilities softmax(Q K^T / sqrt(d)) of chosen attention layers during one
/// <see cref="UNet2DConditionModel"/> or <see cref="SD3Transformer2DModel"/> forward pass, keyed by module path
/// (<c>down_blocks.0.attentions.0.transformer_blocks.0.attn2</c>, <c>transformer_blocks.3.attn</c>). Layers are matched by
/// path, never by call order.
/// </summary>
/// <remarks>
/// UNet: each map is [batch, heads, H*W, tokens] in the dtype the layer computed its scores in (fp32 when upcast).
/// SD3: each map is the image-query x text-key block of the joint softmax over image + text keys,
/// [batch, heads, (H/p)*(W/p), text tokens], fp32; its rows are not renormalised over the text keys.
/// Maps are not detached: under autograd (the student pass) they keep the graph for backprop; run the teacher pass
/// under <c>torch.no_grad()</c>. Ownership: after the forward the maps join the dispose scope that was current when
/// the forward was called (like the returned noise prediction); <see cref="Clear"/> and <see cref="Dispose"/> also
/// dispose them, whichever comes first (disposing twice is harmless). A capture records one forward pass: a second
/// forward with the same capture throws until <see cref="Clear"/> is called.
/// <code>
/// using var step = torch.NewDisposeScope();                       // per training step
/// using var student = new AttentionCapture(paths);
/// var eps = unet.forward(noisyStudent, tStudent, text, student);  // maps keep the graph
/// using var teacher = new AttentionCapture(paths);
/// using (torch.no_grad()) unet.forward(noisyTeacher, tTeacher, text, teacher);
/// var loss = ...(student.Maps[path], teacher.Maps[path]) ...;     // [B, heads, HW, tokens]
/// loss.backward();                                                // step scope frees maps and outputs
/// </code>
/// </remarks>
public sealed class AttentionCapture : IDisposable
{
    private readonly HashSet<string> _paths;
    private readonly Dictionary<string, Tensor> _maps = new(StringComparer.Ordinal);

    /// <param name="paths">Attention module paths; a trailing <c>.processor</c> (diffusers' processor names) is accepted and dropped.</param>
    public AttentionCapture(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        _paths = new HashSet<string>(paths.Select(Normalize), StringComparer.Ordinal);
        if (_paths.Count == 0) throw new ArgumentException("an attention capture needs at least one layer path", nameof(paths));
    }

    /// <summary>Every cross-attention (attn2) layer of <paramref name="unet"/> whose maps have H = latent height / <paramref name="downscale"/>.</summary>
    public static AttentionCapture AtDownscale(UNet2DConditionModel unet, int downscale)
    {
        ArgumentNullException.ThrowIfNull(unet);
        return AtDownscale(unet.CrossAttentionPaths, downscale, "the UNet has no cross-attention layer");
    }

    /// <summary>
    /// Every layer of <paramref name="layers"/> (a model's <see cref="UNet2DConditionModel.CrossAttentionPaths"/> or
    /// <see cref="SD3Transformer2DModel.JointAttentionPaths"/>) whose maps have side = latent side / <paramref name="downscale"/>.
    /// </summary>
    public static AttentionCapture AtDownscale(IEnumerable<CrossAttentionLayer> layers, int downscale)
    {
        ArgumentNullException.ThrowIfNull(layers);
        return AtDownscale(layers.ToList(), downscale, "no attention layer");
    }

    private static AttentionCapture AtDownscale(IReadOnlyList<CrossAttentionLayer> layers, int downscale, string none)
    {
        var paths = layers.Where(l => l.Downscale == downscale).Select(l => l.Path).ToList();
        if (paths.Count == 0)
        {
            string have = string.Join(", ", layers.Select(l => l.Downscale).Distinct());
            throw new ArgumentException($"{none} at downscale {downscale} (available: {have})", nameof(downscale));
        }
        return new AttentionCapture(paths);
    }

    /// <summary>Every cross-attention layer whose maps are <paramref name="resolution"/> x <paramref name="resolution"/> for a <paramref name="latentSize"/> latent.</summary>
    public static AttentionCapture AtResolution(UNet2DConditionModel unet, int latentSize, int resolution)
    {
        if (resolution <= 0 || latentSize % resolution != 0)
            throw new ArgumentException($"resolution {resolution} does not divide the latent size {latentSize}", nameof(resolution));
        return AtDownscale(unet, latentSize / resolution);
    }

    /// <summary>
    /// SD3 joint attention only: record each image query's softmax over the <b>text keys alone</b>, softmax(Q_image K_textᵀ /
    /// sqrt(d)) [B, heads, image tokens, text tokens], instead of the image x text block of the joint softmax. It equals that
    /// block with each row divided by its sum over the text keys (a distribution over the text tokens, like a UNet's
    /// cross-attention map), and costs N x L scores instead of N x (N + L): the layer's output then keeps the fused kernel.
    /// UNet cross-attention ignores it (its maps are already softmaxes over the text tokens). Default false.
    /// </summary>
    public bool NormaliseOverText { get; init; }

    /// <summary>The requested module paths.</summary>
    public IReadOnlyCollection<string> Paths => _paths;

    /// <summary>Probability maps [batch, heads, H*W, tokens] by module path, filled by the last forward pass (see the remarks for SD3).</summary>
    public IReadOnlyDictionary<string, Tensor> Maps => _maps;

    internal bool Wants(string path) => _paths.Contains(path);

    internal void Record(string path, Tensor probs)
    {
        if (_maps.ContainsKey(path))
            throw new InvalidOperationException($"attention layer '{path}' ran twice in one forward pass");
        // The capture holds the map outside the block scopes; the model's forward attaches it to the caller's scope.
        _maps[path] = probs.DetachFromDisposeScope();
    }

    internal void BeginForward(IReadOnlyCollection<string> available)
    {
        if (_maps.Count > 0)
            throw new InvalidOperationException("this AttentionCapture already holds maps from a forward pass; call Clear() or use a new capture");
        var unknown = _paths.Where(p => !available.Contains(p)).OrderBy(p => p, StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException(
                $"unknown attention layer path(s): {string.Join(", ", unknown)}; the model's attention layers look like '{available.FirstOrDefault()}'");
    }

    internal void EndForward(DisposeScope? callerScope)
    {
        var missing = _paths.Where(p => !_maps.ContainsKey(p)).ToList();
        if (missing.Count > 0)
            throw new InvalidOperationException($"attention layer(s) did not run in the forward pass: {string.Join(", ", missing)}");
        if (callerScope is not null)
            foreach (var map in _maps.Values) callerScope.Attach(map);
    }

    /// <summary>Disposes the recorded maps and empties <see cref="Maps"/> so the capture can record another pass.</summary>
    public void Clear()
    {
        foreach (var map in _maps.Values) map.Dispose();
        _maps.Clear();
    }

    public void Dispose() => Clear();

    private static string Normalize(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        return path.EndsWith(".processor", StringComparison.Ordinal) ? path[..^".processor".Length] : path;
    }
}

/// <summary>
/// A capturable attention layer: its module path, map downscale factor (latent size / map size) and head count. The UNet's
/// cross-attention (attn2) layers; SD3's joint attention layers, whose downscale is the patch size.
/// </summary>
public sealed record CrossAttentionLayer(string Path, int Downscale, int Heads);

/// <summary>An attention layer that reports its probabilities to its model's <see cref="AttentionCaptureSlot"/>.</summary>
internal interface ICapturableAttention
{
    /// <summary>Sets the layer's module path and the slot it reports to.</summary>
    void Bind(string path, AttentionCaptureSlot slot);
}

/// <summary>The capture an attention layer reports to during the current forward pass (shared by all layers of one model).</summary>
internal sealed class AttentionCaptureSlot
{
    public AttentionCapture? Current { get; set; }

    /// <summary>
    /// Gives every capturable attention layer under <paramref name="model"/> its module path and this slot; returns the
    /// paths in module order.
    /// </summary>
    public IReadOnlyList<string> BindAll(nn.Module model)
    {
        var paths = new List<string>();
        foreach (var (name, module) in model.named_modules())
        {
            if (module is ICapturableAttention attention)
            {
                attention.Bind(name, this);
                paths.Add(name);
            }
        }
        return paths;
    }

    /// <summary>
    /// One forward pass of the model that owns this slot, with <paramref name="capture"/> current: refuses re-entry,
    /// checks the capture's paths against <paramref name="attentionPaths"/> before anything runs, runs
    /// <paramref name="run"/> in a dispose scope of its own, and hands the output and the captured maps to the caller's
    /// scope (a failed pass clears the capture).
    /// </summary>
    public Tensor Forward(string model, AttentionCapture? capture, IReadOnlyCollection<string> attentionPaths, Func<Tensor> run)
    {
        if (Current is not null) throw new InvalidOperationException($"{model}.forward is not re-entrant");
        var callerScope = torch.CurrentDisposeScope;
        capture?.BeginForward(attentionPaths);
        Current = capture;
        try
        {
            using var scope = torch.NewDisposeScope();
            var output = run();
            capture?.EndForward(callerScope);
            return output.MoveToOuterDisposeScope();
        }
        catch
        {
            capture?.Clear();
            throw;
        }
        finally
        {
            Current = null;
        }
    }
}
