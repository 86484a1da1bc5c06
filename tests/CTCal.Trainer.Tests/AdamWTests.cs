using CTCal.Trainer.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

public sealed class AdamWTests
{
    /// <summary>
    /// A parameter without a gradient in a step stays put even after it had gradients before (so a run resumed in a fresh
    /// process, where no parameter has a gradient yet, takes the same steps as an uninterrupted one).
    /// </summary>
    [Fact]
    public void AParameterWithoutAGradientInAStepIsNotUpdatedEvenAfterEarlierGradients()
    {
        using var used = new TorchSharp.Modules.Parameter(ones(3));
        using var idle = new TorchSharp.Modules.Parameter(ones(3));
        using var optimizer = new AdamW([used, idle]);

        optimizer.ZeroGrad();
        (used.sum() + idle.sum()).backward();
        optimizer.Update(0.1);
        Assert.NotNull(idle.grad);

        optimizer.ZeroGrad();
        Assert.Null(idle.grad);
        used.sum().backward(); // this step gives 'idle' no gradient
        var before = idle.detach().clone();
        optimizer.Update(0.1);
        Assert.True(idle.detach().eq(before).all().item<bool>(), "a parameter without a gradient moved");
        Assert.False(used.detach().eq(ones(3)).all().item<bool>());
    }
}
