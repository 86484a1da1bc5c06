using System.CommandLine;
using CTCal.Contracts;
using CTCal.Core.Checkpoints;
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
    /// <summary>
    /// The options: <c>--config</c> (the job file) and one per <see cref="FineTuneJob"/> key, named as the key, with the job's
    /// default (so <c>--help</c> shows it; only values given on the command line are applied over the job file).
    /// </summary>
    private sealed class TrainOptions
    {
        private static readonly FineTuneJob D = FineTuneJob.Defaults;

        public readonly Option<string?> Config = new("--config") { Description = "job file: one JSON object of option values (keys: option names without dashes); command-line values win" };
        public readonly Option<string?> Model = new("--model") { Description = "diffusers model folder (SD 1.x/2.x: unet/, vae/, text_encoder/, tokenizer/, scheduler/; SD3: model_index.json StableDiffusion3Pipeline), or an original single-file SD 1.x/2.x checkpoint (.safetensors)" };
        public readonly Option<string?> Tokenizer = new("--tokenizer") { Description = "single-file --model: folder with the CLIP BPE files vocab.json and merges.txt" };
        public readonly Option<string?> ModelConfig = new("--model-config") { Description = "single-file --model: a diffusers folder whose configs (and tokenizer/) are used instead of the derived ones" };
        public readonly Option<string?> PredictionType = new("--prediction-type") { Description = "single-file --model: epsilon, v_prediction or sample (default: SD 1.x epsilon, SD 2.x v_prediction)" };
        public readonly Option<bool> Ema = new("--ema") { Description = "single-file --model: train from the EMA UNet weights (model_ema.*)" };
        public readonly Option<string?> Data = new("--data") { Description = "dataset folder: metadata.jsonl (file_name, text, optional subjects) or images with same-name .txt captions" };
        public readonly Option<string?> Out = new("--out") { Description = "output folder (checkpoints/, validation/, weights, train.log)" };
        public readonly Option<string> Method = Choice("--method", "fine-tuning method", FineTuneJob.Methods, D.Method);
        public readonly Option<int> LoraRank = new("--lora-rank") { Description = "LoRA rank (LoRA is the default mode)", DefaultValueFactory = _ => D.LoraRank };
        public readonly Option<double?> LoraAlpha = new("--lora-alpha") { Description = "LoRA alpha (default: the rank, i.e. scale 1)" };
        public readonly Option<double> LoraDropout = new("--lora-dropout") { Description = "LoRA dropout on the adapters' input features", DefaultValueFactory = _ => D.LoraDropout };
        public readonly Option<string> LoraFormat = Choice("--lora-format", "key spelling of the written LoRA file (peft: unet.{module}.lora_A.weight; kohya: lora_unet_{module}.lora_down.weight with per-module alpha)", FineTuneJob.LoraFormats, D.LoraFormat);
        public readonly Option<string?> InitLora = new("--init-lora") { Description = "continue training this LoRA file (peft or kohya keys): adapters on exactly its modules, starting from its weights; --lora-rank/--lora-alpha must match it" };
        public readonly Option<bool> TrainTextEncoder = new("--train-text-encoder") { Description = "also put LoRA on the text encoder's self-attention (q/k/v/out_proj)" };
        public readonly Option<bool> Full = new("--full") { Description = "full fine-tuning of every UNet parameter instead of LoRA" };
        public readonly Option<bool> GradientCheckpointing = new("--gradient-checkpointing") { Description = "recompute UNet blocks in backward instead of keeping their activations (less memory, slower; same gradients)" };
        public readonly Option<bool> CacheEncodings = new("--cache-encodings") { Description = "keep each image's VAE posterior and (text encoder without LoRA) each caption's embedding in memory after the first encoding" };
        public readonly Option<int> Steps = new("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => D.Steps };
        public readonly Option<int> BatchSize = new("--batch-size") { Description = "images per micro-batch", DefaultValueFactory = _ => D.BatchSize };
        public readonly Option<int> GradAccum = new("--grad-accum") { Description = "micro-batches per optimizer step", DefaultValueFactory = _ => D.GradAccum };
        public readonly Option<double> Lr = new("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => D.Lr };
        public readonly Option<string> LrSchedule = Choice("--lr-schedule", "learning-rate schedule after warmup", FineTuneJob.LrSchedules, D.LrSchedule);
        public readonly Option<int> Warmup = new("--warmup") { Description = "linear warmup steps", DefaultValueFactory = _ => D.Warmup };
        public readonly Option<double> WeightDecay = new("--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => D.WeightDecay };
        public readonly Option<double> MaxGradNorm = new("--max-grad-norm") { Description = "gradient clipping norm of the UNet/text-encoder parameters, and separately of the CTCal autoencoder (0: off)", DefaultValueFactory = _ => D.MaxGradNorm };
        public readonly Option<double?> EmaDecay = new("--ema-decay") { Description = "EMA of the trainable weights with this decay (off by default)" };
        public readonly Option<double> NoiseOffset = new("--noise-offset") { Description = "noise offset", DefaultValueFactory = _ => D.NoiseOffset };
        public readonly Option<double?> MinSnrGamma = new("--min-snr-gamma") { Description = "Min-SNR loss weighting gamma (off by default; 5 is common)" };
        public readonly Option<int> Resolution = new("--resolution") { Description = "training resolution (images are resized and centre-cropped)", DefaultValueFactory = _ => D.Resolution };
        public readonly Option<long> Seed = new("--seed") { Description = "seed of weights init, noise, timesteps and data order", DefaultValueFactory = _ => D.Seed };
        public readonly Option<int> SaveEvery = new("--save-every") { Description = "checkpoint every N steps (0: only at the end)", DefaultValueFactory = _ => D.SaveEvery };
        public readonly Option<int> AlignEvery = new("--align-every") { Description = "study measures (align_kl, align_cos, per-term gradient norms) on step 1 and every N steps (0: off)", DefaultValueFactory = _ => D.AlignEvery };
        public readonly Option<int> ValidateEvery = new("--validate-every") { Description = "validation images every N steps (0: only at the end when prompts are given)", DefaultValueFactory = _ => D.ValidateEvery };
        public readonly Option<string[]> ValidationPrompts = new("--validation-prompts") { Description = "prompts for validation images", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [.. D.ValidationPrompts] };
        public readonly Option<int> ValidationSteps = new("--validation-steps") { Description = "sampler steps of validation images", DefaultValueFactory = _ => D.ValidationSteps };
        public readonly Option<string> ValidationScheduler = new("--validation-scheduler") { Description = "sampler of validation images: " + string.Join(", ", SchedulerFactory.Names), DefaultValueFactory = _ => D.ValidationScheduler };
        public readonly Option<double> Guidance = new("--guidance") { Description = "classifier-free guidance scale of validation images", DefaultValueFactory = _ => D.Guidance };
        public readonly Option<string?> Resume = new("--resume") { Description = "checkpoint file to resume from, or 'latest' (the newest under --out)" };
        public readonly Option<string> Subjects = new("--subjects") { Description = "nouns of records without subjects: lexicon, or llm:<folder> (a local ONNX Runtime GenAI model; answers validated, lexicon fallback, cached beside the dataset)", DefaultValueFactory = _ => D.Subjects };
        public readonly Option<bool> Strict = new("--strict") { Description = "fail on any bad dataset record instead of reporting and skipping it" };
        public readonly Option<int> MaxNanSteps = new("--max-nan-steps") { Description = "non-finite steps in a row before the run stops as diverged (exit 3)", DefaultValueFactory = _ => D.MaxNanSteps };
        public readonly Option<int> TeacherT = new("--teacher-t") { Description = "CTCal teacher timestep t_tea", DefaultValueFactory = _ => D.TeacherT };
        public readonly Option<string> WeightingScheme = Choice("--weighting-scheme", "flow-matching models (SD3): timestep density and loss weighting, as diffusers' SD3 script", FineTuneJob.WeightingSchemes, D.WeightingScheme);
        public readonly Option<string> TeacherSampling = Choice("--teacher-sampling", "CTCal teacher timestep: fixed (--teacher-t; flow models: at least the smallest training timestep) or below (flow models: drawn per sample from the training distribution below the student's)", FineTuneJob.TeacherSamplings, D.TeacherSampling);
        public readonly Option<string> Teacher = Choice("--teacher", "CTCal teacher maps: model (the method), shuffled (another sample's maps: a control), oracle (the dataset's subject masks: an upper bound)", FineTuneJob.Teachers, D.Teacher);
        public readonly Option<double> PixelWeight = new("--pixel-weight") { Description = "CTCal lambda1: pixel-level alignment", DefaultValueFactory = _ => D.PixelWeight };
        public readonly Option<double> SemanticWeight = new("--semantic-weight") { Description = "CTCal lambda2: semantic-level (autoencoder code) alignment", DefaultValueFactory = _ => D.SemanticWeight };
        public readonly Option<double> ReconstructionWeight = new("--reconstruction-weight") { Description = "CTCal lambda3: attention-autoencoder reconstruction", DefaultValueFactory = _ => D.ReconstructionWeight };
        public readonly Option<double> BalanceWeight = new("--balance-weight") { Description = "CTCal lambda4: subject balancing", DefaultValueFactory = _ => D.BalanceWeight };
        public readonly Option<string> Distance = Choice("--distance", "CTCal distance D", FineTuneJob.Distances, D.Distance);
        public readonly Option<string> TimeWeighting = Choice("--time-weighting", "CTCal weight of a sample by its student timestep: linear (t/T, the method) or constant (an ablation)", FineTuneJob.TimeWeightings, D.TimeWeighting);
        public readonly Option<double> Tau = new("--tau") { Description = "CTCal subject-balancing margin tau", DefaultValueFactory = _ => D.Tau };
        public readonly Option<int?> MapResolution = new("--map-resolution") { Description = "side the attention maps are resized to (default: the largest calibrated layer)" };
        public readonly Option<string[]> Layers = new("--layers") { Description = "CTCal layers: auto (maps at 1/2 and 1/4 of the latent side), all, premise:<probe.json> (the layers a premise probe found worth calibrating), or attn2 module paths", AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => [.. D.Layers] };
        public readonly Option<int> Threads = new("--threads") { Description = "torch CPU threads (0: library default)", DefaultValueFactory = _ => D.Threads };
        public readonly Option<string> Progress = Choice("--progress", "progress output: auto (bar on a terminal, else plain), bar, plain, json (one JSON object per line on stdout), none", FineTuneJob.ProgressModes, D.Progress);

        public IEnumerable<Option> All() => GetType().GetFields().Select(f => f.GetValue(this)).OfType<Option>();
    }

    /// <summary>The job's single-file options (used only when --model is a file).</summary>
    private static SingleFileOptions SingleFile(FineTuneJob job) => new()
    {
        TokenizerFolder = job.Tokenizer,
        ConfigFolder = job.ModelConfig,
        PredictionType = job.PredictionType,
        UseEma = job.Ema,
    };

    private static Option<string> Choice(string name, string description, IReadOnlyList<string> values, string defaultValue)
    {
        var option = new Option<string>(name) { Description = $"{description}: {string.Join(", ", values)}", DefaultValueFactory = _ => defaultValue };
        option.AcceptOnlyFromAmong([.. values]);
        return option;
    }

    public Command Build()
    {
        var o = new TrainOptions();
        var command = new Command("train", "Fine-tune a diffusers SD 1.x/2.x or SD3 model with CTCal (or vanilla) on a captioned image folder.");
        foreach (var option in o.All()) command.Options.Add(option);
        command.SetAction(parse => Train(parse, o));
        return command;
    }

    /// <summary>
    /// The job this run trains: the <c>--config</c> job file (or the defaults), then every option given on the command line.
    /// </summary>
    private static FineTuneJob ReadJob(ParseResult parse, TrainOptions o)
    {
        string? configPath = parse.GetValue(o.Config);
        FineTuneJob job;
        try
        {
            job = configPath is null ? new FineTuneJob() : FineTuneJobJson.Read(configPath);
            foreach (var option in o.All().Where(x => x != o.Config))
            {
                if (parse.GetResult(option) is { Implicit: false } given)
                    job = FineTuneJobJson.With(job, option.Name.TrimStart('-'), given.GetValueOrDefault<object?>());
            }
        }
        catch (FileNotFoundException)
        {
            throw new UsageException($"--config: {configPath} does not exist");
        }
        catch (FormatException e)
        {
            throw new UsageException(e.Message);
        }

        return job;
    }

    private int Train(ParseResult parse, TrainOptions o)
    {
        JsonLinesObserver? json = null;
        using var logFolder = new LogFolder(); // nothing is logged into --out before it is checked
        try
        {
            var job = ReadJob(parse, o);
            if (job.Progress == "json") json = new JsonLinesObserver(context.Out);
            var problems = job.Problems();
            if (problems.Count > 0)
                throw new UsageException(string.Join("; ", problems.Select(p => "--" + (p.EndsWith(" is required", StringComparison.Ordinal) ? p + " (on the command line or in --config)" : p))));
            if (!SchedulerFactory.Names.Contains(job.ValidationScheduler))
                throw new UsageException($"--validation-scheduler '{job.ValidationScheduler}' is not one of {string.Join(", ", SchedulerFactory.Names)}");
            string model = job.Model!;
            string data = job.Data!;
            string output = Path.GetFullPath(job.Out!);
            CliContext.RefuseOverlap(output, model, "--model");
            CliContext.RefuseOverlap(output, data, "--data");
            if (job.InitLora is not null) CliContext.RefuseOverlap(output, job.InitLora, "--init-lora");

            var options = TrainingOptions.FromJob(job);
            int resolution = job.Resolution;
            int threads = job.Threads;
            string? resume = job.Resume;
            if (resume == "latest")
                resume = TrainingRun.LatestCheckpoint(output) ?? throw new UsageException($"--resume latest: no checkpoint under {Path.Combine(output, "checkpoints")}");
            else if (resume is not null && !File.Exists(resume))
                throw new UsageException($"--resume {resume}: no such checkpoint file");
            // train_config.json is the job this run trained, re-runnable as --config (paths made absolute; resuming is not part of it).
            string configJson = FineTuneJobJson.ToJson(job with { Model = Path.GetFullPath(model), Data = Path.GetFullPath(data), Out = output, Resume = null, InitLora = options.InitialLora });
            CliContext.SetThreads(threads);

            var dataset = ImageCaptionDataset.Open(data, resolution, job.Strict);
            if (job.Subjects.StartsWith("llm:", StringComparison.Ordinal))
                dataset = LlmSubjects.Fill(context, dataset, job.Subjects["llm:".Length..]);
            using var diffusion = context.LoadModelOrSingleFile(model, SingleFile(job));
            int trainTimesteps = diffusion.CreateObjective(options).NumTrainTimesteps;
            if (options.TeacherTimestep >= trainTimesteps)
                throw new UsageException($"--teacher-t {options.TeacherTimestep} is not below the {trainTimesteps} training timesteps");
            if (resolution % diffusion.VaeScaleFactor != 0)
                throw new UsageException($"--resolution {resolution} is not a multiple of the model's VAE scale factor {diffusion.VaeScaleFactor}");
            if (options.Method == TrainingMethod.Ctcal && options.Teacher == TeacherSource.Oracle)
                OracleTeacher.RequireMasks(diffusion, dataset);
            if (options.InitialLora is not null)
            {
                // Checked here, before the output folder is touched; the run reads it again when it attaches its adapters.
                try
                {
                    using var initial = InitialLora.Read(options.InitialLora, diffusion, options.Lora);
                }
                catch (Exception e) when (e is InvalidDataException or FileNotFoundException)
                {
                    throw new UsageException($"--init-lora: {e.Message}");
                }
            }
            SchedulerConfig? validationScheduler = options.ValidationPrompts.Count == 0 ? null
                : File.Exists(model) && diffusion is DiffusersTrainableModel single ? single.Scheduler
                : SchedulerConfig.Load(Path.Combine(model, "scheduler", "scheduler_config.json"));

            // Everything above only reads. From here the output folder is written; until the first step is done a failure
            // puts it back as it was (removed when this run created it).
            using var guard = new OutputFolderGuard(output, logFolder);
            OutputFolder.EnsureWritable(output);
            logFolder.Use(output);

            int Execute(ITrainingObserver display)
            {
                var observer = new CompositeObserver(new LogObserver(), display, guard);
                foreach (var problem in dataset.Report.Problems) observer.Message("warn", $"dataset: {problem} (skipped)");
                using var run = new TrainingRun(diffusion, dataset, options, output, observer);
                if (validationScheduler is not null)
                {
                    // A flow-matching model (SD3) samples with the flow-matching Euler sampler whatever --validation-scheduler says.
                    string sampler = diffusion.PredictionType == FlowTrainingObjective.PredictionType ? SchedulerFactory.FlowMatchNames[0] : options.ValidationScheduler;
                    run.Validator = new SamplingValidator(diffusion, validationScheduler, options.ValidationPrompts, resolution,
                        options.ValidationSteps, sampler, options.ValidationGuidance, options.Seed);
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
            if (job.Progress == "bar" || (job.Progress == "auto" && terminal))
            {
                int code = 0;
                AnsiConsole.Progress()
                    .AutoClear(false)
                    .Columns(new StepCountColumn(), new ProgressBarColumn { Width = 20 }, new StepsPerSecondColumn(), new RemainingTimeColumn(),
                        new TaskDescriptionColumn { Alignment = Justify.Left })
                    .Start(ctx => code = Execute(new ProgressBarObserver(ctx.AddTask("starting", maxValue: options.Steps))));
                return code;
            }
            return Execute(job.Progress switch
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
