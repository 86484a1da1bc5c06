using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Bench.Inference;

/// <summary>
/// One denoising network's step through the runtimes being compared, ready to run (same weights, same inputs): what
/// <see cref="StepBench.CompareAndTime"/> checks and times. <paramref name="Network"/> names it in the output (UNet,
/// SD3 transformer); <paramref name="Description"/> is its header line (size, inputs, export time). <paramref name="Ort"/>
/// is the plain exported graph in ONNX Runtime; <paramref name="Torch"/> the TorchSharp forward pass, or null for ONNX
/// Runtime only (<c>--no-torch</c>); <paramref name="Profile"/> optionally the same network exported with an export
/// profile (<c>--optimize cpu</c>), timed in back-to-back pairs against <paramref name="Ort"/>.
/// </summary>
internal sealed record StepPair(string Name, string Network, string Description, Func<float[]> Ort, Func<float[]>? Torch, ProfileStep? Profile = null);

/// <summary>The step of a graph exported with the export profile <paramref name="Name"/> (e.g. cpu), run in ONNX Runtime.</summary>
internal sealed record ProfileStep(string Name, Func<float[]> Step);

/// <summary>The per-step comparison shared by every network the bench knows: agreement first, then interleaved timing.</summary>
internal static class StepBench
{
    /// <summary>ONNX Runtime on the CPU provider only: <paramref name="threads"/> intra-op threads, one inter-op, sequential, all graph optimizations.</summary>
    public static SessionOptions CpuOptions(int threads) => new()
    {
        GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        IntraOpNumThreads = threads,
        InterOpNumThreads = 1,
        ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
    };

    /// <summary>
    /// Prints the maximum difference of the plain ONNX Runtime output from TorchSharp's and the profile graph's (a timing of
    /// a wrong graph would mean nothing), runs <paramref name="warmup"/> steps of each, then <paramref name="runs"/> timed
    /// steps of each in 5 alternating rounds (ONNX Runtime's, then TorchSharp's), and prints the medians, minima, the
    /// ratios and an estimate for <paramref name="steps"/> steps. With a profile graph each timed ONNX Runtime run is a
    /// back-to-back pair of one plain and one profile step, in alternating order, so both see the same load; the paired
    /// ratio is the median of plain / profile over the pairs.
    /// </summary>
    public static void CompareAndTime(StepPair pair, int warmup, int runs, int steps, int batch)
    {
        string n = pair.Name;
        float[] plain = pair.Ort();
        var torchDiff = pair.Torch is null ? default : Difference(n, "ORT vs TorchSharp", plain, pair.Torch());
        var profileDiff = pair.Profile is null ? default : Difference(n, $"--optimize {pair.Profile.Name} vs plain", pair.Profile.Step(), plain);

        for (int i = 0; i < warmup; i++)
        {
            pair.Ort();
            pair.Profile?.Step();
            pair.Torch?.Invoke();
        }
        var ortMs = new List<double>();
        var torchMs = new List<double>();
        var profileMs = new List<double>();
        var pairRatios = new List<double>(); // plain / profile of back-to-back steps (same load), order alternating
        const int rounds = 5;
        for (int round = 0; round < rounds; round++)
        {
            int count = runs / rounds + (round < runs % rounds ? 1 : 0);
            for (int i = 0; i < count; i++)
            {
                if (pair.Profile is null)
                {
                    ortMs.Add(Time(pair.Ort));
                    continue;
                }
                bool plainFirst = ortMs.Count % 2 == 0;
                double p = plainFirst ? Time(pair.Ort) : 0;
                double f = Time(pair.Profile.Step);
                if (!plainFirst) p = Time(pair.Ort);
                ortMs.Add(p);
                profileMs.Add(f);
                pairRatios.Add(p / f);
            }
            if (pair.Torch is not null)
                for (int i = 0; i < count; i++) torchMs.Add(Time(pair.Torch));
        }
        double ort = Median(ortMs);

        Console.WriteLine();
        Console.WriteLine($"[{n}] {pair.Description}");
        if (pair.Torch is not null)
            Console.WriteLine($"[{n}] ORT vs TorchSharp output: max abs difference {torchDiff.Max:E2} (max |output| {torchDiff.Scale:F2})");
        Console.WriteLine($"[{n}] ONNX Runtime (CPUExecutionProvider) per step: median {ort:F2} ms over {ortMs.Count} runs (min {ortMs.Min():F2}, max {ortMs.Max():F2})");
        string estimate = $"{steps * ort / 1000:F2} s (ONNX Runtime)";
        if (pair.Profile is { } profile)
        {
            double fused = Median(profileMs);
            Console.WriteLine($"[{n}] --optimize {profile.Name} vs plain output: max abs difference {profileDiff.Max:E2} (max |output| {profileDiff.Scale:F2})");
            Console.WriteLine($"[{n}] ONNX Runtime, --optimize {profile.Name}          per step: median {fused:F2} ms over {profileMs.Count} runs (min {profileMs.Min():F2}, max {profileMs.Max():F2})");
            Console.WriteLine($"[{n}] plain / {profile.Name} profile: paired ratio {Median(pairRatios):F3} (median of back-to-back pairs), medians {ort / fused:F3}, " +
                $"minima {ortMs.Min() / profileMs.Min():F3} (> 1: the profile is faster)");
            estimate += $", {steps * fused / 1000:F2} s (ONNX Runtime, {profile.Name} profile)";
        }
        if (pair.Torch is not null)
        {
            double torchMedian = Median(torchMs);
            Console.WriteLine($"[{n}] TorchSharp (eval, no_grad)        per step: median {torchMedian:F2} ms over {torchMs.Count} runs (min {torchMs.Min():F2}, max {torchMs.Max():F2})");
            Console.WriteLine($"[{n}] ratio TorchSharp / ONNX Runtime: medians {torchMedian / ort:F2}, minima {torchMs.Min() / ortMs.Min():F2} (> 1: ONNX Runtime faster)");
            estimate += $", {steps * torchMedian / 1000:F2} s (TorchSharp)";
        }
        Console.WriteLine($"[{n}] ESTIMATE, {pair.Network} only (no text encoders, VAE decode, scheduler or host overhead): {steps} steps with CFG batch {batch} = {estimate}");
    }

