using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// The autograd node of one checkpointed block (a TorchSharp custom function). Arguments: the <see cref="CheckpointSegment"/>,
/// the block's inputs (null allowed), then its parameters that require grad. Forward runs the block under no_grad (TorchSharp
/// disables autograd around a custom forward) and keeps only the inputs; its outputs are the block's result and the attention
/// maps it recorded. Backward runs the block again with autograd on detached copies of the inputs and returns
/// <c>autograd.grad</c> of the outputs, weighted by the incoming gradients, with respect to those inputs and the parameters:
/// the parameters' gradients leave through the node like any other, so both <c>backward()</c> (accumulating into
/// <c>.grad</c>) and <c>autograd.grad</c> (touching no <c>.grad</c>) see them exactly.
/// </summary>
internal sealed class CheckpointFunction : autograd.MultiTensorFunction<CheckpointFunction>
{
    private const string SegmentKey = "segment";

    /// <inheritdoc/>
    public override string Name => "CTCalGradientCheckpoint";

    /// <inheritdoc/>
    public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var segment = (CheckpointSegment)vars[0];
        var inputs = new Tensor?[segment.InputCount];
        for (int i = 0; i < inputs.Length; i++) inputs[i] = vars[1 + i] as Tensor;
        segment.InputRequiresGrad = inputs.Select(t => t is not null && t.requires_grad).ToArray();
        segment.Parameters = vars.Skip(1 + segment.InputCount).Cast<Tensor>().ToList();
        ctx.save_for_backward(inputs.ToList()!);
        ctx.save_data(SegmentKey, segment);
        // Gradients that never arrive (a map the loss does not use) stay undefined instead of being materialised.
        ctx.set_materialize_grads(false);
        var capture = segment.WantedPaths is null ? null : new AttentionCapture(segment.WantedPaths);
        segment.ForwardCapture = capture;
        return segment.Owner.RunBody(segment, inputs, capture, paths: null);
    }

    /// <inheritdoc/>
    public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> grad_outputs)
    {
        var segment = (CheckpointSegment)ctx.get_data(SegmentKey);
        var result = new Tensor?[1 + segment.InputCount + segment.Parameters.Count];
        using (var scope = NewDisposeScope())
        using (enable_grad())
        {
            var saved = ctx.get_saved_variables();
            var inputs = new Tensor?[segment.InputCount];
            var targets = new List<Tensor>();
            var targetSlots = new List<int>();
            for (int i = 0; i < inputs.Length; i++)
            {
                if (saved[i] is null || saved[i].IsInvalid) continue;
                inputs[i] = saved[i].detach().requires_grad_(segment.InputRequiresGrad[i]);
                if (segment.InputRequiresGrad[i])
                {
                    targets.Add(inputs[i]!);
                    targetSlots.Add(1 + i);
                }
            }
            for (int i = 0; i < segment.Parameters.Count; i++)
            {
                targets.Add(segment.Parameters[i]);
                targetSlots.Add(1 + segment.InputCount + i);
            }

            using var capture = segment.WantedPaths is null ? null : new AttentionCapture(segment.WantedPaths);
            var outputs = segment.Owner.RunBody(segment, inputs, capture, segment.Paths);
            var roots = new List<Tensor>();
            var weights = new List<Tensor>();
            for (int i = 0; i < outputs.Count && i < grad_outputs.Count; i++)
            {
                var g = grad_outputs[i];
                if (g is null || g.IsInvalid || !outputs[i].requires_grad) continue;
                roots.Add(outputs[i]);
                weights.Add(g);
            }
            if (roots.Count > 0 && targets.Count > 0)
            {
                var grads = autograd.grad(roots, targets, weights, retain_graph: false, create_graph: false, allow_unused: true);
                for (int i = 0; i < grads.Count; i++)
                    if (grads[i] is { IsInvalid: false } g) result[targetSlots[i]] = g;
            }
            segment.Owner.Returned(result.Where(t => t is not null)!);
        }
        foreach (var g in grad_outputs) g?.Dispose();
        return result.ToList()!;
    }
}
