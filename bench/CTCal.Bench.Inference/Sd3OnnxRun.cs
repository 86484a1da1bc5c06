using System.Diagnostics;
using CTCal.Core.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Export.Graphs;

namespace CTCal.Bench.Inference;

/// <summary>
/// <c>--family sd3 --onnx &lt;folder&gt;</c>: an exported SD3 transformer (<c>transformer/model.onnx</c> and its external
/// data, e.g. the SD3-medium-size export of <c>bench/full-size.sh sd3-medium</c>) in ONNX Runtime alone, CPU provider:
/// session load time, seconds per step at the given latent size, the output's range (finite) and the process's peak RSS.
/// TorchSharp is not loaded: a second copy of a full-size transformer would not fit beside the first on small machines.
/// </summary>
internal static class Sd3OnnxRun
{
    public static void Run(string folder, int imageSize, int batch, int tokens, int runs, int threads, Func<string> loadAverage)
    {
        string model = Path.Combine(folder, "transformer", "model.onnx");
        var config = SD3TransformerConfig.Load(Path.Combine(folder, "transformer", "config.json"));
        int latent = imageSize / 8;
        long weightBytes = Directory.EnumerateFiles(Path.Combine(folder, "transformer")).Where(f => Path.GetFileName(f).StartsWith("model.onnx", StringComparison.Ordinal))
            .Sum(f => new FileInfo(f).Length);
        Console.WriteLine($"{model}: {config.NumLayers} layers, {config.InnerDim} wide; {weightBytes / 1e9:F3} GB of ONNX files; " +
            $"ORT IntraOpNumThreads = {threads}, CPUExecutionProvider; load average {loadAverage()}");

        var random = new Random(2);
        float[] Noise(long count) => Enumerable.Range(0, checked((int)count)).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        long[] hiddenShape = [batch, config.InChannels, latent, latent];
        long[] contextShape = [batch, tokens, config.JointAttentionDim];
        long[] pooledShape = [batch, config.PooledProjectionDim];
        var inputs = new (string, float[], long[])[]
        {
            (SD3TransformerGraph.HiddenStatesInput, Noise(hiddenShape.Aggregate(1L, (a, b) => a * b)), hiddenShape),
            (SD3TransformerGraph.EncoderHiddenStatesInput, Noise(contextShape.Aggregate(1L, (a, b) => a * b)), contextShape),
            (SD3TransformerGraph.PooledProjectionsInput, Noise(pooledShape.Aggregate(1L, (a, b) => a * b)), pooledShape),
            (SD3TransformerGraph.TimestepInput, Enumerable.Repeat(500f, batch).ToArray(), new long[] { batch }),
        };

        var clock = Stopwatch.StartNew();
        using var ort = new OrtStepper(model, threads, inputs);
        Console.WriteLine($"session created in {clock.Elapsed.TotalSeconds:F1} s; RSS {ProcessMemory.Resident() / 1e6:F0} MB, peak so far {ProcessMemory.Peak() / 1e6:F0} MB");
        var seconds = new List<double>();
        float[] output = [];
        for (int i = 0; i < runs; i++)
        {
            clock.Restart();
            output = ort.Step();
            seconds.Add(clock.Elapsed.TotalSeconds);
            Console.WriteLine($"step {i + 1}: {seconds[^1]:F1} s");
        }
        bool finite = output.All(float.IsFinite);
        Console.WriteLine($"RESULT SD3 transformer {config.NumLayers} layers x {config.InnerDim}, out_hidden_states [{batch}, {config.OutChannels}, {latent}, {latent}] " +
            $"({imageSize}x{imageSize} images, {latent / config.PatchSize * (latent / config.PatchSize)} image + {tokens} text tokens, batch {batch}): " +
            $"median {StepBench.Median(seconds):F1} s per step over {runs} run(s); output {(finite ? "finite" : "NOT FINITE")}, " +
            $"range [{output.Min():G3}, {output.Max():G3}]; peak RSS (VmHWM) {ProcessMemory.Peak() / 1e6:F0} MB = {(double)ProcessMemory.Peak() / weightBytes:F2} x the ONNX files; " +
            $"load average {loadAverage()}");
    }
}
