using System.Runtime;

namespace CTCal.Trainer.Training;

/// <summary>
/// Runs a unit of TorchSharp work (one training step, one sampled image) inside a no-GC region, so that garbage
/// collections, and the finalizers they schedule, happen only between units.
/// </summary>
/// <remarks>
/// TorchSharp 0.107 turns numbers into native <c>Scalar</c> objects implicitly (<c>a + b</c> passes <c>alpha = 1</c>,
/// <c>x.mul(1.702)</c> passes 1.702) and reads their handle before the native call; the managed object is then
/// unreachable, and a collection during the call lets its finalizer free the native value that libtorch is still
/// reading. Seen in the trainer as "Unknown scalar type" or "Expected false to be true ... toDouble/toFloat", in about 1
/// of 4 fine-tunes of 200 steps. Inside a region no collection runs; the region's start collects what the previous unit
/// left, when no native call is in flight. A unit that allocates more than the budget ends the region early (a normal
/// collection, the old odds); <see cref="Dispose"/> then does nothing. Not for nesting: an inner guard is inert.
/// </remarks>
public sealed class NativeCallGuard : IDisposable
{
    /// <summary>Managed bytes one unit may allocate before the runtime collects anyway.</summary>
    public const long DefaultBudget = 192L * 1024 * 1024;

    private readonly bool _started;

    /// <summary>Starts a region of <paramref name="budget"/> bytes when none is active and the runtime allows it.</summary>
    public NativeCallGuard(long budget = DefaultBudget)
    {
        if (GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) return;
        try
        {
            _started = GC.TryStartNoGCRegion(budget);
        }
        catch (ArgumentOutOfRangeException)
        {
            // Budget above what this runtime configuration allows: run unguarded.
        }
        catch (InvalidOperationException)
        {
            // Another region is active (another thread started one).
        }
    }

    /// <summary>Whether this guard opened a region (false when the runtime refused or one was already active).</summary>
    public bool Started => _started;

    /// <summary>Ends the region if it is still active (a unit that outgrew the budget has already ended it).</summary>
    /// <remarks>
    /// The region is the process's: work on other threads (units whose guards found it active, so are inert) allocates
    /// from the same budget and can end it between the check and the call, which then throws; the region is over either way.
    /// </remarks>
    public void Dispose()
    {
        if (!_started || GCSettings.LatencyMode != GCLatencyMode.NoGCRegion) return;
        try
        {
            GC.EndNoGCRegion();
        }
        catch (InvalidOperationException)
        {
            // Ended meanwhile (budget outgrown by another thread, or a collection was induced): nothing left to end.
        }
    }
}
