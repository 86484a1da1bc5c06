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
/// collection, the old odds); <see cref="Dispose"/> then does nothing, and never ends a region a later guard opened. Not
/// for nesting: an inner guard is inert.
/// </remarks>
public sealed class NativeCallGuard : IDisposable
{
    /// <summary>Managed bytes one unit may allocate before the runtime collects anyway.</summary>
    public const long DefaultBudget = 192L * 1024 * 1024;

    // The region is the process's: the guard that opened the current one owns it, and only the owner ends it.
    private static readonly object RegionLock = new();
    private static NativeCallGuard? _owner;

    private readonly bool _started;

    /// <summary>Starts a region of <paramref name="budget"/> bytes when none is active and the runtime allows it.</summary>
    public NativeCallGuard(long budget = DefaultBudget)
    {
        lock (RegionLock)
        {
            if (GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) return;
            try
            {
                _started = GC.TryStartNoGCRegion(budget);
                if (_started) _owner = this;
            }
            catch (ArgumentOutOfRangeException)
            {
                // Budget above what this runtime configuration allows: run unguarded.
            }
            catch (InvalidOperationException)
            {
                // Another region is active (started outside these guards).
            }
        }
    }

    /// <summary>Whether this guard opened a region (false when the runtime refused or one was already active).</summary>
    public bool Started => _started;

    /// <summary>Ends this guard's region if it is still active (a unit that outgrew the budget has already ended it).</summary>
    /// <remarks>
    /// The region is the process's: work on other threads (units whose guards found it active, so are inert) allocates
    /// from the same budget and can end it early. Another guard may then have opened a new region, which this one leaves
    /// alone: it ends a region only while it is the guard that opened the current one.
    /// </remarks>
    public void Dispose()
    {
        if (!_started) return;
        lock (RegionLock)
        {
            if (!ReferenceEquals(_owner, this)) return; // ours ended early and a later guard opened the current region
            _owner = null;
            if (GCSettings.LatencyMode != GCLatencyMode.NoGCRegion) return;
            try
            {
                GC.EndNoGCRegion();
            }
            catch (InvalidOperationException)
            {
                // Ended between the check and the call (budget outgrown on another thread): nothing left to end.
            }
        }
    }
}
