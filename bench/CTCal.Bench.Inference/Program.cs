// Per-step UNet latency: the ONNX model written by CTCal.Export in ONNX Runtime (CPU provider) vs the TorchSharp forward
// pass (eval, no_grad), same weights, same inputs, same thread count; medians after warm-up and their ratio.
// --optimize cpu: also the export profile's graph (fused contrib operators), timed in pairs against the plain graph.
// --pipeline: seconds per image through the plugin instead (PipelineBench).
using System.Diagnostics;
using CTCal.Bench.Inference;
using CTCal.Core.Diffusers;
using CTCal.Export;
using CTCal.Trainer.Networks;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;
using RandomModelWriter = CTCal.Export.Fixtures.RandomModelWriter;

int runs = 20, warmup = 3, threads = Environment.ProcessorCount, batch = 2, tokens = 77, steps = 20;
string configs = "tiny,mid";
string? dir = null, scheduler = null, pluginDir = null, tokenizerDir = null, providers = null, onnx = null, memoryMode = null;
bool keep = false, pipeline = false, runsGiven = false, threadsGiven = false, noTorch = false;
ExportOptimization? optimize = null;
int size = 256;
double guidance = 7.5;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--runs": runs = int.Parse(Next()); runsGiven = true; break;
        case "--warmup": warmup = int.Parse(Next()); break;
        case "--threads": threads = int.Parse(Next()); threadsGiven = true; break;
        case "--batch": batch = int.Parse(Next()); break;
        case "--steps": steps = int.Parse(Next()); break;
        case "--configs": configs = Next(); break;
        case "--dir": dir = Next(); break;
        case "--keep": keep = true; break;
        case "--pipeline": pipeline = true; break;
        case "--size": size = int.Parse(Next()); break;
        case "--guidance": guidance = double.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--scheduler": scheduler = Next(); break;
        case "--providers": providers = Next(); break;
        case "--plugin-dir": pluginDir = Next(); break;
        case "--tokenizer": tokenizerDir = Next(); break;
        case "--onnx": onnx = Next(); break;
        case "--memory-mode": memoryMode = Next(); break;
        case "--no-torch": noTorch = true; break;
        case "--optimize":
            try
            {
                optimize = ExportOptimizationNames.Parse(Next());
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine(e.Message);
                return 2;
            }
            if (optimize != ExportOptimization.Cpu)
            {
                Console.Error.WriteLine($"--optimize {ExportOptimizationNames.Name(optimize.Value)}: this bench runs the CPU provider, so only cpu can be timed");
                return 2;
            }
            break;
        case "-h" or "--help":
            Console.WriteLine("ctcal bench inference [--configs tiny,mid] [--runs 20] [--warmup 3] [--threads N] [--batch 2] [--steps 20] [--dir <work folder>] [--keep] " +
                "[--optimize cpu (also time the cpu export profile, paired with the plain graph)] [--no-torch (time ONNX Runtime only)]");
            Console.WriteLine("ctcal bench inference --pipeline [--runs 3] [--steps 20] [--size 256] [--guidance 7.5] [--scheduler <name>] [--providers cuda,cpu] " +
                "[--threads N (plugin intraOpThreads; default 0)] [--plugin-dir <CTCal.Plugin build output>] [--tokenizer <folder>] [--dir <work folder>] [--keep] " +
                "[--onnx <exported ONNX model folder to serve instead of the generated mid model>] [--memory-mode low|balanced]");
            return 0;
        default: Console.Error.WriteLine($"unknown argument '{args[i]}'"); return 2;
    }
}
if (runs < 1 || warmup < 0 || threads < 1 || batch < 1 || steps < 1)
{
    Console.Error.WriteLine("--runs, --threads, --batch and --steps must be >= 1, --warmup >= 0");
    return 2;
}

if (pipeline && (optimize is not null || noTorch))
{
    Console.Error.WriteLine("--optimize and --no-torch apply to the UNet latency mode, not to --pipeline");
    return 2;
}

