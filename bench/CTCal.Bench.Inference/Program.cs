// Per-step latency of a denoising network (--family unet: the UNet; sd3: the SD3 transformer): the ONNX model written by
// CTCal.Export in ONNX Runtime (CPU provider) vs the TorchSharp forward pass (eval, no_grad), same weights (seeded, from
// the exporter's RandomWeights), same inputs, same thread count; medians after warm-up and their ratio.
// --optimize cpu: also the UNet exported with the cpu profile (fused contrib operators), timed in back-to-back pairs against
// the plain graph; --no-torch: ONNX Runtime only (the sd15 config needs it). Both through the shared StepBench.
// --family sd3 --onnx <folder>: one exported SD3 transformer (e.g. SD3-medium size) in ONNX Runtime only (Sd3OnnxRun).
// --pipeline: seconds per image through the plugin instead (PipelineBench).
using System.Diagnostics;
using CTCal.Bench.Inference;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Export;
using CTCal.Export.Fixtures;
using CTCal.Export.Graphs;
using CTCal.Trainer.Networks;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using static TorchSharp.torch;

int runs = 20, warmup = 3, threads = Environment.ProcessorCount, batch = 2, steps = 20, gemmSize = 1024;
List<int> threadList = [threads];
int? tokensGiven = null;
string configs = "tiny,mid", family = "unet";
string? dir = null, scheduler = null, pluginDir = null, tokenizerDir = null, providers = null, onnx = null, memoryMode = null;
bool keep = false, pipeline = false, runsGiven = false, threadsGiven = false, sizeGiven = false, batchGiven = false, noTorch = false;
ExportOptimization? optimize = null;
int size = 256;
string pipelineModel = "mid";
double guidance = 7.5;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--runs": runs = int.Parse(Next()); runsGiven = true; break;
        case "--warmup": warmup = int.Parse(Next()); break;
        case "--threads":
            threadList = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToList();
            threads = threadList.Count > 0 ? threadList[0] : 0;
            threadsGiven = true;
            break;
        case "--gemm-size": gemmSize = int.Parse(Next()); break;
        case "--batch": batch = int.Parse(Next()); batchGiven = true; break;
        case "--steps": steps = int.Parse(Next()); break;
        case "--configs": configs = Next(); break;
        case "--family": family = Next(); break;
        case "--tokens": tokensGiven = int.Parse(Next()); break;
        case "--dir": dir = Next(); break;
        case "--keep": keep = true; break;
        case "--pipeline": pipeline = true; break;
        case "--size": size = int.Parse(Next()); sizeGiven = true; break;
        case "--guidance": guidance = double.Parse(Next(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--scheduler": scheduler = Next(); break;
        case "--providers": providers = Next(); break;
        case "--plugin-dir": pluginDir = Next(); break;
        case "--tokenizer": tokenizerDir = Next(); break;
        case "--onnx": onnx = Next(); break;
        case "--memory-mode": memoryMode = Next(); break;
        case "--model": pipelineModel = Next(); break;
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
            Console.WriteLine("ctcal bench inference [--family unet|sd3] [--configs tiny,mid (unet also sd15, with --no-torch)] [--runs 20] [--warmup 3] [--threads N] [--batch 2] " +
                "[--tokens N (text tokens; unet 77, sd3 333 = 77 CLIP + 256 T5)] [--steps 20] [--dir <work folder>] [--keep] " +
                "[--optimize cpu (also time the cpu export profile, paired with the plain graph)] [--no-torch (time ONNX Runtime only)]");
            Console.WriteLine("ctcal bench inference --family sd3 --onnx <exported folder with transformer/model.onnx> [--size 1024 (image px; latent = size/8)] " +
                "[--batch 1] [--runs 1] [--threads N] [--tokens 333]: ONNX Runtime only, load time, seconds per step, peak RSS");
            Console.WriteLine("ctcal bench inference --pipeline [--runs 3] [--steps 20] [--size 256] [--guidance 7.5] [--scheduler <name>] [--providers cuda,cpu] " +
                "[--threads N (plugin intraOpThreads; default 0)] [--plugin-dir <CTCal.Plugin build output>] [--tokenizer <folder>] [--dir <work folder>] [--keep] " +
                "[--model mid|tiny (the generated model: mid, or the tests' tiny-sd1 fixture)] [--onnx <exported ONNX model folder to serve instead of the generated model>] [--memory-mode low|balanced] " +
                "[--optimize cpu (also export the generated model with the profile and time the two in pairs, seconds per image)]");
            return 0;
        default: Console.Error.WriteLine($"unknown argument '{args[i]}'"); return 2;
    }
}
if (runs < 1 || warmup < 0 || threadList.Count == 0 || threadList.Any(t => t < 1) || batch < 1 || steps < 1 || tokensGiven < 1 || gemmSize < 16)
{
    Console.Error.WriteLine("--runs, --threads (each of a comma-separated list), --batch, --steps and --tokens must be >= 1, --warmup >= 0, --gemm-size >= 16");
    return 2;
}
if ((pipeline || onnx is not null) && threadList.Count > 1)
{
    Console.Error.WriteLine($"--threads {string.Join(",", threadList)}: a list of thread counts applies to the per-step latency mode; --pipeline and --onnx take one");
    return 2;
}
if (family is not ("unet" or "sd3"))
{
    Console.Error.WriteLine($"--family {family}: must be unet or sd3");
    return 2;
}
int tokens = tokensGiven ?? (family == "sd3" ? 333 : 77);
if ((pipeline || onnx is not null) && noTorch)
{
    Console.Error.WriteLine("--no-torch applies to the per-step latency mode, not to --pipeline or --onnx");
    return 2;
}
if (optimize is not null && onnx is not null)
{
    Console.Error.WriteLine("--optimize exports the generated model with the profile; with --onnx nothing is exported");
    return 2;
}