    /// <summary>The largest |x - y| and the largest |y|; the outputs must be the same size.</summary>
    private static (double Max, double Scale) Difference(string name, string what, float[] x, float[] y)
    {
        if (x.Length != y.Length) throw new InvalidOperationException($"[{name}] {what}: output sizes differ ({x.Length} vs {y.Length} values)");
        double maxErr = 0, maxAbs = 0;
        for (int i = 0; i < x.Length; i++) { maxErr = Math.Max(maxErr, Math.Abs(x[i] - y[i])); maxAbs = Math.Max(maxAbs, Math.Abs(y[i])); }
        return (maxErr, maxAbs);
    }

    private static double Time(Func<float[]> step)
    {
        var sw = Stopwatch.StartNew();
        step();
        return sw.Elapsed.TotalMilliseconds;
    }

    public static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}

/// <summary>An ONNX Runtime session with its float inputs bound once; <see cref="Step"/> runs it and copies out the first output.</summary>
internal sealed class OrtStepper : IDisposable
{
    private readonly SessionOptions _options;
    private readonly InferenceSession _session;
    private readonly RunOptions _run = new();
    private readonly string[] _names;
    private readonly OrtValue[] _values;

    public OrtStepper(string modelPath, int threads, params (string Name, float[] Data, long[] Shape)[] inputs)
    {
        _options = StepBench.CpuOptions(threads);
        _session = new InferenceSession(modelPath, _options);
        _names = inputs.Select(i => i.Name).ToArray();
        _values = inputs.Select(i => OrtValue.CreateTensorValueFromMemory(i.Data, i.Shape)).ToArray();
    }

    public float[] Step()
    {
        using var outputs = _session.Run(_run, _names, _values, _session.OutputNames);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void Dispose()
    {
        foreach (var v in _values) v.Dispose();
        _run.Dispose();
        _session.Dispose();
        _options.Dispose();
    }
}
