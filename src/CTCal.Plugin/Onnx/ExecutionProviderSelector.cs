using CTCal.Contracts;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Plugin.Onnx;

/// <summary>ONNX Runtime execution providers this plugin knows how to append.</summary>
internal enum ExecutionProviderKind
{
    DirectML,
    Cuda,
    Cpu,
}

/// <summary>
/// Builds <see cref="SessionOptions"/> from an ordered provider preference. A provider that cannot be appended (its
/// native library is not part of this build, or no device) is logged and skipped; CPU always works and ends the list.
/// </summary>
internal static class ExecutionProviderSelector
{
    /// <summary>DirectML, CUDA, CPU on Windows; CUDA, CPU elsewhere.</summary>
    public static IReadOnlyList<ExecutionProviderKind> PlatformDefault() =>
        OperatingSystem.IsWindows()
            ? new[] { ExecutionProviderKind.DirectML, ExecutionProviderKind.Cuda, ExecutionProviderKind.Cpu }
            : new[] { ExecutionProviderKind.Cuda, ExecutionProviderKind.Cpu };

    public static bool TryParse(string name, out ExecutionProviderKind kind)
    {
        switch (name.Trim().ToLowerInvariant())
        {
            case "directml":
            case "dml":
                kind = ExecutionProviderKind.DirectML;
                return true;
            case "cuda":
                kind = ExecutionProviderKind.Cuda;
                return true;
            case "cpu":
                kind = ExecutionProviderKind.Cpu;
                return true;
            default:
                kind = default;
                return false;
        }
    }

    public static string DisplayName(ExecutionProviderKind kind) => kind switch
    {
        ExecutionProviderKind.DirectML => "DirectML",
        ExecutionProviderKind.Cuda => "CUDA",
        _ => "CPU",
    };

    /// <summary>
    /// Creates session options with the first provider of <paramref name="preference"/> that can be appended.
    /// The caller owns (disposes) the returned options.
    /// </summary>
    /// <param name="append">Appends one provider; replaceable in tests. Defaults to <see cref="AppendProvider"/>.</param>
    public static (SessionOptions Options, ExecutionProviderKind Used, IReadOnlyList<string> Warnings) Create(
        IReadOnlyList<ExecutionProviderKind> preference,
        SessionTuning tuning,
        ILogSink log,
        Action<SessionOptions, ExecutionProviderKind>? append = null)
    {
        append ??= AppendProvider;
        var warnings = new List<string>();
        var order = preference.Contains(ExecutionProviderKind.Cpu) ? preference : preference.Append(ExecutionProviderKind.Cpu).ToArray();
        foreach (var kind in order)
        {
            var options = NewOptions(kind, tuning);
            try
            {
                append(options, kind);
                log.Log(LogSeverity.Information, $"Execution provider {DisplayName(kind)} selected");
                return (options, kind, warnings);
            }
            catch (Exception ex) when (kind != ExecutionProviderKind.Cpu && ex is not OutOfMemoryException)
            {
                options.Dispose();
                string warning = $"Execution provider {DisplayName(kind)} is not available ({ex.GetType().Name}: {FirstLine(ex.Message)}); trying the next one";
                warnings.Add(warning);
                log.Log(LogSeverity.Warning, warning, ex);
            }
        }

        throw new InvalidOperationException("No execution provider could be appended, not even CPU");
    }

    /// <summary>
    /// The CUDA provider's options (OrtCUDAProviderOptionsV2 keys): device 0, and SkipLayerNormalization's strict mode, in
    /// which the kernel computes its mean and variance in float32 for float16 inputs. Without it ORT's CUDA kernel
    /// accumulates them in float16 (contrib_ops/cuda/bert/skip_layer_norm_impl.cu, layer_norm.cuh), where the plain fp16
    /// graph keeps every LayerNormalization in float32; a cuda-profile fp16 export would lose that.
    /// </summary>
    public static IReadOnlyDictionary<string, string> CudaProviderOptions { get; } = new Dictionary<string, string>
    {
        ["device_id"] = "0",
        ["enable_skip_layer_norm_strict_mode"] = "1",
    };

    /// <summary>Appends one provider with ONNX Runtime's own API (throws when the native provider is absent).</summary>
    public static void AppendProvider(SessionOptions options, ExecutionProviderKind kind)
    {
        switch (kind)
        {
            case ExecutionProviderKind.DirectML:
                options.AppendExecutionProvider_DML(0);
                break;
            case ExecutionProviderKind.Cuda:
                using (var cuda = new OrtCUDAProviderOptions()) // throws where the native CUDA provider is absent
                {
                    cuda.UpdateOptions(new Dictionary<string, string>(CudaProviderOptions));
                    options.AppendExecutionProvider_CUDA(cuda); // copies the options
                }
                break;
            default:
                // CPU is ONNX Runtime's built-in fallback; nothing to append.
                break;
        }
    }

    private static SessionOptions NewOptions(ExecutionProviderKind kind, SessionTuning tuning)
    {
        var policy = SessionPolicy.For(tuning);
        var options = new SessionOptions
        {
            IntraOpNumThreads = tuning.IntraOpThreads,
            InterOpNumThreads = tuning.InterOpThreads,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            EnableMemoryPattern = policy.MemoryPattern,
            EnableCpuMemArena = policy.CpuArena,
        };
        string spin = policy.Spinning ? "1" : "0";
        options.AddSessionConfigEntry(SessionPolicy.IntraOpSpinningKey, spin);
        options.AddSessionConfigEntry(SessionPolicy.InterOpSpinningKey, spin);

        if (tuning.CpuMemoryLimitBytes is not null)
        {
            // CPU memory comes from the capped arena shared through the environment (CpuMemoryLimit), in either memory mode.
            options.AddSessionConfigEntry(CpuMemoryLimit.SessionConfigKey, "1");
        }

        if (kind == ExecutionProviderKind.DirectML)
        {
            // DirectML does not support memory-pattern planning or parallel execution.
            options.EnableMemoryPattern = false;
            options.ExecutionMode = ExecutionMode.ORT_SEQUENTIAL;
        }

        return options;
    }

    private static string FirstLine(string text)
    {
        int newline = text.IndexOf('\n');
        return (newline < 0 ? text : text[..newline]).Trim();
    }
}

/// <summary>Session knobs from the plugin settings.</summary>
/// <param name="CpuMemoryLimitBytes">The <c>memoryLimitMiB</c> cap in bytes, or null for none.</param>
internal sealed record SessionTuning(int IntraOpThreads, int InterOpThreads, bool LowMemory, long? CpuMemoryLimitBytes = null);