if (pipeline)
{
    if (memoryMode is not null and not ("low" or "balanced"))
    {
        Console.Error.WriteLine($"--memory-mode {memoryMode}: must be low or balanced");
        return 2;
    }
    if (pipelineModel is not ("tiny" or "mid"))
    {
        Console.Error.WriteLine($"--model {pipelineModel}: must be tiny or mid");
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
            Size = sizeGiven ? size : null,
            Model = pipelineModel,
            Guidance = guidance,
            Scheduler = scheduler,
            Providers = providers is null ? ["cuda", "cpu"] : providers.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            Threads = threadsGiven ? threads : 0,
            PluginBuildOutput = pluginDir,
            TokenizerFolder = tokenizerDir,
            OnnxFolder = onnx is null ? null : Path.GetFullPath(onnx),
            MemoryMode = memoryMode,
            Optimize = optimize,
        }, pipelineWork, LoadAverage);
    }
    finally
    {
        if (!keep && dir is null) Directory.Delete(pipelineWork, true);
    }
}

set_num_threads(threads);
if (onnx is not null)
{
    if (family != "sd3") { Console.Error.WriteLine("--onnx without --pipeline needs --family sd3 (an exported SD3 transformer)"); return 2; }
    if (size < 16 || size % 16 != 0) { Console.Error.WriteLine($"--size {size}: must be a positive multiple of 16 (latent = size/8, patch 2)"); return 2; }
    Sd3OnnxRun.Run(Path.GetFullPath(onnx), sizeGiven ? size : 1024, batchGiven ? batch : 1, tokens,
        runsGiven ? runs : 1, threads, LoadAverage);
    return 0;
}