if (pipeline)
{
    if (memoryMode is not null and not ("low" or "balanced"))
    {
        Console.Error.WriteLine($"--memory-mode {memoryMode}: must be low or balanced");
        return 2;
    }
    if (size < 8 || size % 8 != 0)
    {
        Console.Error.WriteLine($"--size {size}: must be a positive multiple of 8");
        return 2;
    }

    string pipelineWork = dir ?? Path.Combine(Path.GetTempPath(), $"ctcal-bench-pipeline-{Guid.NewGuid():N}");
    Directory.CreateDirectory(pipelineWork);
    try
    {
        return await PipelineBench.RunAsync(new PipelineBenchOptions
        {
            Runs = runsGiven ? runs : 3,
            Steps = steps,
            Size = size,
            Guidance = guidance,
            Scheduler = scheduler,
            Providers = providers is null ? ["cuda", "cpu"] : providers.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            Threads = threadsGiven ? threads : 0,
            PluginBuildOutput = pluginDir,
            TokenizerFolder = tokenizerDir,
            OnnxFolder = onnx is null ? null : Path.GetFullPath(onnx),
            MemoryMode = memoryMode,
        }, pipelineWork, LoadAverage);
    }
    finally
    {
        if (!keep && dir is null) Directory.Delete(pipelineWork, true);
    }
}

