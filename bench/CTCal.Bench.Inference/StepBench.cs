using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;

namespace CTCal.Bench.Inference;

/// <summary>
/// One denoising network's step through the runtimes being compared, ready to run (same weights, same inputs): what
/// <see cref="StepBench.CompareAndTime"/> checks and times. <paramref name="Network"/> names it in the output (UNet,
/// SD3 transformer); <paramref name="Description"/> is its header line (size, inputs, export time). <paramref name="Ort"/>
/// is the plain exported graph in ONNX Runtime; <paramref name="Torch"/> the TorchSharp forward pass, or null for ONNX
/// Runtime only (<c>--no-torch</c>); <paramref name="Profile"/> optionally the same network exported with an export
/// profile (<c>--optimize cpu</c>), timed in back-to-back pairs against <paramref name="Ort"/>. <paramref name="Threads"/>:
/// the intra-op threads of every session; <paramref name="Flops"/>: the plain graph's FLOPs per step
/// (<see cref="FlopCounter"/>); <paramref name="Gemm"/>: the GEMM whose runs, one beside each timed step, give the
/// machine's peak the achieved GFLOP/s are a fraction of; <paramref name="Transcendental"/>: the step's exp-class work, for
/// the floor that bounds that fraction (<see cref="TranscendentalFloor"/>).
/// </summary>
internal sealed record StepPair(string Name, string Network, string Description, Func<float[]> Ort, Func<float[]>? Torch, ProfileStep? Profile = null,
    int Threads = 0, double? Flops = null, GemmPeak? Gemm = null, TranscendentalCost? Transcendental = null);

/// <summary>
/// The exp-class work of a step (<see cref="TranscendentalFloor"/>): <paramref name="Milliseconds"/> per step at the
/// measured per-element costs; <paramref name="Detail"/> the counts and costs for the printout.
/// </summary>
internal sealed record TranscendentalCost(double Milliseconds, string Detail);

