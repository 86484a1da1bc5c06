using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// Gradient checkpointing for the UNet's resnet and transformer blocks (one per <see cref="UNet2DConditionModel"/>, shared
/// by its blocks): while <see cref="Enabled"/> and autograd is recording, a block runs without keeping its intermediate
/// activations and is run again inside the backward pass to get its gradients (<see cref="CheckpointFunction"/>).
/// Only the block's inputs are kept (the boundaries between blocks); everything inside a block lives from its forward to
/// the end of the forward call, and again only while its own backward runs.
/// </summary>
/// <remarks>
/// Exact: the block's recomputation replays the same operations on the same inputs and weights. The UNet has no random
/// operation in its forward pass (its feed-forward dropout has p = 0; LoRA dropout masks are drawn when the adapters are
/// folded into the weights, before the forward), so nothing needs replaying from an RNG state; <see cref="Run"/> refuses a
/// training-mode dropout with p &gt; 0 in a checkpointed block.
/// <para>Attention capture: the block's forward records the maps the caller's <see cref="AttentionCapture"/> wants into a
/// capture of its own; they leave the block as extra outputs of the checkpoint node and are recorded into the caller's
/// capture once, so they keep their graph (the CTCal loss backpropagates through them). The recomputation in backward
/// records into another private capture, never into the caller's.</para>
/// </remarks>
internal sealed class GradientCheckpointing : IDisposable
{
    private readonly AttentionCaptureSlot _slot;
    private readonly List<Tensor> _returned = [];
    private readonly object _gate = new();

    public GradientCheckpointing(AttentionCaptureSlot slot) => _slot = slot;

    /// <summary>When true, blocks run under checkpointing whenever autograd is recording (never under no_grad).</summary>
    public bool Enabled { get; set; }

    /// <summary>Blocks run again in backward so far (for tests and diagnostics).</summary>
    public long Recomputations => Interlocked.Read(ref _recomputations);

    private long _recomputations;

    /// <summary>
    /// Runs <paramref name="body"/> on <paramref name="inputs"/> (null entries allowed), checkpointed when enabled and
    /// autograd is recording, directly otherwise. The result belongs to the caller's dispose scope.
    /// </summary>
    /// <param name="module">The block: its parameters that require grad get their gradients through the checkpoint.</param>
    /// <param name="body">The block's forward; it must not draw random numbers.</param>
    public Tensor Run(nn.Module module, Func<Tensor?[], Tensor> body, params Tensor?[] inputs)
    {
        if (!Enabled || !is_grad_enabled()) return body(inputs);
        var parameters = module.parameters().Where(p => p.requires_grad).Cast<Tensor>().ToList();
        bool anyGrad = parameters.Count > 0 || inputs.Any(t => t is not null && t.requires_grad);
        if (!anyGrad) return body(inputs); // nothing to differentiate: no graph either way
        foreach (var (name, m) in module.named_modules())
            if (m is TorchSharp.Modules.Dropout d && d.training && d.p > 0)
                throw new InvalidOperationException($"gradient checkpointing cannot replay the dropout '{name}' (p = {d.p}) exactly");

        var user = _slot.Current;
        var segment = new CheckpointSegment(this, body, inputs.Length, user?.Paths);
        var args = new object?[1 + inputs.Length + parameters.Count];
        args[0] = segment;
        for (int i = 0; i < inputs.Length; i++) args[1 + i] = inputs[i];
        for (int i = 0; i < parameters.Count; i++) args[1 + inputs.Length + i] = parameters[i];
        List<Tensor> outputs;
        try
        {
            outputs = CheckpointFunction.apply(args!);
        }
        finally
        {
            _slot.Current = user;
            segment.DisposeForwardMaps();
        }
        // outputs[0] is the block's result; the rest are its captured maps in segment.Paths order, now with the checkpoint's grad_fn.
        for (int i = 0; i < segment.Paths.Count; i++) user!.Record(segment.Paths[i], outputs[1 + i]);
        return outputs[0];
    }

    /// <summary>Runs a segment's body with <paramref name="capture"/> as the model's current capture.</summary>
    internal List<Tensor> RunBody(CheckpointSegment segment, Tensor?[] inputs, AttentionCapture? capture, List<string>? paths)
    {
        if (paths is not null) Interlocked.Increment(ref _recomputations);
        var previous = _slot.Current;
        _slot.Current = capture;
        try
        {
            Tensor output;
            using (var scope = NewDisposeScope()) output = segment.Body(inputs).MoveToOuterDisposeScope();
            var result = new List<Tensor> { output };
            if (capture is null) return result;
            if (paths is null)
            {
                paths = capture.Maps.Keys.ToList();
                segment.Paths = paths;
            }
            else if (capture.Maps.Count != paths.Count || paths.Any(p => !capture.Maps.ContainsKey(p)))
            {
                throw new InvalidOperationException("a checkpointed block recorded different attention layers when run again");
            }
            result.AddRange(paths.Select(p => capture.Maps[p]));
            return result;
        }
        finally
        {
            _slot.Current = previous;
        }
    }

    /// <summary>
    /// Keeps the managed handles of the gradients a checkpoint's backward returned until the next backward or forward: the
    /// native engine copies them as the callback returns, after which the handles only hold references.
    /// </summary>
    internal void Returned(IEnumerable<Tensor> gradients)
    {
        lock (_gate)
        {
            ReleaseReturned();
            foreach (var g in gradients) _returned.Add(g.DetachFromDisposeScope());
        }
    }

    /// <summary>Drops the handles kept by <see cref="Returned"/> (called at the start of every UNet forward and backward).</summary>
    public void ReleaseReturned()
    {
        lock (_gate)
        {
            foreach (var g in _returned) g.Dispose();
            _returned.Clear();
        }
    }

    public void Dispose() => ReleaseReturned();
}