var selected = new List<BenchConfig>();
foreach (string name in configs.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
{
    var c = name switch { "tiny" => BenchConfig.Tiny, "mid" => BenchConfig.Mid, "sd15" => BenchConfig.Sd15, _ => null };
    if (c is null) { Console.Error.WriteLine($"--configs: unknown config '{name}' (tiny, mid, sd15)"); return 2; }
    if (c.Reference is not null && !noTorch)
    {
        Console.Error.WriteLine($"--configs {name}: needs --no-torch (a TorchSharp model of that size would sit in memory beside the ONNX Runtime sessions)");
        return 2;
    }
    selected.Add(c);
}

set_num_threads(threads);
string work = dir ?? Path.Combine(Path.GetTempPath(), $"ctcal-bench-inference-{Guid.NewGuid():N}");
Directory.CreateDirectory(work);
Console.WriteLine($"threads: torch.set_num_threads({threads}) -> get_num_threads() = {get_num_threads()}; ORT IntraOpNumThreads = {threads}, " +
    $"InterOpNumThreads = 1, sequential execution; {Environment.ProcessorCount} logical CPUs");
Console.WriteLine($"ONNX Runtime providers available: {string.Join(", ", OrtEnv.Instance().GetAvailableProviders())}; sessions use CPUExecutionProvider " +
    "(no other provider appended), graph optimizations ORT_ENABLE_ALL");
Console.WriteLine($"inputs: batch {batch} (classifier-free guidance pair), {tokens} tokens, float32 timesteps; {warmup} warm-up + {runs} timed runs each, alternating rounds");
Console.WriteLine($"load average at start: {LoadAverage()} (other processes on these CPUs inflate medians; the minima show the uncontended cost)");
try
{
    foreach (var config in selected) Run(config);
    Console.WriteLine();
    Console.WriteLine($"load average at end: {LoadAverage()}");
}
finally
{
    if (!keep && dir is null) Directory.Delete(work, true);
}
return 0;

void Run(BenchConfig bench)
{
    using var scope = NewDisposeScope();
    // 1. TorchSharp UNet with seeded random weights, saved as a diffusers unet folder and exported (a reference-size model:
    //    streamed seeded weights from RandomModelWriter, no TorchSharp model).
    string model = Path.Combine(work, bench.Name, "model");
    string onnx = Path.Combine(work, bench.Name, "onnx");
    var unetConfig = UNetConfig.Parse(bench.Json, $"{bench.Name} unet config");
    long parameters;
    UNet2DConditionModel? unet = null;
    if (bench.Reference is { } reference)
    {
        string tokenizer = Path.Combine(PipelineBench.RepositoryRoot(), "tests", "data", "fixtures", "tiny-sd1", "tokenizer");
        RandomModelWriter.Write(reference, model, seed: 1, tokenizer, components: ["unet"]);
        parameters = RandomModelWriter.Tensors(reference, "unet").Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b));
    }
    else
    {
        Directory.CreateDirectory(Path.Combine(model, "unet"));
        File.WriteAllText(Path.Combine(model, "unet", "config.json"), bench.Json);
        unet = new UNet2DConditionModel(unetConfig);
        RandomWeights.Fill(unet, seed: 1);
        unet.eval();
        DiffusersWeights.Save(unet, Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"));
        parameters = unet.parameters().Sum(p => p.numel());
    }
    using var unetOwner = unet;
    var exportClock = Stopwatch.StartNew();
    OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = onnx, Components = ExportComponents.Unet, Force = true });
    exportClock.Stop();
    string? onnxFused = optimize is { } profile ? Path.Combine(work, bench.Name, "onnx-" + ExportOptimizationNames.Name(profile)) : null;
    if (onnxFused is not null)
        OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = onnxFused, Components = ExportComponents.Unet, Force = true, Optimize = optimize!.Value });

    // 2. The same inputs for both.
    var g = new Generator(2);
    var sample = randn(new long[] { batch, unetConfig.InChannels, bench.Latent, bench.Latent }, generator: g);
    var context = randn(new long[] { batch, tokens, unetConfig.CrossAttentionDim }, generator: g);
    float[] timesteps = Enumerable.Range(0, batch).Select(i => 981f - 50f * i).ToArray();
    var timestepTensor = tensor(timesteps);
    float[] sampleData = sample.data<float>().ToArray();
    float[] contextData = context.data<float>().ToArray();

    using var options = new SessionOptions
    {
        GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        IntraOpNumThreads = threads,
        InterOpNumThreads = 1,
        ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
    };
    using var session = new InferenceSession(Path.Combine(onnx, "unet", "model.onnx"), options);
    using var fusedSession = onnxFused is null ? null : new InferenceSession(Path.Combine(onnxFused, "unet", "model.onnx"), options);
    using var sampleValue = OrtValue.CreateTensorValueFromMemory(sampleData, sample.shape);
    using var timestepValue = OrtValue.CreateTensorValueFromMemory(timesteps, [batch]);
    using var contextValue = OrtValue.CreateTensorValueFromMemory(contextData, context.shape);
    string[] inputNames = ["sample", "timestep", "encoder_hidden_states"];
    OrtValue[] inputValues = [sampleValue, timestepValue, contextValue];
    using var runOptions = new RunOptions();

    float[] OrtStep() => Step(session);

    float[] Step(InferenceSession s)
    {
        using var outputs = s.Run(runOptions, inputNames, inputValues, s.OutputNames);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    float[] TorchStep()
    {
        using var s = NewDisposeScope();
        using var _ = no_grad();
        return unet!.forward(sample, timestepTensor, context).data<float>().ToArray(); // only without --no-torch, which every reference-size config needs
    }

    // 3. Same output (a timing of a wrong graph would mean nothing).
    float[] a = OrtStep();
    (double Max, double Scale) Diff(float[] x, float[] y)
    {
        double maxErr = 0, maxAbs = 0;
        for (int i = 0; i < x.Length; i++) { maxErr = Math.Max(maxErr, Math.Abs(x[i] - y[i])); maxAbs = Math.Max(maxAbs, Math.Abs(y[i])); }
        return (maxErr, maxAbs);
    }
    var torchDiff = noTorch ? default : Diff(a, TorchStep());
    var fusedDiff = fusedSession is null ? default : Diff(Step(fusedSession), a);

    for (int i = 0; i < warmup; i++)
    {
        OrtStep();
        if (fusedSession is not null) Step(fusedSession);
        if (!noTorch) TorchStep();
    }
    var ortMs = new List<double>();
    var torchMs = new List<double>();
    var fusedMs = new List<double>();
    var pairRatios = new List<double>(); // plain / fused of back-to-back steps (same load), order alternating
    double Time(Func<float[]> step)
    {
        var sw = Stopwatch.StartNew();
        step();
        return sw.Elapsed.TotalMilliseconds;
    }
    const int rounds = 5;
    for (int round = 0; round < rounds; round++)
    {
        int count = runs / rounds + (round < runs % rounds ? 1 : 0);
        for (int i = 0; i < count; i++)
        {
            if (fusedSession is null)
            {
                ortMs.Add(Time(OrtStep));
                continue;
            }
            bool plainFirst = (ortMs.Count % 2) == 0;
            double p = plainFirst ? Time(OrtStep) : 0;
            double f = Time(() => Step(fusedSession));
            if (!plainFirst) p = Time(OrtStep);
            ortMs.Add(p);
            fusedMs.Add(f);
            pairRatios.Add(p / f);
        }
        if (!noTorch)
            for (int i = 0; i < count; i++) torchMs.Add(Time(TorchStep));
    }
    double ort = Median(ortMs);

    Console.WriteLine();
    Console.WriteLine($"[{bench.Name}] UNet {parameters:N0} parameters, block_out_channels [{string.Join(", ", unetConfig.BlockOutChannels)}], " +
        $"layers_per_block {unetConfig.LayersPerBlock}, cross_attention_dim {unetConfig.CrossAttentionDim}; sample [{string.Join(", ", sample.shape)}] " +
        $"({bench.Latent * 8}x{bench.Latent * 8} images); export {exportClock.Elapsed.TotalSeconds:F2} s");
    Console.WriteLine($"[{bench.Name}] ONNX Runtime (CPUExecutionProvider) per step: median {ort:F2} ms over {ortMs.Count} runs (min {ortMs.Min():F2}, max {ortMs.Max():F2})");
    if (fusedSession is not null)
    {
        string name = ExportOptimizationNames.Name(optimize!.Value);
        double fused = Median(fusedMs);
        Console.WriteLine($"[{bench.Name}] --optimize {name} vs plain output: max abs difference {fusedDiff.Max:E2} (max |output| {fusedDiff.Scale:F2})");
        Console.WriteLine($"[{bench.Name}] ONNX Runtime, --optimize {name}          per step: median {fused:F2} ms over {fusedMs.Count} runs (min {fusedMs.Min():F2}, max {fusedMs.Max():F2})");
        Console.WriteLine($"[{bench.Name}] plain / {name} profile: paired ratio {Median(pairRatios):F3} (median of back-to-back pairs), medians {ort / fused:F3}, " +
            $"minima {ortMs.Min() / fusedMs.Min():F3} (> 1: the profile is faster)");
    }
    if (!noTorch)
    {
        double torchMedian = Median(torchMs);
        Console.WriteLine($"[{bench.Name}] ORT vs TorchSharp output: max abs difference {torchDiff.Max:E2} (max |output| {torchDiff.Scale:F2})");
        Console.WriteLine($"[{bench.Name}] TorchSharp (eval, no_grad)        per step: median {torchMedian:F2} ms over {torchMs.Count} runs (min {torchMs.Min():F2}, max {torchMs.Max():F2})");
        Console.WriteLine($"[{bench.Name}] ratio TorchSharp / ONNX Runtime: medians {torchMedian / ort:F2}, minima {torchMs.Min() / ortMs.Min():F2} (> 1: ONNX Runtime faster)");
        Console.WriteLine($"[{bench.Name}] ESTIMATE, UNet only (no text encoder, VAE decode, scheduler or host overhead): {steps} steps with CFG batch {batch} = " +
            $"{steps * ort / 1000:F2} s (ONNX Runtime), {steps * torchMedian / 1000:F2} s (TorchSharp)");
    }
}

static string LoadAverage()
{
    try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
    catch (IOException) { return "n/a"; }
    catch (UnauthorizedAccessException) { return "n/a"; }
}

static double Median(List<double> xs)
{
    var s = xs.Order().ToList();
    return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
}