var selected = new List<BenchConfig>();
foreach (string name in configs.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
{
    var c = BenchConfig.Find(family, name);
    if (c is null) { Console.Error.WriteLine($"--configs: unknown {family} config '{name}' ({BenchConfig.Names(family)})"); return 2; }
    if (c.OrtOnly && !noTorch)
    {
        Console.Error.WriteLine($"--configs {name}: needs --no-torch (a TorchSharp model of that size would sit in memory beside the ONNX Runtime sessions)");
        return 2;
    }
    selected.Add(c);
}

string work = dir ?? Path.Combine(Path.GetTempPath(), $"ctcal-bench-inference-{Guid.NewGuid():N}");
Directory.CreateDirectory(work);
Console.WriteLine($"threads: {string.Join(", ", threadList)} (each: torch.set_num_threads(N), ORT IntraOpNumThreads = N), " +
    $"InterOpNumThreads = 1, sequential execution; {Environment.ProcessorCount} logical CPUs");
Console.WriteLine($"FLOPs per step: counted from the exported graph (FlopCounter: Conv, MatMul, Gemm, attention; one profiled ONNX Runtime run, optimizations off); " +
    $"GEMM peak: a {gemmSize}x{gemmSize}x{gemmSize} fp32 MatMul in ONNX Runtime with the same session settings, a sample of back-to-back runs (about half a step long) beside each timed step");
Console.WriteLine($"ONNX Runtime providers available: {string.Join(", ", OrtEnv.Instance().GetAvailableProviders())}; sessions use CPUExecutionProvider " +
    "(no other provider appended), graph optimizations ORT_ENABLE_ALL");
Console.WriteLine($"inputs: batch {batch} (classifier-free guidance pair), {tokens} text tokens, float32 timesteps; {warmup} warm-up + {runs} timed runs each, alternating rounds" +
    (noTorch ? "; ONNX Runtime only (--no-torch)" : "") +
    (optimize is { } o ? $"; --optimize {ExportOptimizationNames.Name(o)}: plain and profile graph in back-to-back pairs" : ""));
Console.WriteLine($"load average at start: {LoadAverage()} (other processes on these CPUs inflate medians; the minima show the uncontended cost)");
try
{
    foreach (var config in selected)
    {
        if (config.Family == "sd3") RunSd3(config);
        else RunUNet(config);
    }
    Console.WriteLine();
    Console.WriteLine($"load average at end: {LoadAverage()}");
}
finally
{
    if (!keep && dir is null) Directory.Delete(work, true);
}
return 0;

// The UNet: seeded weights streamed by the exporter's RandomWeights, exported (plain, and with --optimize's profile) and,
// unless --no-torch, loaded by TorchSharp (strict).
void RunUNet(BenchConfig bench)
{
    using var scope = NewDisposeScope();
    string model = Path.Combine(work, bench.Name, "model");
    string onnxFolder = Path.Combine(work, bench.Name, "onnx");
    Directory.CreateDirectory(Path.Combine(model, "unet"));
    var files = new ComponentFiles("unet", Path.Combine(model, "unet", "config.json"), Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"));
    File.WriteAllText(files.ConfigPath, bench.Json);
    var config = UNetConfig.Load(files.ConfigPath);
    var weights = UNetGraph.Build(config, fp16Weights: false).Weights;
    RandomWeights.Write(files.WeightsPath, weights, seed: 1);
    long parameters = weights.Sum(w => w.Shape.Aggregate(1L, (a, b) => a * b));
    using var unet = noTorch ? null : PretrainedModels.LoadUNet(files);
    unet?.eval();
    double export = Export(model, onnxFolder, ExportComponents.Unet);
    string? profileFolder = optimize is { } profile ? Path.Combine(work, bench.Name, "onnx-" + ExportOptimizationNames.Name(profile)) : null;
    if (profileFolder is not null) Export(model, profileFolder, ExportComponents.Unet, optimize!.Value);

    var g = new Generator(2);
    var sample = randn(new long[] { batch, config.InChannels, bench.Latent, bench.Latent }, generator: g);
    var context = randn(new long[] { batch, tokens, config.CrossAttentionDim }, generator: g);
    float[] timesteps = Timesteps();
    var timestepTensor = tensor(timesteps);
    (string, float[], long[])[] inputs =
    [
        ("sample", sample.data<float>().ToArray(), sample.shape), ("timestep", timesteps, [batch]),
        ("encoder_hidden_states", context.data<float>().ToArray(), context.shape),
    ];
    (double Flops, IReadOnlyList<OpElements> Elements)? plainWork = null;
    double? profileFlops = null;
    foreach (int t in threadList)
    {
        set_num_threads(t);
        using var ort = new OrtStepper(Path.Combine(onnxFolder, "unet", "model.onnx"), t, inputs);
        using var ortProfile = profileFolder is null ? null : new OrtStepper(Path.Combine(profileFolder, "unet", "model.onnx"), t, inputs);
        plainWork ??= ort.CountWork(bench.Name);
        double plainFlops = plainWork.Value.Flops;
        profileFlops ??= ortProfile?.CountFlops(bench.Name);
        using var gemm = new GemmPeak(Path.Combine(work, "gemm"), gemmSize, t);
        var transcendental = TranscendentalFloor.Cost(plainWork.Value.Elements, t, Path.Combine(work, "elementwise"));

        float[] TorchStep()
        {
            using var s = NewDisposeScope();
            using var _ = no_grad();
            return unet!.forward(sample, timestepTensor, context).data<float>().ToArray();
        }

        StepBench.CompareAndTime(new StepPair(bench.Name, "UNet",
            $"UNet {parameters:N0} parameters, block_out_channels [{string.Join(", ", config.BlockOutChannels)}], " +
            $"layers_per_block {config.LayersPerBlock}, cross_attention_dim {config.CrossAttentionDim}; sample [{string.Join(", ", sample.shape)}] " +
            $"({bench.Latent * 8}x{bench.Latent * 8} images); export {export:F2} s; {t} thread(s)", ort.Step, unet is null ? null : TorchStep,
            ortProfile is null ? null : new ProfileStep(ExportOptimizationNames.Name(optimize!.Value), ortProfile.Step, profileFlops),
            t, plainFlops, gemm, transcendental), warmup, runs, steps, batch);
    }
}

// The SD3 transformer: a transformer/ folder from the exporter's RandomModelWriter, exported and, unless --no-torch, loaded
// by TorchSharp (strict).
void RunSd3(BenchConfig bench)
{
    using var scope = NewDisposeScope();
    string model = Path.Combine(work, "sd3-" + bench.Name, "model");
    string onnxFolder = Path.Combine(work, "sd3-" + bench.Name, "onnx");
    RandomModelWriter.WriteTransformer(bench.Json, model, seed: 1);
    var c = SD3TransformerConfig.Load(Path.Combine(model, "transformer", "config.json"));
    // Parameters: the weights file less pos_embed.pos_embed, the fixed sin-cos position table diffusers saves as a buffer.
    long parameters = RandomModelWriter.TransformerTensors(c).Where(w => w.Name != "pos_embed.pos_embed").Sum(w => w.Shape.Aggregate(1L, (a, b) => a * b));
    using var transformer = noTorch ? null : SD3Transformer2DModel.FromFolder(Path.Combine(model, "transformer"));
    transformer?.eval();
    double export = Export(model, onnxFolder, ExportComponents.Transformer);
    string? profileFolder = optimize is { } profile ? Path.Combine(work, "sd3-" + bench.Name, "onnx-" + ExportOptimizationNames.Name(profile)) : null;
    if (profileFolder is not null) Export(model, profileFolder, ExportComponents.Transformer, optimize!.Value);

    var g = new Generator(2);
    var hidden = randn(new long[] { batch, c.InChannels, bench.Latent, bench.Latent }, generator: g);
    var context = randn(new long[] { batch, tokens, c.JointAttentionDim }, generator: g);
    var pooled = randn(new long[] { batch, c.PooledProjectionDim }, generator: g);
    float[] timesteps = Timesteps();
    var timestepTensor = tensor(timesteps);
    (string, float[], long[])[] inputs =
    [
        (SD3TransformerGraph.HiddenStatesInput, hidden.data<float>().ToArray(), hidden.shape),
        (SD3TransformerGraph.EncoderHiddenStatesInput, context.data<float>().ToArray(), context.shape),
        (SD3TransformerGraph.PooledProjectionsInput, pooled.data<float>().ToArray(), pooled.shape),
        (SD3TransformerGraph.TimestepInput, timesteps, [batch]),
    ];
    long imageTokens = (long)(bench.Latent / c.PatchSize) * (bench.Latent / c.PatchSize);
    (double Flops, IReadOnlyList<OpElements> Elements)? plainWork = null;
    double? profileFlops = null;
    foreach (int t in threadList)
    {
        set_num_threads(t);
        using var ort = new OrtStepper(Path.Combine(onnxFolder, "transformer", "model.onnx"), t, inputs);
        using var ortProfile = profileFolder is null ? null : new OrtStepper(Path.Combine(profileFolder, "transformer", "model.onnx"), t, inputs);
        plainWork ??= ort.CountWork("sd3-" + bench.Name);
        profileFlops ??= ortProfile?.CountFlops("sd3-" + bench.Name);
        using var gemm = new GemmPeak(Path.Combine(work, "gemm"), gemmSize, t);
        var transcendental = TranscendentalFloor.Cost(plainWork.Value.Elements, t, Path.Combine(work, "elementwise"));

        float[] TorchStep()
        {
            using var s = NewDisposeScope();
            using var _ = no_grad();
            return transformer!.forward(hidden, context, pooled, timestepTensor).data<float>().ToArray();
        }

        StepBench.CompareAndTime(new StepPair("sd3-" + bench.Name, "SD3 transformer",
            $"SD3 transformer {parameters:N0} parameters, {c.NumLayers} joint layers, {c.NumAttentionHeads} heads x {c.AttentionHeadDim} = {c.InnerDim} wide, " +
            $"joint_attention_dim {c.JointAttentionDim}, pooled {c.PooledProjectionDim}; hidden_states [{string.Join(", ", hidden.shape)}] " +
            $"({bench.Latent * 8}x{bench.Latent * 8} images, {imageTokens} image + {tokens} text tokens); export {export:F2} s; {t} thread(s)", ort.Step,
            transformer is null ? null : TorchStep,
            ortProfile is null ? null : new ProfileStep(ExportOptimizationNames.Name(optimize!.Value), ortProfile.Step, profileFlops),
            t, plainWork.Value.Flops, gemm, transcendental), warmup, runs, steps, batch);
    }
}

double Export(string model, string output, ExportComponents components, ExportOptimization optimization = ExportOptimization.Plain)
{
    var clock = Stopwatch.StartNew();
    OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, Components = components, Force = true, Optimize = optimization });
    return clock.Elapsed.TotalSeconds;
}

// A classifier-free-guidance batch at different timesteps (981, 931, ...), in each family's units.
float[] Timesteps() => Enumerable.Range(0, batch).Select(i => 981f - 50f * i).ToArray();

static string LoadAverage() => StepBench.LoadAverage();
