namespace CTCal.Plugin.Onnx;

/// <summary>
/// The ONNX Runtime session settings each memory mode gets, in one place (applied by <see cref="ExecutionProviderSelector"/>):
/// <list type="table">
/// <listheader><term>setting</term><description>low / balanced, and why</description></listheader>
/// <item><term>thread spinning (<c>session.intra_op.allow_spinning</c>, <c>session.inter_op.allow_spinning</c>)</term>
/// <description>off / on. A spinning worker busy-waits for the next operator's work instead of sleeping: a few percent
/// faster for a process that owns its cores, but between operators (and between images) it burns the CPU time other work
/// on the host would get. Low is the mode for hosts that run other things beside the plugin (small machines, an editor's
/// own process), so its workers sleep; balanced keeps ONNX Runtime's default.</description></item>
/// <item><term>CPU memory arena (<c>EnableCpuMemArena</c>)</term>
/// <description>off / on. The arena keeps freed blocks for the next run (fewer allocations, faster) but never returns
/// its peak to the system; low gives each run's memory back.</description></item>
/// <item><term>memory-pattern planning (<c>EnableMemoryPattern</c>)</term>
/// <description>off / off. With it ONNX Runtime allocates one block for a run's planned intermediates from the second run
/// of a shape on, while the arena still holds the first run's blocks, so the second image needed a second copy of the
/// activations (measured: SD 1.5 at 512 px grew 1 GB from the first to the second image; SD 2.1 at 768 px was killed on
/// its second image). The arena alone reuses its blocks; without the arena (low) there is nothing to plan into that a
/// plain allocation does not do as well.</description></item>
/// </list>
/// </summary>
/// <param name="Spinning">Intra- and inter-op worker threads spin while waiting for work.</param>
/// <param name="CpuArena">ONNX Runtime's CPU memory arena.</param>
/// <param name="MemoryPattern">Memory-pattern planning.</param>
internal sealed record SessionPolicy(bool Spinning, bool CpuArena, bool MemoryPattern)
{
    /// <summary>ONNX Runtime's session config key for intra-op thread spinning ("0" or "1").</summary>
    public const string IntraOpSpinningKey = "session.intra_op.allow_spinning";

    /// <summary>ONNX Runtime's session config key for inter-op thread spinning ("0" or "1").</summary>
    public const string InterOpSpinningKey = "session.inter_op.allow_spinning";

    /// <summary>The settings of <paramref name="tuning"/>'s memory mode (see the table above).</summary>
    public static SessionPolicy For(SessionTuning tuning) =>
        tuning.LowMemory ? new SessionPolicy(Spinning: false, CpuArena: false, MemoryPattern: false) : new SessionPolicy(Spinning: true, CpuArena: true, MemoryPattern: false);
}
