using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using SkiaSharp;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>ctcal-train bench</c>: seconds per optimizer step of vanilla and CTCal fine-tuning, and their ratio; <c>bench step</c>
/// (<see cref="BenchStepCommand"/>): seconds and memory of one training step with and without gradient checkpointing;
/// <c>bench subjects</c> (<see cref="BenchSubjectsCommand"/>): the subject finders' precision/recall on a labelled caption
/// set and captions/s through the GenAI runtime.
/// </summary>
internal sealed class BenchVerb(CliContext context)
{
    public Command Build()
    {
        var model = new Option<string>("--model") { Description = "diffusers model folder (a tiny one, e.g. tests/data/fixtures/tiny-sd1)", Required = true };
        var steps = new Option<int>("--steps") { Description = "timed optimizer steps per round", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps before timing", DefaultValueFactory = _ => 1 };
        var rounds = new Option<int>("--rounds") { Description = "rounds (vanilla then CTCal in each); medians over all timed steps", DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch-size") { Description = "images per step", DefaultValueFactory = _ => 2 };
        var resolution = new Option<int>("--resolution") { Description = "image resolution", DefaultValueFactory = _ => 128 };
        var seed = new Option<long>("--seed") { Description = "seed (the same for both methods)", DefaultValueFactory = _ => 0 };
        var threads = new Option<int>("--threads") { Description = "torch intra-op threads (1 keeps the figures steady on shared machines)", DefaultValueFactory = _ => 1 };
        var layers = new Option<string[]>("--layers") { Description = "CTCal layers (auto, all, or paths)", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["auto"] };
        var command = new Command("bench", "Seconds per optimizer step of vanilla and CTCal fine-tuning on the same model, batch and seed, and their ratio.");
        foreach (var o in new Option[] { model, steps, warmup, rounds, batch, resolution, seed, layers, threads }) command.Options.Add(o);
        command.Subcommands.Add(new BenchStepCommand(context).Build());
        command.Subcommands.Add(new BenchSubjectsCommand(context).Build());
        command.SetAction(parse => Bench(parse.GetValue(model)!, parse.GetValue(steps), parse.GetValue(warmup), parse.GetValue(rounds),
            parse.GetValue(batch), parse.GetValue(resolution), parse.GetValue(seed), parse.GetValue(layers)!, parse.GetValue(threads)));
        return command;
    }

    /// <summary>
    /// Times both methods; prints wall-clock and process-CPU seconds per optimizer step (medians) and their ratios. CPU time is
    /// the steadier figure on a machine shared with other work.
    /// </summary>
    public int Bench(string modelFolder, int steps, int warmup, int rounds, int batchSize, int resolution, long seed, string[] layers, int threads = 1)
    {
        string temp = Path.Combine(Path.GetTempPath(), $"ctcal-bench-{Guid.NewGuid():N}");
        try
        {
            if (steps <= 0 || rounds <= 0 || warmup < 0 || batchSize <= 0 || threads <= 0)
                throw new UsageException("--steps, --rounds, --batch-size and --threads must be positive, --warmup >= 0");
            TorchSharp.torch.set_num_threads(threads);
            var process = Process.GetCurrentProcess();
            string data = WriteBenchDataset(Path.Combine(temp, "data"), resolution, Math.Max(4, batchSize));
            var dataset = ImageCaptionDataset.Open(data, resolution);
            var timings = new Dictionary<TrainingMethod, List<double>> { [TrainingMethod.Vanilla] = [], [TrainingMethod.Ctcal] = [] };
            var cpu = new Dictionary<TrainingMethod, List<double>> { [TrainingMethod.Vanilla] = [], [TrainingMethod.Ctcal] = [] };
            for (int round = 0; round < rounds; round++)
            {
                foreach (var method in new[] { TrainingMethod.Vanilla, TrainingMethod.Ctcal })
                {
                    using var diffusion = context.LoadModel(modelFolder);
                    var options = new TrainingOptions
                    {
                        Method = method, Steps = warmup + steps, BatchSize = batchSize, LearningRate = 1e-4, Seed = seed,
                        SaveEvery = 0, Layers = layers, Lora = new LoraOptions { Rank = 4 },
                    };
                    using var run = new TrainingRun(diffusion, dataset, options, Path.Combine(temp, $"out-{method}-{round}"));
                    for (int i = 0; i < warmup; i++) run.TrainStep();
                    for (int i = 0; i < steps; i++)
                    {
                        process.Refresh();
                        var cpuBefore = process.TotalProcessorTime;
                        var watch = Stopwatch.StartNew();
                        run.TrainStep();
                        timings[method].Add(watch.Elapsed.TotalSeconds);
                        process.Refresh();
                        cpu[method].Add((process.TotalProcessorTime - cpuBefore).TotalSeconds);
                    }
                    if (round == 0 && method == TrainingMethod.Ctcal)
                        context.Out.WriteLine($"calibrated layers: {string.Join(", ", run.CalibratedLayers)}");
                }
            }
            double vanilla = Median(timings[TrainingMethod.Vanilla]);
            double ctcal = Median(timings[TrainingMethod.Ctcal]);
            var c = CultureInfo.InvariantCulture;
            double vanillaCpu = Median(cpu[TrainingMethod.Vanilla]);
            double ctcalCpu = Median(cpu[TrainingMethod.Ctcal]);
            context.Out.WriteLine(string.Create(c, $"model {modelFolder}, batch {batchSize}, resolution {resolution}, seed {seed}, {threads} torch thread(s), {rounds} rounds x {steps} timed steps (after {warmup} warmup)"));
            context.Out.WriteLine(string.Create(c, $"vanilla: {vanilla:F4} s/step wall (median; min {timings[TrainingMethod.Vanilla].Min():F4}), {vanillaCpu:F4} s/step CPU (median)"));
            context.Out.WriteLine(string.Create(c, $"ctcal:   {ctcal:F4} s/step wall (median; min {timings[TrainingMethod.Ctcal].Min():F4}), {ctcalCpu:F4} s/step CPU (median)"));
            context.Out.WriteLine(string.Create(c, $"ratio ctcal/vanilla: {ctcal / vanilla:F3} wall, {ctcalCpu / vanillaCpu:F3} CPU (goal <= 1.5)"));
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

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    /// <summary>Synthetic captioned images (two-subject captions) for the benchmark.</summary>
    private static string WriteBenchDataset(string folder, int size, int count)
    {
        Directory.CreateDirectory(folder);
        string[] captions = ["a red cube next to a blue sphere", "a cat on top of a green box", "two dogs and a yellow ball", "a bird above a tree"];
        var random = new Random(1);
        var lines = new List<string>();
        for (int i = 0; i < count; i++)
        {
            using var bitmap = new SKBitmap(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            using (var canvas = new SKCanvas(bitmap))
            {
                canvas.Clear(SKColors.White);
                using var paint = new SKPaint { Color = new SKColor((byte)random.Next(256), (byte)random.Next(256), (byte)random.Next(256)) };
                canvas.DrawCircle(size * 0.3f, size * 0.5f, size * 0.2f, paint);
                canvas.DrawRect(size * 0.55f, size * 0.3f, size * 0.35f, size * 0.35f, paint);
            }
            using (var stream = File.Create(Path.Combine(folder, $"{i}.png"))) bitmap.Encode(stream, SKEncodedImageFormat.Png, 100);
            lines.Add($$"""{"file_name": "{{i}}.png", "text": "{{captions[i % captions.Length]}}"}""");
        }
        File.WriteAllLines(Path.Combine(folder, "metadata.jsonl"), lines);
        return folder;
    }
}
