using System.CommandLine;
using System.Globalization;
using CTCal.BaseModel;
using CTCal.Core.IO;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>ctcal-train base tokenizer|dataset|vae|unet|sample|ceiling</c>: the from-scratch base model of the synthetic world (CTCal.BaseModel).
/// <paramref name="args"/> is the whole command line, recorded in the recipes.
/// </summary>
internal sealed class BaseVerb(CliContext context, string[] args)
{
    public Command Build()
    {
        var command = new Command("base", "Train the synthetic world's base model from scratch: world tokenizer, VAE, then text encoder(s) + UNet (or SD3 transformer: --family sd3).");

        var tokOut = new Option<string>("--out") { Description = "tokenizer folder to write (vocab.json, merges.txt, ...)", Required = true };
        var tokenizer = new Command("tokenizer", "Write the world tokenizer (CLIP BPE format, one token per grammar word).");
        tokenizer.Options.Add(tokOut);
        tokenizer.SetAction(parse => context.Guarded(() =>
        {
            var world = WorldTokenizer.ForSyntheticWorld();
            world.Write(parse.GetValue(tokOut)!);
            context.Out.WriteLine($"tokenizer: {world.VocabularySize} tokens, {world.Merges.Count} merges, {world.Words.Count} words -> {parse.GetValue(tokOut)}");
            return ExitCodes.Ok;
        }));
        command.Subcommands.Add(tokenizer);

        var dsOut = new Option<string>("--out") { Description = "dataset folder to write (metadata.jsonl, PNGs, world.json, eval_prompts.json)", Required = true };
        var dsCount = new Option<int>("--count") { Description = "training images", DefaultValueFactory = _ => 2000 };
        var dsSize = new Option<int>("--image-size") { Description = "image side in pixels", DefaultValueFactory = _ => 64 };
        var dsSeed = new Option<long>("--seed") { Description = "world seed (split, held-out pairs, scenes)", DefaultValueFactory = _ => 1 };
        var dsMasks = new Option<bool>("--with-masks") { Description = "also write each record's per-subject masks (masks/*.png, named in metadata.jsonl 'masks')" };
        var dataset = new Command("dataset", "Write the synthetic world's training dataset and its evaluation prompts.");
        foreach (var o in new Option[] { dsOut, dsCount, dsSize, dsSeed, dsMasks }) dataset.Options.Add(o);
        dataset.SetAction(parse => context.Guarded(() =>
        {
            var world = CTCal.Synthetic.SyntheticWorld.Create(new CTCal.Synthetic.SyntheticWorldOptions
            {
                Seed = checked((ulong)parse.GetValue(dsSeed)), TrainCount = parse.GetValue(dsCount), ImageSize = parse.GetValue(dsSize),
            });
            string folder = parse.GetValue(dsOut)!;
            CTCal.Synthetic.DatasetWriter.WriteDataset(world, folder, parse.GetValue(dsMasks));
            CTCal.Synthetic.DatasetWriter.WriteEvalPrompts(world, Path.Combine(folder, "eval_prompts.json"));
            context.Out.WriteLine($"dataset: {world.TrainRecords.Count} images, {world.EvalPrompts.Count} evaluation prompts -> {folder}");
            return ExitCodes.Ok;
        }));
        command.Subcommands.Add(dataset);

        Option<string> Data() => new("--data") { Description = "synthetic dataset folder (metadata.jsonl + PNGs)", Required = true };
        Option<string> Out(string what) => new("--out") { Description = what, Required = true };
        Option<int> Steps(int d) => new("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => d };
        Option<long> Seed() => new("--seed") { Description = "seed of initialisation, data order and noise", DefaultValueFactory = _ => 1 };
        Option<int> Batch(int d) => new("--batch-size") { Description = "images per step", DefaultValueFactory = _ => d };
        Option<double> Lr(double d) => new("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => d };
        Option<int> Warmup(int d) => new("--warmup") { Description = "linear warmup steps", DefaultValueFactory = _ => d };
        Option<string> Sizes() => new("--sizes") { Description = "model sizes: default, tiny, or a JSON file (snake_case BaseModelConfig keys)", DefaultValueFactory = _ => "default" };
        Option<int> Threads() => new("--threads") { Description = "torch CPU threads (0: library default)", DefaultValueFactory = _ => 0 };

        {
            var data = Data(); var output = Out("output folder; the VAE goes to <out>/vae/"); var steps = Steps(2000); var seed = Seed();
            var batch = Batch(16); var lr = Lr(5e-4); var warmup = Warmup(100); var sizes = Sizes(); var threads = Threads();
            var kl = new Option<double>("--kl-weight") { Description = "weight of the KL term", DefaultValueFactory = _ => 1e-4 };
            var vae = new Command("vae", "Train the AutoencoderKL from scratch (MSE + L1 reconstruction + small KL, AdamW).");
            foreach (var o in new Option[] { data, output, steps, seed, batch, lr, warmup, kl, sizes, threads }) vae.Options.Add(o);
            vae.SetAction(parse => context.Guarded(() =>
            {
                CliContext.SetThreads(parse.GetValue(threads));
                CliContext.RefuseOverlap(Path.GetFullPath(parse.GetValue(output)!), parse.GetValue(data)!, "--data");
                var config = LoadSizes(parse.GetValue(sizes)!);
                var dataset = ImageCaptionDataset.Open(parse.GetValue(data)!, config.ImageSize);
                var options = new VaeTrainingOptions
                {
                    Steps = parse.GetValue(steps), Seed = parse.GetValue(seed), BatchSize = parse.GetValue(batch),
                    LearningRate = parse.GetValue(lr), WarmupSteps = parse.GetValue(warmup), KlWeight = parse.GetValue(kl),
                };
                string outFolder = parse.GetValue(output)!;
                var result = VaeTrainer.Train(config, dataset, options, outFolder, context.Info, context.Cancellation.Token);
                string summary = string.Create(CultureInfo.InvariantCulture,
                    $"vae: {result.Steps} steps, reconstruction L1 {result.InitialL1:F4} -> {result.FinalL1:F4}, final loss {result.FinalLoss:F5}, scaling_factor {result.ScalingFactor}, {result.SecondsPerStep:F3} s/step");
                AtomicFile.WriteText(Path.Combine(outFolder, "vae", "VAE_RECIPE.json"), System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["command"] = CommandLine(args), ["seed"] = options.Seed, ["steps"] = result.Steps, ["batch_size"] = options.BatchSize,
                    ["initial_l1"] = result.InitialL1, ["final_l1"] = result.FinalL1, ["final_loss"] = result.FinalLoss,
                    ["scaling_factor"] = result.ScalingFactor, ["seconds_per_step"] = result.SecondsPerStep,
                }, new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
                context.Out.WriteLine(summary);
                return context.Cancellation.IsCancellationRequested ? ExitCodes.Cancelled : ExitCodes.Ok;
            }));
            command.Subcommands.Add(vae);
        }
        {
            var data = Data(); var output = Out("output diffusers folder"); var steps = Steps(4000); var seed = Seed();
            var batch = Batch(32); var lr = Lr(3e-4); var warmup = Warmup(200); var sizes = Sizes(); var threads = Threads();
            var vaeFolder = new Option<string>("--vae") { Description = "trained VAE: a folder with config.json + weights, or one with vae/", Required = true };
            var ema = new Option<double>("--ema-decay") { DefaultValueFactory = _ => 0.999, Description = "EMA decay" };
            var snr = new Option<double?>("--min-snr-gamma") { Description = "Min-SNR-γ, sd1 only (default 5; 0: off)" };
            var family = new Option<string>("--family") { DefaultValueFactory = _ => "sd1", Description = "sd1 (CLIP + UNet, DDPM) or sd3 (two CLIP encoders with projection + SD3 transformer, flow matching)" };
            var weighting = new Option<string>("--weighting-scheme") { DefaultValueFactory = _ => "logit_normal", Description = "sd3: flow-matching timestep density / loss weight (logit_normal, mode, sigma_sqrt, cosmap, none)" };
            var dropout = new Option<double>("--caption-dropout") { DefaultValueFactory = _ => 0.1, Description = "probability of the empty prompt" };
            var schedule = new Option<string>("--lr-schedule") { DefaultValueFactory = _ => "cosine", Description = "constant or cosine" };
            var saveEvery = new Option<int>("--save-every") { DefaultValueFactory = _ => 500, Description = "checkpoint every N steps (0: only at the end)" };
            var resume = new Option<string?>("--resume") { Description = "checkpoint file, or 'latest' under --out" };
            var stopAt = new Option<int?>("--stop-at") { Description = "end after this step of the --steps schedule with a checkpoint (continue later with --resume)" };
            var unet = new Command("unet", "Train the text encoder(s) and the denoiser (UNet, or with --family sd3 the SD3 transformer) from scratch on cached VAE latents; writes a complete diffusers folder and BASE_RECIPE.md/json.");
            foreach (var o in new Option[] { data, vaeFolder, output, steps, seed, batch, lr, warmup, schedule, ema, snr, dropout, saveEvery, resume, stopAt, sizes, threads, family, weighting }) unet.Options.Add(o);
            unet.SetAction(parse => context.Guarded(() =>
            {
                var modelFamily = parse.GetValue(family) switch
                {
                    "sd1" => BaseFamily.SD1,
                    "sd3" => BaseFamily.SD3,
                    var f => throw new UsageException($"--family: '{f}' is not sd1 or sd3"),
                };
                double? gamma = parse.GetValue(snr);
                if (modelFamily == BaseFamily.SD3 && gamma is not null and not 0)
                    throw new UsageException("--min-snr-gamma is a DDPM option; --family sd3 trains with flow matching (--weighting-scheme)");
                if (modelFamily == BaseFamily.SD1 && parse.GetResult(weighting) is { Implicit: false })
                    throw new UsageException("--weighting-scheme is a flow-matching option; it needs --family sd3");
                gamma = modelFamily == BaseFamily.SD3 ? null : gamma ?? 5.0;
                CliContext.SetThreads(parse.GetValue(threads));
                string outFull = Path.GetFullPath(parse.GetValue(output)!);
                CliContext.RefuseOverlap(outFull, parse.GetValue(data)!, "--data");
                // The recipe trains the VAE into <out>/vae and then the UNet into <out>: reading <out>/vae and copying it onto
                // itself (atomically) loses nothing. Any other overlap of --vae and --out is refused.
                string vaeDir = Path.GetDirectoryName(Path.GetFullPath(BaseDiffusionTrainer.ResolveVae(parse.GetValue(vaeFolder)!).ConfigPath))!;
                if (!string.Equals(vaeDir, Path.Combine(outFull, "vae"), StringComparison.Ordinal)) CliContext.RefuseOverlap(outFull, vaeDir, "--vae");
                var config = LoadSizes(parse.GetValue(sizes)!);
                var dataset = ImageCaptionDataset.Open(parse.GetValue(data)!, config.ImageSize);
                var options = new BaseTrainingOptions
                {
                    Family = modelFamily, FlowMatching = new FlowMatchingOptions { WeightingScheme = parse.GetValue(weighting)! },
                    Steps = parse.GetValue(steps), Seed = parse.GetValue(seed), BatchSize = parse.GetValue(batch), LearningRate = parse.GetValue(lr),
                    WarmupSteps = parse.GetValue(warmup), EmaDecay = parse.GetValue(ema), MinSnrGamma = gamma > 0 ? gamma : null,
                    CaptionDropout = parse.GetValue(dropout), SaveEvery = parse.GetValue(saveEvery), Resume = parse.GetValue(resume),
                    StopAt = parse.GetValue(stopAt),
                    LrSchedule = parse.GetValue(schedule) switch
                    {
                        "constant" => LrScheduleKind.Constant,
                        "cosine" => LrScheduleKind.Cosine,
                        var s => throw new UsageException($"--lr-schedule: '{s}' is not constant or cosine"),
                    },
                };
                string outFolder = parse.GetValue(output)!;
                var result = BaseDiffusionTrainer.Train(config, dataset, parse.GetValue(vaeFolder)!, options, outFolder, context.Info, context.Cancellation.Token);
                if (result.Cancelled)
                {
                    context.Out.WriteLine($"base: cancelled at step {result.Steps}; checkpoint {BaseDiffusionTrainer.LatestCheckpoint(outFolder)} (continue with --resume latest)");
                    return ExitCodes.Cancelled;
                }
                if (result.StoppedAtRequest)
                {
                    context.Out.WriteLine($"base: stopped at step {result.Steps} of {options.Steps} as asked (--stop-at); checkpoint {BaseDiffusionTrainer.LatestCheckpoint(outFolder)} (continue with --resume)");
                    return ExitCodes.Ok;
                }
                Dictionary<string, string>? vaeRecipe = null;
                string vaeRecipePath = Path.Combine(BaseDiffusionTrainer.ResolveVae(parse.GetValue(vaeFolder)!).ConfigPath, "..", "VAE_RECIPE.json");
                if (File.Exists(vaeRecipePath))
                    vaeRecipe = System.Text.Json.JsonDocument.Parse(File.ReadAllText(vaeRecipePath)).RootElement.EnumerateObject()
                        .ToDictionary(p => p.Name, p => p.Value.ToString());
                BaseRecipe.Write(outFolder, CommandLine(args), config, options, result, vaeRecipe);
                context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"base: {result.Steps} steps, final loss {result.FinalLoss:F5}, {result.SecondsPerStep:F3} s/step, wall {result.WallSeconds:F0} s -> {outFolder}"));
                return context.Cancellation.IsCancellationRequested ? ExitCodes.Cancelled : ExitCodes.Ok;
            }));
            command.Subcommands.Add(unet);
        }
        {
            var model = new Option<string>("--model") { Description = "trained base folder (diffusers layout)", Required = true };
            var prompts = new Option<string>("--prompts") { Description = "evaluation prompts JSON (written by 'base dataset' as eval_prompts.json)", Required = true };
            var output = Out("folder for probe.png and probe.json");
            var perCategory = new Option<int>("--per-category") { Description = "prompts per category", DefaultValueFactory = _ => 4 };
            var seeds = new Option<int>("--seeds") { Description = "images per prompt", DefaultValueFactory = _ => 2 };
            var steps = new Option<int>("--sampling-steps") { Description = "sampling steps (DDIM; flow-match Euler for an SD3 folder)", DefaultValueFactory = _ => 30 };
            var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance scale", DefaultValueFactory = _ => 5.0 };
            var threads = Threads();
            var sample = new Command("sample", "Sample evaluation prompts from a base model and score them with the synthetic world's evaluator.");
            foreach (var o in new Option[] { model, prompts, output, perCategory, seeds, steps, guidance, threads }) sample.Options.Add(o);
            sample.SetAction(parse => context.Guarded(() =>
            {
                CliContext.SetThreads(parse.GetValue(threads));
                var all = CTCal.Synthetic.DatasetWriter.ReadEvalPrompts(parse.GetValue(prompts)!);
                var chosen = all.GroupBy(p => p.Category).SelectMany(g => g.Take(parse.GetValue(perCategory))).ToList();
                // SD1 or SD3 by the folder's model_index.json; an SD3 (flow) model samples with flow-match Euler.
                using var diffusion = TrainableModels.Load(parse.GetValue(model)!);
                var (scheduler, size) = diffusion switch
                {
                    SD3TrainableModel sd3 => (sd3.Scheduler, sd3.Vae.Config.SampleSize),
                    DiffusersTrainableModel sd1 => (sd1.Scheduler, sd1.Vae.Config.SampleSize),
                    _ => throw new UsageException($"--model: '{parse.GetValue(model)}' is neither an SD 1.x nor an SD3 folder"),
                };
                string sampler = diffusion.PredictionType == FlowTrainingObjective.PredictionType ? CTCal.Core.Schedulers.FlowMatchEulerDiscreteScheduler.ClassName : "ddim";
                string outFolder = parse.GetValue(output)!;
                var report = BaseModelProbe.Run(diffusion, scheduler, chosen, size, Path.Combine(outFolder, "probe.png"),
                    parse.GetValue(seeds), parse.GetValue(steps), parse.GetValue(guidance), sampler);
                AtomicFile.WriteText(Path.Combine(outFolder, "probe.json"), System.Text.Json.JsonSerializer.Serialize(report,
                    new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() } }));
                context.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"probe: {report.Samples.Count} images, colour {report.ColourAccuracy:P0}, binding {report.BindingAccuracy:P0}, category check {report.PrimaryAccuracy:P0}, overall {report.OverallMean:F3} -> {report.GridPath}"));
                return ExitCodes.Ok;
            }));
            command.Subcommands.Add(sample);
        }
        command.Subcommands.Add(new BaseCeilingCommand(context, args).Build());
        command.Subcommands.Add(SubjectsModelCommand());
        return command;
    }

    /// <summary><c>base subjects-model</c>: trains CTCal's tiny subject model (CTCal.BaseModel.Subjects).</summary>
    private Command SubjectsModelCommand()
    {
        var output = new Option<string>("--out") { Description = "folder for decoder.safetensors, decoder_config.json, tokenizer.json, training.json (then: ctcal-export genai --from <out>)", Required = true };
        var defaults = new CTCal.BaseModel.Subjects.SubjectsModelOptions();
        var steps = new Option<int>("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => defaults.Steps };
        var seed = new Option<int>("--seed") { Description = "seed of initialisation and data", DefaultValueFactory = _ => defaults.Seed };
        var threads = new Option<int>("--threads") { Description = "torch CPU threads (0: library default)", DefaultValueFactory = _ => 0 };
        var command = new Command("subjects-model", "Train the tiny caption -> subjects decoder (synthetic world + lexicon templates) in TorchSharp.");
        foreach (var o in new Option[] { output, steps, seed, threads }) command.Options.Add(o);
        command.SetAction(parse => context.Guarded(() =>
        {
            CliContext.SetThreads(parse.GetValue(threads));
            var options = defaults with { Steps = parse.GetValue(steps), Seed = parse.GetValue(seed) };
            if (options.Steps < 1) throw new UsageException($"--steps must be positive, got {options.Steps}");
            var report = CTCal.BaseModel.Subjects.SubjectsModelRecipe.Train(options, parse.GetValue(output)!, context.Info, context.Cancellation.Token);
            context.Out.WriteLine($"subjects-model: {report.Parameters} parameters, loss {report.FinalLoss:F4}, held-out synthetic {report.HeldOutSyntheticExact}/{report.HeldOutSynthetic}, " +
                $"held-out templates {report.HeldOutTemplatesExact}/{report.HeldOutTemplates} exact, {report.Seconds:F0} s -> {parse.GetValue(output)}");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static BaseModelConfig LoadSizes(string sizes) => sizes switch
    {
        "default" => new BaseModelConfig(),
        "tiny" => BaseModelConfig.Tiny,
        _ when File.Exists(sizes) => BaseModelConfig.FromJson(File.ReadAllText(sizes), sizes),
        _ => throw new UsageException($"--sizes: '{sizes}' is not default, tiny or an existing JSON file"),
    };

    internal static string CommandLine(string[] arguments) =>
        "ctcal-train " + string.Join(' ', arguments.Select(a => a.Length > 0 && a.All(c => char.IsLetterOrDigit(c) || "-_./=:,".Contains(c)) ? a : $"'{a.Replace("'", "'\\''")}'"));
}
