using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Bench.Inference;

/// <summary>
/// One denoising network's step through both runtimes, ready to run (same weights, same inputs): what
/// <see cref="StepBench.CompareAndTime"/> checks and times. <paramref name="Network"/> names it in the output (UNet,
/// SD3 transformer); <paramref name="Description"/> is its header line (size, inputs, export time).
/// </summary>
internal sealed record StepPair(string Name, string Network, string Description, Func<float[]> Ort, Func<float[]> Torch);

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
    /// Prints the maximum difference of the two outputs (a timing of a wrong graph would mean nothing), runs
    /// <paramref name="warmup"/> steps of each, then <paramref name="runs"/> timed steps of each in 5 alternating rounds,
    /// and prints the medians, minima, the TorchSharp / ONNX Runtime ratios and an estimate for <paramref name="steps"/> steps.
    /// </summary>
    public static void CompareAndTime(StepPair pair, int warmup, int runs, int steps, int batch)
    {
        float[] a = pair.Ort(), b = pair.Torch();
        if (a.Length != b.Length) throw new InvalidOperationException($"[{pair.Name}] output sizes differ: ONNX Runtime {a.Length}, TorchSharp {b.Length}");
        double maxErr = 0, maxAbs = 0;
        for (int i = 0; i < a.Length; i++) { maxErr = Math.Max(maxErr, Math.Abs(a[i] - b[i])); maxAbs = Math.Max(maxAbs, Math.Abs(b[i])); }

        for (int i = 0; i < warmup; i++) { pair.Ort(); pair.Torch(); }
        var ortMs = new List<double>();
        var torchMs = new List<double>();
        const int rounds = 5;
        for (int round = 0; round < rounds; round++)
        {
            int count = runs / rounds + (round < runs % rounds ? 1 : 0);
            for (int i = 0; i < count; i++) { var sw = Stopwatch.StartNew(); pair.Ort(); ortMs.Add(sw.Elapsed.TotalMilliseconds); }
            for (int i = 0; i < count; i++) { var sw = Stopwatch.StartNew(); pair.Torch(); torchMs.Add(sw.Elapsed.TotalMilliseconds); }
        }
        double ort = Median(ortMs), torchMedian = Median(torchMs);

        string n = pair.Name;
        Console.WriteLine();
        Console.WriteLine($"[{n}] {pair.Description}");
        Console.WriteLine($"[{n}] ORT vs TorchSharp output: max abs difference {maxErr:E2} (max |output| {maxAbs:F2})");
        Console.WriteLine($"[{n}] ONNX Runtime (CPUExecutionProvider) per step: median {ort:F2} ms over {ortMs.Count} runs (min {ortMs.Min():F2}, max {ortMs.Max():F2})");
        Console.WriteLine($"[{n}] TorchSharp (eval, no_grad)        per step: median {torchMedian:F2} ms over {torchMs.Count} runs (min {torchMs.Min():F2}, max {torchMs.Max():F2})");
        Console.WriteLine($"[{n}] ratio TorchSharp / ONNX Runtime: medians {torchMedian / ort:F2}, minima {torchMs.Min() / ortMs.Min():F2} (> 1: ONNX Runtime faster)");
        Console.WriteLine($"[{n}] ESTIMATE, {pair.Network} only (no text encoders, VAE decode, scheduler or host overhead): {steps} steps with CFG batch {batch} = " +
            $"{steps * ort / 1000:F2} s (ONNX Runtime), {steps * torchMedian / 1000:F2} s (TorchSharp)");
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
