using CTCal.Contracts;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Onnx;

/// <summary>
/// The <c>memoryLimitMiB</c> setting: one CPU arena allocator with a maximum size, registered in ONNX Runtime's
/// process-wide environment (<see cref="OrtEnv.CreateAndRegisterAllocator(OrtMemoryInfo, OrtArenaCfg)"/>). Sessions
/// created with <see cref="SessionConfigKey"/> = 1 take their CPU working memory (the tensors a run computes) from it
/// instead of an arena of their own, so all models of the process share the cap, and an allocation past it fails in ONNX Runtime
/// with "Failed to allocate memory" (reported as <see cref="GenerationOutOfMemoryException"/>) instead of growing the
/// process. The arena grows by what each allocation asks for (extend strategy "same as requested"), so the cap is
/// reached at the same request on every run. Model weights are not counted (measured: tiny-sd1's 12 MB of weights load
/// and generate 8x8 under a 4 MiB cap).
/// </summary>
internal static class CpuMemoryLimit
{
    /// <summary>The session configuration entry that makes a session use the environment's allocators.</summary>
    public const string SessionConfigKey = "session.use_env_allocators";

    private const int ExtendSameAsRequested = 1;
    private const int OrtDefault = -1;

    private static readonly object Gate = new();
    private static long _registeredBytes;

    /// <summary>The cap now registered by this plugin instance, in bytes (0: none).</summary>
    public static long RegisteredBytes
    {
        get
        {
            lock (Gate)
            {
                return _registeredBytes;
            }
        }
    }

    /// <summary>
    /// Registers the shared CPU arena with a cap of <paramref name="bytes"/>, unless this cap is already registered.
    /// ONNX Runtime's environment outlives plugin instances (and load contexts): an arena registered earlier with another
    /// cap is replaced for sessions created from now on; sessions created before keep the arena they were built with.
    /// </summary>
    public static void Apply(long bytes, ILogSink log)
    {
        if (bytes is <= 0 or > uint.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), $"memory limit must be from 1 byte to {uint.MaxValue} bytes, got {bytes}");
        }

        lock (Gate)
        {
            if (_registeredBytes == bytes)
            {
                return;
            }

            var env = OrtEnv.Instance();
            using var memoryInfo = new OrtMemoryInfo(OrtMemoryInfo.allocatorCPU, OrtAllocatorType.ArenaAllocator, 0, OrtMemType.Default);
            using var arena = new OrtArenaCfg((uint)bytes, ExtendSameAsRequested, OrtDefault, OrtDefault);
            try
            {
                env.CreateAndRegisterAllocator(memoryInfo, arena);
            }
            catch (OnnxRuntimeException)
            {
                // Already registered in this process (by another plugin instance or load context): replace it.
                env.UnregisterAllocator(memoryInfo);
                env.CreateAndRegisterAllocator(memoryInfo, arena);
                log.Log(LogSeverity.Information, "Replaced the process's shared ONNX Runtime CPU arena registered earlier");
            }

            _registeredBytes = bytes;
            log.Log(LogSeverity.Information, $"ONNX Runtime CPU memory of this process's models is capped at {bytes / (1024 * 1024)} MiB (memoryLimitMiB)");
        }
    }
}
