using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CTCal.Core.Diagnostics;
using CTCal.Trainer.Data;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using SkiaSharp;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>ctcal-train bench step</c>: seconds per training step and the memory it takes, with and without gradient
/// checkpointing. Runs the real <see cref="TrainingRun.TrainStep"/> (LoRA on the UNet attention, optionally on the text
/// encoder; CTCal or vanilla) on synthetic inputs: <c>--batch</c> random-noise images at <c>--resolution</c> with captions
/// naming two objects, written to a temporary folder, with <c>--cache-encodings</c> so that after the warm-up a step is the
/// UNet work alone (teacher pass, student pass, losses, backward, AdamW). Prints <c>key=value</c> lines.
/// </summary>
internal sealed class BenchStepCommand(CliContext context)
{
    public Command Build()
    {
        var model = new Option<string>("--model") { Description = "diffusers model folder", Required = true };
        var randomWeights = new Option<bool>("--random-weights") { Description = "build the model from the folder's configs with random weights (no safetensors needed; same memory and compute)" };
        var resolution = new Option<int>("--resolution") { Description = "image resolution", DefaultValueFactory = _ => 512 };
        var batch = new Option<int>("--batch") { Description = "images per step", DefaultValueFactory = _ => 1 };
        var steps = new Option<int>("--steps") { Description = "timed steps (per mode)", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps first (per mode)", DefaultValueFactory = _ => 1 };
        var rank = new Option<int>("--lora-rank") { Description = "LoRA rank", DefaultValueFactory = _ => 4 };
        var textLora = new Option<bool>("--text-encoder-lora") { Description = "also LoRA on the text encoder (its forward then runs with grad every step)" };
        var checkpointing = new Option<bool>("--gradient-checkpointing") { Description = "measure with gradient checkpointing (default: without)" };
        var compare = new Option<bool>("--compare") { Description = "measure both modes in one process, alternating step by step on the same model and optimizer" };
        var method = new Option<string>("--method") { Description = "ctcal or vanilla", DefaultValueFactory = _ => "ctcal" };
        method.AcceptOnlyFromAmong("ctcal", "vanilla");
        var layers = new Option<string[]>("--layers") { Description = "CTCal layers (auto, all, or paths)", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["auto"] };
        var threads = new Option<int>("--threads") { Description = "torch CPU threads (0: library default)", DefaultValueFactory = _ => 0 };
        var seed = new Option<long>("--seed") { Description = "seed", DefaultValueFactory = _ => 0 };
        var command = new Command("step", "Seconds per training step, peak RSS and activation memory of one LoRA training step on synthetic inputs, with and/or without gradient checkpointing.");
        foreach (var o in new Option[] { model, randomWeights, resolution, batch, steps, warmup, rank, textLora, checkpointing, compare, method, layers, threads, seed })
            command.Options.Add(o);
        command.SetAction(parse => Run(new Settings(parse.GetValue(model)!, parse.GetValue(randomWeights), parse.GetValue(resolution), parse.GetValue(batch),
            parse.GetValue(steps), parse.GetValue(warmup), parse.GetValue(rank), parse.GetValue(textLora), parse.GetValue(checkpointing),
            parse.GetValue(compare), parse.GetValue(method)!, parse.GetValue(layers)!, parse.GetValue(threads), parse.GetValue(seed))));
        return command;
    }

    /// <summary>The command's options.</summary>
    public sealed record Settings(string Model, bool RandomWeights, int Resolution, int Batch, int Steps, int Warmup, int LoraRank,
        bool TextEncoderLora, bool GradientCheckpointing, bool Compare, string Method, string[] Layers, int Threads, long Seed);

    public int Run(Settings s)
    {
        string temp = Path.Combine(Path.GetTempPath(), $"ctcal-bench-step-{Guid.NewGuid():N}");
        try
        {
            if (s.Steps <= 0 || s.Warmup < 0 || s.Batch <= 0 || s.LoraRank <= 0)
                throw new UsageException("--steps, --batch and --lora-rank must be positive, --warmup >= 0");
            CliContext.SetThreads(s.Threads);
            ProcessMemory.ReturnFreedMemory();
            var c = CultureInfo.InvariantCulture;
            void Line(FormattableString text) => context.Out.WriteLine(text.ToString(c));

            string data = WriteDataset(Path.Combine(temp, "data"), s.Resolution, s.Batch, s.Seed);
            var dataset = ImageCaptionDataset.Open(data, s.Resolution);
            long rssStart = ProcessMemory.Resident();
            using var model = s.RandomWeights ? TrainableModels.RandomFromConfigs(s.Model, s.Seed) : context.LoadModel(s.Model);
            var unet = model.UNet as UNet2DConditionModel
                ?? throw new UsageException($"bench step needs the diffusers UNet; the loader gave {model.UNet.GetType().Name}");
            var options = new TrainingOptions
            {
                Method = s.Method == "vanilla" ? TrainingMethod.Vanilla : TrainingMethod.Ctcal, Steps = int.MaxValue, BatchSize = s.Batch,
                LearningRate = 1e-4, Seed = s.Seed, SaveEvery = 0, AlignEvery = 0, Layers = s.Layers, CacheEncodings = true,
                Lora = new LoraOptions { Rank = s.LoraRank, TextEncoder = s.TextEncoderLora },
            };
            using var run = new TrainingRun(model, dataset, options, Path.Combine(temp, "out"));
            ProcessMemory.Trim();
            long rssLoaded = ProcessMemory.Resident();

            bool[] modes = s.Compare ? [false, true] : [s.GradientCheckpointing];
            context.Err.WriteLine(string.Create(c, $"loaded: RSS {rssLoaded / 1048576.0:F0} MiB; warm-up"));
            for (int i = 0; i < s.Warmup; i++)
                foreach (bool mode in modes)
                {
                    unet.GradientCheckpointing = mode;
                    run.TrainStep();
                }
            ProcessMemory.Trim();
            long rssSteady = ProcessMemory.Resident();

            var seconds = modes.ToDictionary(m => m, _ => new List<double>());
            var peaks = modes.ToDictionary(m => m, _ => new List<long>());
            var before = modes.ToDictionary(m => m, _ => new List<long>());
            for (int i = 0; i < s.Steps; i++)
                foreach (bool mode in modes)
                {
                    unet.GradientCheckpointing = mode;
                    ProcessMemory.Trim();
                    ProcessMemory.ResetPeak();
                    before[mode].Add(ProcessMemory.Resident());
                    var watch = Stopwatch.StartNew();
                    run.TrainStep();
                    seconds[mode].Add(watch.Elapsed.TotalSeconds);
                    peaks[mode].Add(ProcessMemory.Peak());
                    context.Err.WriteLine(string.Create(c, $"step {i + 1}/{s.Steps} {(mode ? "checkpointing" : "plain")}: {seconds[mode][^1]:F2} s, peak RSS {peaks[mode][^1] / 1048576.0:F0} MiB"));
                }
            unet.GradientCheckpointing = false;

            var (weights, lora, optimizer, gradients) = ResidentState(model, run);
            Line($"bench=step model={s.Model} random_weights={s.RandomWeights} resolution={s.Resolution} batch={s.Batch} method={s.Method} lora_rank={s.LoraRank} text_encoder_lora={s.TextEncoderLora} threads={TorchSharp.torch.get_num_threads()} warmup={s.Warmup} steps={s.Steps} calibrated_layers={run.CalibratedLayers.Count}");
            Line($"weights_bytes={weights} lora_bytes={lora} optimizer_state_bytes={optimizer} gradient_bytes={gradients} cached_encodings_bytes={run.CachedEncodingBytes}");
            Line($"rss_start_bytes={rssStart} rss_loaded_bytes={rssLoaded} rss_steady_bytes={rssSteady} peak_source={ProcessMemory.PeakSource}");
            // Activation memory = peak RSS - the resident training state (weights, LoRA, optimizer state and the gradients kept
            // between steps), counted from the tensors: the RSS right after loading is no baseline, since it can still hold
            // the loader's transient buffers (it was above the steady RSS at SD 1.5 size). What is left also holds the
            // runtime's own memory (a few hundred MB), the same in both modes, so the ratio below is conservative.
            long state = weights + lora + optimizer + gradients;
            foreach (bool mode in modes)
            {
                long peak = peaks[mode].Max();
                Line($"mode={(mode ? "checkpointing" : "plain")} seconds_per_step={Median(seconds[mode]):F3} seconds_min={seconds[mode].Min():F3} peak_rss_bytes={peak} activation_bytes={peak - state} step_transient_bytes={peaks[mode].Zip(before[mode], (p, b) => p - b).Max()}");
            }
            if (s.Compare)
            {
                double ratio = (double)(peaks[true].Max() - state) / (peaks[false].Max() - state);
                Line($"activation_ratio_checkpointing_over_plain={ratio:F3} time_ratio_checkpointing_over_plain={Median(seconds[true]) / Median(seconds[false]):F3}");
            }
            return ExitCodes.Ok;
        }
        catch (Exception e)
        {
            return context.Fail(e, null);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>Bytes of the model's weights, the LoRA tensors (A, B and the kept base weights), AdamW's two moments, and the gradients held between steps.</summary>
    private static (long Weights, long Lora, long Optimizer, long Gradients) ResidentState(ITrainableDiffusionModel model, TrainingRun run)
    {
        static long Bytes(TorchSharp.torch.Tensor t) => t.NumberOfElements * t.ElementSize;
        var modules = new List<TorchSharp.torch.nn.Module> { model.UNet, model.TextEncoder };
        if (model is DiffusersTrainableModel diffusers) modules.Add(diffusers.Vae);
        long weights = modules.Sum(m => m.parameters().Sum(p => Bytes(p)) + m.buffers().Sum(b => Bytes(b)));
        var adapters = new[] { run.UNetLora, run.TextEncoderLora }.Where(a => a is not null).SelectMany(a => a!.Layers).ToList();
        long lora = adapters.Sum(l => Bytes(l.A) + Bytes(l.B) + Bytes(l.BaseWeight));
        long optimizer = 2 * run.TrainableParameters.Sum(t => Bytes(t.Parameter));
        long gradients = run.TrainableParameters.Select(t => t.Parameter.grad).Concat(adapters.Select(l => l.Target.weight!.grad))
            .Where(g => g is not null).Sum(g => Bytes(g!));
        return (weights, lora, optimizer, gradients);
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary><paramref name="count"/> random-noise images with two-object captions (the CTCal term has nouns to calibrate).</summary>
    private static string WriteDataset(string folder, int size, int count, long seed)
    {
        Directory.CreateDirectory(folder);
        string[] captions = ["a red cube next to a blue sphere", "a cat on top of a green box", "two dogs and a yellow ball", "a bird above a tree"];
        var random = new Random((int)seed);
        var lines = new List<string>();
        var pixels = new byte[size * size * 4];
        for (int i = 0; i < count; i++)
        {
            random.NextBytes(pixels);
            for (int p = 3; p < pixels.Length; p += 4) pixels[p] = 255;
            using var bitmap = new SKBitmap(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
            using (var stream = File.Create(Path.Combine(folder, $"{i}.png"))) bitmap.Encode(stream, SKEncodedImageFormat.Png, 100);
            lines.Add($$"""{"file_name": "{{i}}.png", "text": "{{captions[i % captions.Length]}}"}""");
        }
        File.WriteAllLines(Path.Combine(folder, "metadata.jsonl"), lines);
        return folder;
    }
}
