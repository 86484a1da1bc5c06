using System.Runtime;
using CTCal.Trainer.Training;
using Xunit;

namespace CTCal.Trainer.Tests;

[CollectionDefinition(nameof(NativeCallGuardTests), DisableParallelization = true)]
public sealed class NativeCallGuardCollection;

/// <summary>The no-GC region around TorchSharp work: opened, closed, inert when nested, harmless when outgrown.</summary>
[Collection(nameof(NativeCallGuardTests))]
public sealed class NativeCallGuardTests
{
    [Fact]
    public void AGuardHoldsOffCollectionsUntilItIsDisposed()
    {
        int before = GC.CollectionCount(0);
        int inside;
        using (var guard = new NativeCallGuard())
        {
            Assert.True(guard.Started, "the runtime refused the default budget");
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
            inside = GC.CollectionCount(0);
            // Opening the region collects what the previous unit left, while no native call is in flight.
            Assert.True(inside > before, $"no collection when the region opened ({before} -> {inside})");
            for (int i = 0; i < 1000; i++) _ = new byte[64 * 1024]; // 64 MB, inside the budget
            Assert.Equal(inside, GC.CollectionCount(0));
            using var inner = new NativeCallGuard();
            Assert.False(inner.Started);
        }
        Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
        // Outside the region the runtime collects again on its own: 1 GB of short-lived arrays is far past any gen0 budget.
        for (int i = 0; i < 16 * 1024; i++) _ = new byte[64 * 1024];
        Assert.True(GC.CollectionCount(0) > inside, "no collection after the region ended");
    }

    [Fact]
    public void AGuardWhoseRegionEndedEarlyLeavesTheNextGuardsRegionAlone()
    {
        var a = new NativeCallGuard();
        Assert.True(a.Started);
        GC.Collect(); // ends a's region early, as another thread outgrowing the budget would
        Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
        using (var c = new NativeCallGuard())
        {
            Assert.True(c.Started);
            a.Dispose(); // must not end c's region
            Assert.Equal(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
        }
        Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
    }

    [Fact]
    public void OutgrowingTheBudgetEndsTheRegionAndDisposeStillSucceeds()
    {
        var guard = new NativeCallGuard(budget: 8L * 1024 * 1024);
        Assert.True(guard.Started);
        for (int i = 0; i < 200; i++) _ = new byte[256 * 1024]; // 50 MB: the runtime collects and leaves the region
        guard.Dispose();
        Assert.NotEqual(GCLatencyMode.NoGCRegion, GCSettings.LatencyMode);
    }
}
