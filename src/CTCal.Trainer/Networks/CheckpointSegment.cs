using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// One checkpointed block call: what <see cref="CheckpointFunction"/> needs to run the block again in backward (its body,
/// which inputs required grad, its parameters) and which attention maps it produced, in output order.
/// </summary>
internal sealed class CheckpointSegment
{
    public CheckpointSegment(GradientCheckpointing owner, Func<Tensor?[], Tensor> body, int inputCount, IReadOnlyCollection<string>? wantedPaths)
    {
        Owner = owner;
        Body = body;
        InputCount = inputCount;
        WantedPaths = wantedPaths;
    }

    public GradientCheckpointing Owner { get; }
    public Func<Tensor?[], Tensor> Body { get; }
    public int InputCount { get; }

    /// <summary>The layers the caller's capture wants (null: no capture during this forward).</summary>
    public IReadOnlyCollection<string>? WantedPaths { get; }

    /// <summary>Whether each input required grad when the block ran forward.</summary>
    public bool[] InputRequiresGrad { get; set; } = [];

    /// <summary>The block's parameters that require grad (the checkpoint node's last inputs).</summary>
    public List<Tensor> Parameters { get; set; } = [];

    /// <summary>The attention layers the block recorded, in the order of the node's extra outputs.</summary>
    public List<string> Paths { get; set; } = [];

    /// <summary>The private capture of the forward run (its maps leave as the node's outputs).</summary>
    public AttentionCapture? ForwardCapture { get; set; }

    /// <summary>Releases the forward capture's handles once the node has wrapped its outputs.</summary>
    public void DisposeForwardMaps()
    {
        ForwardCapture?.Dispose();
        ForwardCapture = null;
    }
}
