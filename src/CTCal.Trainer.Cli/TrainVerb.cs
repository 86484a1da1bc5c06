using System.CommandLine;
using System.Text.Json;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using Spectre.Console;

namespace CTCal.Trainer.Cli;

/// <summary><c>ctcal-train train</c>: fine-tunes a diffusers model with CTCal or vanilla (options, optional --config file, progress display).</summary>
internal sealed class TrainVerb(CliContext context)
{
    private sealed class TrainOptions
    {
        public readonly Option<string?> Config = new("--config") { Description = "JSON file of option values (keys: option names without dashes); command-line values win" };
        public readonly Option<string?> Model = new("--model") { Description = "diffusers model folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)" };
        public readonly Option<string?> Data = new("--data") { Description = "dataset folder: metadata.jsonl (file_name, text, optional subjects) or images with same-name .txt captions" };
        public readonly Option<string?> Out = new("--out") { Description = "output folder (checkpoints/, validation/, weights, train.log)" };
        public readonly Option<string> Method = Choice("--method", "ctcal", "fine-tuning method", "ctcal", "vanilla");
        public readonly Option<int> LoraRank = new("--lora-rank") { Description = "LoRA rank (LoRA is the default mode)", DefaultValueFactory = _ => 4 };
        public readonly Option<double?> LoraAlpha = new("--lora-alpha") { Description = "LoRA alpha (default: the rank, i.e. scale 1)" };
        public readonly Option<double> LoraDropout = new("--lora-dropout") { Description = "LoRA dropout on the adapters' input features", DefaultValueFactory = _ => 0.0 };
        public readonly Option<string> LoraFormat = Choice("--lora-format", "peft", "key spelling of the written LoRA file (peft: unet.{module}.lora_A.weight; kohya: lora_unet_{module}.lora_down.weight with per-module alpha)", "peft", "kohya");
        public readonly Option<bool> TrainTextEncoder = new("--train-text-encoder") { Description = "also put LoRA on the text encoder's self-attention (q/k/v/out_proj)" };
        public readonly Option<bool> Full = new("--full") { Description = "full fine-tuning of every UNet parameter instead of LoRA" };
        public readonly Option<int> Steps = new("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => 1000 };
        public readonly Option<int> BatchSize = new("--batch-size") { Description = "images per micro-batch", DefaultValueFactory = _ => 1 };
        public readonly Option<int> GradAccum = new("--grad-accum") { Description = "micro-batches per optimizer step", DefaultValueFactory = _ => 1 };
        public readonly Option<double> Lr = new("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => 1e-4 };
        public readonly Option<string> LrSchedule = Choice("--lr-schedule", "constant", "learning-rate schedule after warmup", "constant", "cosine");
        public readonly Option<int> Warmup = new("--warmup") { Description = "linear warmup steps", DefaultValueFactory = _ => 0 };
        public readonly Option<double> WeightDecay = new("--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => 1e-2 };
        public readonly Option<double> MaxGradNorm = new("--max-grad-norm") { Description = "gradient clipping norm (0: off)", DefaultValueFactory = _ => 1.0 };
        public readonly Option<double?> EmaDecay = new("--ema-decay") { Description = "EMA of the trainable weights with this decay (off by default)" };
        public readonly Option<double> NoiseOffset = new("--noise-offset") { Description = "noise offset", DefaultValueFactory = _ => 0.0 };
        public readonly Option<double?> MinSnrGamma = new("--min-snr-gamma") { Description = "Min-SNR loss weighting gamma (off by default; 5 is common)" };
        public readonly Option<int> Resolution = new("--resolution") { Description = "training resolution (images are resized and centre-cropped)", DefaultValueFactory = _ => 512 };
        public readonly Option<long> Seed = new("--seed") { Description = "seed of weights init, noise, timesteps and data order", DefaultValueFactory = _ => 42 };
        public readonly Option<int> SaveEvery = new("--save-every") { Description = "checkpoint every N steps (0: only at the end)", DefaultValueFactory = _ => 500 };
        public readonly Option<int> ValidateEvery = new("--validate-every") { Description = "validation images every N steps (0: only at the end when prompts are given)", DefaultValueFactory = _ => 0 };
        public readonly Option<string[]> ValidationPrompts = new("--validation-prompts") { Description = "prompts for validation images", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [] };
        public readonly Option<int> ValidationSteps = new("--validation-steps") { Description = "sampler steps of validation images", DefaultValueFactory = _ => 20 };
        public readonly Option<string> ValidationScheduler = new("--validation-scheduler") { Description = "sampler of validation images: " + string.Join(", ", SchedulerFactory.Names), DefaultValueFactory = _ => "ddim" };
        public readonly Option<double> Guidance = new("--guidance") { Description = "classifier-free guidance scale of validation images", DefaultValueFactory = _ => 7.5 };
        public readonly Option<string?> Resume = new("--resume") { Description = "checkpoint file to resume from, or 'latest' (the newest under --out)" };
        public readonly Option<bool> Strict = new("--strict") { Description = "fail on any bad dataset record instead of reporting and skipping it" };
        public readonly Option<int> MaxNanSteps = new("--max-nan-steps") { Description = "non-finite steps in a row before the run stops as diverged (exit 3)", DefaultValueFactory = _ => 5 };
        public readonly Option<int> TeacherT = new("--teacher-t") { Description = "CTCal teacher timestep t_tea", DefaultValueFactory = _ => 0 };
        public readonly Option<double> PixelWeight = new("--pixel-weight") { Description = "CTCal lambda1: pixel-level alignment", DefaultValueFactory = _ => 1.0 };
        public readonly Option<double> SemanticWeight = new("--semantic-weight") { Description = "CTCal lambda2: semantic-level (autoencoder code) alignment", DefaultValueFactory = _ => 0.5 };
        public readonly Option<double> ReconstructionWeight = new("--reconstruction-weight") { Description = "CTCal lambda3: attention-autoencoder reconstruction", DefaultValueFactory = _ => 0.5 };
        public readonly Option<double> BalanceWeight = new("--balance-weight") { Description = "CTCal lambda4: subject balancing", DefaultValueFactory = _ => 0.1 };
        public readonly Option<string> Distance = Choice("--distance", "mse", "CTCal distance D", "mse", "l1", "kl");
        public readonly Option<double> Tau = new("--tau") { Description = "CTCal subject-balancing margin tau", DefaultValueFactory = _ => 0.05 };
        public readonly Option<int?> MapResolution = new("--map-resolution") { Description = "side the attention maps are resized to (default: the largest calibrated layer)" };
        public readonly Option<string[]> Layers = new("--layers") { Description = "CTCal layers: auto (maps at 1/2 and 1/4 of the latent side), all, or attn2 module paths", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["auto"] };
        public readonly Option<int> Threads = new("--threads") { Description = "torch CPU threads (0: library default)", DefaultValueFactory = _ => 0 };
        public readonly Option<string> Progress = Choice("--progress", "auto", "progress output: auto (bar on a terminal, else plain), bar, plain, json (one JSON object per line on stdout), none", "auto", "bar", "plain", "json", "none");

        public IEnumerable<Option> All() => GetType().GetFields().Select(f => f.GetValue(this)).OfType<Option>();
    }

    private static Option<string> Choice(string name, string defaultValue, string description, params string[] values)
    {
        var option = new Option<string>(name) { Description = $"{description}: {string.Join(", ", values)}", DefaultValueFactory = _ => defaultValue };
        option.AcceptOnlyFromAmong(values);
        return option;
    }

    public Command Build()
    {
        var o = new TrainOptions();
        var command = new Command("train", "Fine-tune a diffusers SD 1.x/2.x model with CTCal (or vanilla) on a captioned image folder.");
        foreach (var option in o.All()) command.Options.Add(option);
        command.SetAction(parse => Train(parse, o));
        return command;
    }

    private const int MinResolution = 8;
    private const int MaxResolution = 4096;

    private static T Choose<T>(string value, params (string Name, T Value)[] choices) => choices.First(c => c.Name == value).Value;

    private static string Required(string? value, string name) =>
        string.IsNullOrWhiteSpace(value) ? throw new UsageException($"{name} is required (on the command line or in --config)") : value;

    private int Train(ParseResult parse, TrainOptions o)
    {
        JsonLinesObserver? json = null;
        Logging.UseDefaultFolder(); // nothing is logged into --out before it is checked
        try
        {
            var v = new OptionValues(parse, parse.GetValue(o.Config), o.All());
            string progress = v.Get(o.Progress);
            if (progress == "json") json = new JsonLinesObserver(context.Out);
            string model = Required(v.Get(o.Model), "--model");
            string data = Required(v.Get(o.Data), "--data");
            string output = Path.GetFullPath(Required(v.Get(o.Out), "--out"));
            CliContext.RefuseOverlap(output, model, "--model");
            CliContext.RefuseOverlap(output, data, "--data");

            var options = new TrainingOptions
            {
                Method = Choose(v.Get(o.Method), ("ctcal", TrainingMethod.Ctcal), ("vanilla", TrainingMethod.Vanilla)),
                Lora = new LoraOptions { Rank = v.Get(o.LoraRank), Alpha = v.Get(o.LoraAlpha), Dropout = v.Get(o.LoraDropout), TextEncoder = v.Get(o.TrainTextEncoder),
                    Format = v.Get(o.LoraFormat) == "kohya" ? LoraSpelling.Kohya : LoraSpelling.Peft },
                FullFineTune = v.Get(o.Full),
                Steps = v.Get(o.Steps),
                BatchSize = v.Get(o.BatchSize),
                GradientAccumulation = v.Get(o.GradAccum),
                LearningRate = v.Get(o.Lr),
                LrSchedule = Choose(v.Get(o.LrSchedule), ("constant", LrScheduleKind.Constant), ("cosine", LrScheduleKind.Cosine)),
                WarmupSteps = v.Get(o.Warmup),
                WeightDecay = v.Get(o.WeightDecay),
                MaxGradNorm = v.Get(o.MaxGradNorm),
                EmaDecay = v.Get(o.EmaDecay),
                NoiseOffset = v.Get(o.NoiseOffset),
                MinSnrGamma = v.Get(o.MinSnrGamma),
                Seed = v.Get(o.Seed),
                SaveEvery = v.Get(o.SaveEvery),
                ValidateEvery = v.Get(o.ValidateEvery),
                ValidationPrompts = v.Get(o.ValidationPrompts),
                ValidationSteps = v.Get(o.ValidationSteps),
                ValidationScheduler = v.Get(o.ValidationScheduler),
                ValidationGuidance = v.Get(o.Guidance),
                MaxNonFiniteSteps = v.Get(o.MaxNanSteps),
                TeacherTimestep = v.Get(o.TeacherT),
                Layers = v.Get(o.Layers),
                Ctcal = new CtcalLossOptions
                {
                    PixelWeight = v.Get(o.PixelWeight),
                    SemanticWeight = v.Get(o.SemanticWeight),
                    ReconstructionWeight = v.Get(o.ReconstructionWeight),
                    BalanceWeight = v.Get(o.BalanceWeight),
                    Tau = v.Get(o.Tau),
                    Distance = Choose(v.Get(o.Distance), ("mse", MapDistance.Mse), ("l1", MapDistance.L1), ("kl", MapDistance.Kl)),
                    MapResolution = v.Get(o.MapResolution),
                },
            };
            try { options.Validate(); }
            catch (ArgumentException e) { throw new UsageException($"invalid option: {e.Message}"); }
            int resolution = v.Get(o.Resolution);
            if (resolution is < MinResolution or > MaxResolution)
                throw new UsageException($"--resolution {resolution} is outside [{MinResolution}, {MaxResolution}]");
            int threads = v.Get(o.Threads);
            string? resume = v.Get(o.Resume);
            if (resume == "latest")
                resume = TrainingRun.LatestCheckpoint(output) ?? throw new UsageException($"--resume latest: no checkpoint under {Path.Combine(output, "checkpoints")}");
            else if (resume is not null && !File.Exists(resume))
                throw new UsageException($"--resume {resume}: no such checkpoint file");
            string configJson = JsonSerializer.Serialize(
                new { model = Path.GetFullPath(model), data = Path.GetFullPath(data), resolution, threads, options }, new JsonSerializerOptions { WriteIndented = true });
            CliContext.SetThreads(threads);

            var dataset = ImageCaptionDataset.Open(data, resolution, v.Get(o.Strict));
            using var diffusion = context.LoadModel(model);
            if (options.TeacherTimestep >= diffusion.AlphasCumprod.Length)
                throw new UsageException($"--teacher-t {options.TeacherTimestep} is not below the {diffusion.AlphasCumprod.Length} training timesteps");
            if (resolution % diffusion.VaeScaleFactor != 0)
                throw new UsageException($"--resolution {resolution} is not a multiple of the model's VAE scale factor {diffusion.VaeScaleFactor}");
            SchedulerConfig? validationScheduler = options.ValidationPrompts.Count > 0
                ? SchedulerConfig.Load(Path.Combine(model, "scheduler", "scheduler_config.json")) : null;

            // Everything above only reads. From here the output folder is written; until the first step is done a failure
            // puts it back as it was (removed when this run created it).
            using var guard = new OutputFolderGuard(output);
            OutputFolder.EnsureWritable(output);
            Logging.UseOutputFolder(output);

            int Execute(ITrainingObserver display)
            {
                var observer = new CompositeObserver(new LogObserver(), display, guard);
                foreach (var problem in dataset.Report.Problems) observer.Message("warn", $"dataset: {problem} (skipped)");
                using var run = new TrainingRun(diffusion, dataset, options, output, observer);
                if (validationScheduler is not null)
                {
                    run.Validator = new SamplingValidator(diffusion, validationScheduler, options.ValidationPrompts, resolution,
                        options.ValidationSteps, options.ValidationScheduler, options.ValidationGuidance, options.Seed);
                }
                if (resume is not null) run.Resume(resume);
                OutputFolder.WriteAllTextAtomic(Path.Combine(output, "train_config.json"), configJson);
                var result = run.Run(context.Cancellation.Token);
                guard.Commit();
                json?.Write("done", new
                {
                    result.Steps, result.SkippedSteps, result.DiffusionOnlySamples, result.LastCheckpoint, result.FinalWeights, result.Cancelled,
                    ExitCode = result.Cancelled ? ExitCodes.Cancelled : ExitCodes.Ok,
                });
                CliContext.Log.Info("done: {0} steps ({1} skipped), {2} samples trained with the diffusion loss only; weights {3}; cancelled {4}",
                    result.Steps, result.SkippedSteps, result.DiffusionOnlySamples, result.FinalWeights ?? "-", result.Cancelled);
                if (json is null) context.Err.WriteLine(result.Cancelled ? $"cancelled at step {result.Steps}; checkpoint {result.LastCheckpoint}" : $"done: {result.FinalWeights}");
                return result.Cancelled ? ExitCodes.Cancelled : ExitCodes.Ok;
            }

            bool terminal = !Console.IsOutputRedirected && ReferenceEquals(context.Out, Console.Out);
            if (progress == "bar" || (progress == "auto" && terminal))
            {
                int code = 0;
                AnsiConsole.Progress()
                    .AutoClear(false)
                    .Columns(new StepCountColumn(), new ProgressBarColumn { Width = 20 }, new StepsPerSecondColumn(), new RemainingTimeColumn(),
                        new TaskDescriptionColumn { Alignment = Justify.Left })
                    .Start(ctx => code = Execute(new ProgressBarObserver(ctx.AddTask("starting", maxValue: options.Steps))));
                return code;
            }
            return Execute(progress switch
            {
                "json" => json!,
                "none" => new CompositeObserver(),
                _ => new PlainObserver(context.Err),
            });
        }
        catch (Exception e)
        {
            return context.Fail(e, json);
        }
    }
}