/// <summary>The step of a graph exported with the export profile <paramref name="Name"/> (e.g. cpu), run in ONNX Runtime; <paramref name="Flops"/> its FLOPs per step.</summary>
internal sealed record ProfileStep(string Name, Func<float[]> Step, double? Flops = null);

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
        var ortCpuMs = new List<double>(); // process CPU time of the same steps (robust to descheduling; see CpuClock)
        var profileCpuMs = new List<double>();
        var gemmCpuMs = new List<double>();
        var gemmMs = new List<double>(); // one GEMM sample beside each timed ONNX Runtime step (or pair): the peak under the same load
        int gemmRepeats = 1;
        if (pair.Gemm is { } g)
        {
            // A sample is as many back-to-back GEMMs as take about half a step, so a GEMM sample and a step see the load
            // over a similar span (on a busy machine a 30 ms run is either lucky or unlucky in its time slice).
            g.TimeMs();
            gemmRepeats = Math.Clamp((int)Math.Round(Time(pair.Ort) / 2 / g.TimeMs()), 1, 64);
        }
        const int rounds = 5;
        for (int round = 0; round < rounds; round++)
        {
            int count = runs / rounds + (round < runs % rounds ? 1 : 0);
            for (int i = 0; i < count; i++)
            {
                if (pair.Gemm is { } gemmRun)
                {
                    var cpu = CpuClock.Start();
                    gemmMs.Add(gemmRun.TimeMs(gemmRepeats) / gemmRepeats);
                    gemmCpuMs.Add(cpu.Ms() / gemmRepeats);
                }
                if (pair.Profile is null)
                {
                    var cpu = CpuClock.Start();
                    ortMs.Add(Time(pair.Ort));
                    ortCpuMs.Add(cpu.Ms());
                    continue;
                }
                bool plainFirst = ortMs.Count % 2 == 0;
                double p = 0, pc = 0;
                if (plainFirst) (p, pc) = TimeBoth(pair.Ort);
                var (f, fc) = TimeBoth(pair.Profile.Step);
                if (!plainFirst) (p, pc) = TimeBoth(pair.Ort);
                ortMs.Add(p);
                profileMs.Add(f);
                ortCpuMs.Add(pc);
                profileCpuMs.Add(fc);
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
        if (pair.Gemm is { } gemm && pair.Flops is double flops)
        {
            double peak = gemm.GflopsPerSecond(Median(gemmMs));
            double bestPeak = gemm.GflopsPerSecond(gemmMs.Min());
            double plainRate = flops / (ort * 1e6);
            double plainBest = flops / (ortMs.Min() * 1e6);
            Console.WriteLine($"[{n}] GEMM peak ({gemm.N}x{gemm.N}x{gemm.N} fp32 MatMul in ONNX Runtime, {pair.Threads} thread(s); a sample of {gemmRepeats} back-to-back " +
                $"runs beside each timed step): median {peak:F1} GFLOP/s (best {bestPeak:F1}) over {gemmMs.Count} samples");
            Console.WriteLine($"[{n}] achieved: plain {plainRate:F1} GFLOP/s = {plainRate / peak:P1} of the GEMM peak ({flops / 1e9:F2} GFLOP per step); " +
                $"fastest step against the fastest GEMM: {plainBest:F1} / {bestPeak:F1} GFLOP/s = {plainBest / bestPeak:P1}");
            string result = $"RESULT {n} threads {pair.Threads}: ms/step plain {ort:F1}";
            string rates = $"GFLOP/s plain {plainRate:F1}";
            string fractions = $"of GEMM peak plain {plainRate / peak:P1}";
            if (pair.Profile is { } p)
            {
                double fused = Median(profileMs);
                double profileFlops = p.Flops ?? flops;
                double rate = profileFlops / (fused * 1e6);
                double best = profileFlops / (profileMs.Min() * 1e6);
                Console.WriteLine($"[{n}] achieved: {p.Name} profile {rate:F1} GFLOP/s = {rate / peak:P1} of the GEMM peak ({profileFlops / 1e9:F2} GFLOP per step); " +
                    $"fastest step against the fastest GEMM: {best:F1} / {bestPeak:F1} GFLOP/s = {best / bestPeak:P1}");
                result += $", {p.Name} {fused:F1}";
                rates += $", {p.Name} {rate:F1}";
                fractions += $", {p.Name} {rate / peak:P1}";
            }

            // Each timed step against the GEMM sample taken beside it (same load), with a distribution-free interval for
            // the median of these per-step fractions: whether a target fraction is within the run's noise.
            MedianInterval Each(List<double> stepMs, double stepFlops) =>
                MedianInterval.Of(stepMs.Zip(gemmMs, (s, gm) => stepFlops / (s * 1e6) / gemm.GflopsPerSecond(gm)).ToList());
            var plainEach = Each(ortMs, flops);
            string each = $"per step against its GEMM sample: plain {plainEach.Percent()}";
            string eachShort = $"per-step plain {Short(plainEach)}";
            if (pair.Profile is { } pe)
            {
                var profileEach = Each(profileMs, pe.Flops ?? flops);
                each += $", {pe.Name} {profileEach.Percent()}";
                eachShort += $", {pe.Name} {Short(profileEach)}";
            }
            Console.WriteLine($"[{n}] of the GEMM peak, {each}");

            // The same fractions from process CPU time: on a loaded machine wall time mostly measures the other processes,
            // CPU time the work (exact with 1 thread; with more, idle workers spinning between operators count too).
            double cpuPeak = flops / (Median(ortCpuMs) * 1e6) / gemm.GflopsPerSecond(Median(gemmCpuMs));
            string cpuFractions = $"by CPU time plain {cpuPeak:P1}";
            if (pair.Profile is { } pp)
            {
                cpuFractions += $", {pp.Name} {(pp.Flops ?? flops) / (Median(profileCpuMs) * 1e6) / gemm.GflopsPerSecond(Median(gemmCpuMs)):P1}";
            }

            Console.WriteLine($"[{n}] by process CPU time (robust to a loaded machine; exact at 1 thread, spinning workers inflate it at more): " +
                $"GEMM {gemm.GflopsPerSecond(Median(gemmCpuMs)):F1} GFLOP per CPU-second, plain step {flops / (Median(ortCpuMs) * 1e6):F1}; of GEMM {cpuFractions}");
            result += $"; GFLOP/step {flops / 1e9:F2}; {rates}; GEMM peak {peak:F1} GFLOP/s; {fractions}; {eachShort}; {cpuFractions}";
            if (pair.Transcendental is { } tc)
            {
                // No rewrite of the graph does the FLOPs faster than the GEMM peak or the exp-class elements faster than
                // ONNX Runtime's kernels do them from cache.
                double flopMs = flops / (peak * 1e6);
                double floor = flopMs + tc.Milliseconds;
                double bound = flopMs / floor;
                string reached = $"plain {floor / ort:P1}" + (pair.Profile is { } pf ? $", {pf.Name} {floor / Median(profileMs):P1}" : "");
                Console.WriteLine($"[{n}] floor: {floor:F1} ms/step = {flopMs:F1} ms of FLOPs at the GEMM peak + {tc.Milliseconds:F1} ms of exp-class elements ({tc.Detail}); " +
                    $"so at most {bound:P1} of the GEMM peak; the steps run at {reached} of the floor's speed");
                result += $"; floor {floor:F1} ms, bound {bound:P1} of GEMM peak";
            }

            if (pair.Profile is not null) result += $"; plain/{pair.Profile.Name} paired ratio {Median(pairRatios):F3}";
            Console.WriteLine(result + $"; load average {LoadAverage()}");
        }

        Console.WriteLine($"[{n}] ESTIMATE, {pair.Network} only (no text encoders, VAE decode, scheduler or host overhead): {steps} steps with CFG batch {batch} = {estimate}");
    }

    /// <summary>The 1-, 5- and 15-minute load averages (/proc/loadavg), or n/a.</summary>
    public static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }

    /// <summary>The largest |x - y| and the largest |y|; the outputs must be the same size.</summary>
    private static (double Max, double Scale) Difference(string name, string what, float[] x, float[] y)
    {
        if (x.Length != y.Length) throw new InvalidOperationException($"[{name}] {what}: output sizes differ ({x.Length} vs {y.Length} values)");
        double maxErr = 0, maxAbs = 0;
        for (int i = 0; i < x.Length; i++) { maxErr = Math.Max(maxErr, Math.Abs(x[i] - y[i])); maxAbs = Math.Max(maxAbs, Math.Abs(y[i])); }
        return (maxErr, maxAbs);
    }

    private static (double Wall, double Cpu) TimeBoth(Func<float[]> step)
    {
        var cpu = CpuClock.Start();
        double wall = Time(step);
        return (wall, cpu.Ms());
    }

    /// <summary>This process's CPU time (user + system, all threads) since <see cref="Start"/>.</summary>
    private readonly struct CpuClock
    {
        private readonly TimeSpan _start;

        private CpuClock(TimeSpan start) => _start = start;

        public static CpuClock Start() => new(Process.GetCurrentProcess().TotalProcessorTime);

        public double Ms() => (Process.GetCurrentProcess().TotalProcessorTime - _start).TotalMilliseconds;
    }

    private static double Time(Func<float[]> step)
    {
        var sw = Stopwatch.StartNew();
        step();
        return sw.Elapsed.TotalMilliseconds;
    }

    private static string Short(MedianInterval m) =>
        m.Low is double lo && m.High is double hi ? $"{m.Median:P1} [{lo:P1}, {hi:P1}]" : $"{m.Median:P1}";

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
        ModelPath = modelPath;
        Threads = threads;
        Inputs = inputs;
        _options = StepBench.CpuOptions(threads);
        _session = new InferenceSession(modelPath, _options);
        _names = inputs.Select(i => i.Name).ToArray();
        _values = inputs.Select(i => OrtValue.CreateTensorValueFromMemory(i.Data, i.Shape)).ToArray();
    }

    public string ModelPath { get; }

    public int Threads { get; }

    public IReadOnlyList<(string Name, float[] Data, long[] Shape)> Inputs { get; }

    /// <summary>The graph's FLOPs per run (<see cref="FlopCounter"/>, one profiled run with optimizations off), in total.</summary>
    public double CountFlops(string name) => CountWork(name).Flops;

    /// <summary>
    /// The graph's FLOPs per run and the output elements of its exponential-class operators
    /// (<see cref="FlopCounter.ElementsFromProfile"/>), from one profiled run with optimizations off.
    /// </summary>
    public (double Flops, IReadOnlyList<OpElements> Elements) CountWork(string name)
    {
        using var options = StepBench.CpuOptions(Threads);
        string profile = FlopCounter.Profile(ModelPath, options, Inputs);
        var ops = FlopCounter.FromProfile(profile);
        var elements = FlopCounter.ElementsFromProfile(profile);
        double total = ops.Sum(o => o.Flops);
        string graph = $"{Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(ModelPath)))}/{Path.GetFileName(Path.GetDirectoryName(ModelPath))}";
        Console.WriteLine($"[{name}] FLOPs per step of {graph}: " +
            $"{total / 1e9:F3} GFLOP (" + string.Join(", ", ops.Select(o => $"{o.Op} x{o.Nodes} {o.Flops / total:P1}")) + ")");
        if (elements.Count > 0)
        {
            Console.WriteLine($"[{name}] exp-class elements per step of {graph}: " + string.Join(", ", elements.Select(e => $"{e.Op} x{e.Nodes} {e.Elements / 1e6:F2} M")));
        }

        return (total, elements);
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
