using System.CommandLine;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Core.Models;
using CTCal.Core.Threading;
using CTCal.Hosting;

namespace CTCal.Host.Cli;

/// <summary>The <c>ctcal-host</c> command line: <c>plugins</c>, <c>models</c>, <c>generate</c>, <c>export</c>, <c>finetune</c>, <c>serve</c>.</summary>
public static class HostCommands
{
    public static RootCommand Build(TextWriter output, ILogSink hostLog, Func<string, ILogSink> pluginLog)
    {
        var config = new Option<string>("--config", "-c")
        {
            Description = "plugins.json to read",
            DefaultValueFactory = _ => "plugins.json",
            Recursive = true,
        };
        var pluginFilter = new Option<string?>("--plugin", "-p") { Description = "Use only the plugin with this id", Recursive = true };

        var root = new RootCommand("ctcal-host: reference host for CTCal plugins (text-to-image, export, fine-tuning)");
        root.Options.Add(config);
        root.Options.Add(pluginFilter);

        PluginHost LoadPlugins(ParseResult parse)
        {
            var file = PluginsFile.Load(parse.GetValue(config)!);
            var host = PluginHost.Load(file, hostLog, pluginLog);
            foreach (var failure in host.Failures)
            {
                output.WriteLine($"warning: plugin {failure}");
            }

            return host;
        }

        // Every verb but 'plugins' (which reports the failures itself) needs a plugin: none loaded is exit code 1.
        PluginHost Open(ParseResult parse)
        {
            var host = LoadPlugins(parse);
            if (host.Plugins.Count == 0)
            {
                host.Dispose();
                throw new NoPluginLoadedException(Path.GetFullPath(parse.GetValue(config)!));
            }

            return host;
        }

        IEnumerable<PluginExport<T>> Filter<T>(ParseResult parse, IEnumerable<PluginExport<T>> exports)
        {
            string? id = parse.GetValue(pluginFilter);
            return id is null ? exports : exports.Where(e => e.PluginId == id);
        }

        // plugins
        var plugins = new Command("plugins", "List the plugins in plugins.json, their exports and load failures");
        plugins.SetAction(parse => Run(output, () =>
        {
            using var host = LoadPlugins(parse);
            foreach (var plugin in host.Plugins)
            {
                output.WriteLine($"{plugin.Entry.Id}  {plugin.Entry.AssemblyPath}");
                foreach (var e in plugin.Generators)
                {
                    output.WriteLine($"  generator  {e.Metadata}");
                }

                foreach (var e in plugin.Exporters)
                {
                    output.WriteLine($"  exporter   {e.Metadata}");
                }

                foreach (var e in plugin.FineTuners)
                {
                    output.WriteLine($"  finetuner  {e.Metadata}");
                }
            }

            foreach (var entry in host.File.Plugins.Where(p => !p.Enabled))
            {
                output.WriteLine($"{entry.Id}  (disabled)");
            }

            return host.Plugins.Count > 0 ? 0 : 1;
        }));
        root.Subcommands.Add(plugins);

        // models
        var models = new Command("models", "List the models each generator plugin can use");
        models.SetAction(parse => Run(output, () =>
        {
            using var host = Open(parse);
            foreach (var generator in Filter(parse, host.Generators))
            {
                IReadOnlyList<ModelInfo> list;
                try
                {
                    list = generator.Value.ListModelsAsync().GetAwaiter().GetResult();
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    output.WriteLine($"warning: {generator.PluginId} failed to list models: {ex.Message}");
                    continue;
                }

                foreach (var m in list)
                {
                    output.WriteLine($"{generator.PluginId}  {m.Id}  {m.Family} {m.DefaultWidth}x{m.DefaultHeight}{(m.HasVaeEncoder ? " +vae_encoder" : "")}  {m.Name}  {m.Folder}");
                }
            }

            return 0;
        }));
        root.Subcommands.Add(models);

        root.Subcommands.Add(GenerateCommand(output, Open, Filter));
        root.Subcommands.Add(ExportCommand(output, Open, Filter));
        root.Subcommands.Add(FineTuneCommand(output, Open, Filter));
        root.Subcommands.Add(BenchCommand.Create(output, Open));
        root.Subcommands.Add(LoadCommand.Create(output, Open));
        root.Subcommands.Add(ServeCommand.Create(output, LoadPlugins));
        return root;
    }

    private static Command GenerateCommand(
        TextWriter output,
        Func<ParseResult, PluginHost> open,
        Func<ParseResult, IEnumerable<PluginExport<IImageGenerator>>, IEnumerable<PluginExport<IImageGenerator>>> filter)
    {
        var model = new Option<string>("--model", "-m") { Description = "Model id (see 'models')", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "The prompt", Required = true };
        var negative = new Option<string>("--negative") { Description = "Negative prompt", DefaultValueFactory = _ => "" };
        var width = new Option<int?>("--width") { Description = "Width in pixels, a multiple of 8 (default: the model's)" };
        var height = new Option<int?>("--height") { Description = "Height in pixels, a multiple of 8 (default: the model's)" };
        var steps = new Option<int>("--steps") { Description = "Denoising steps", DefaultValueFactory = _ => 25 };
        var guidance = new Option<double>("--guidance") { Description = "Classifier-free guidance scale", DefaultValueFactory = _ => 7.5 };
        var seed = new Option<long?>("--seed") { Description = "Seed of the first image (image i uses seed+i)" };
        var count = new Option<int>("--count", "-n") { Description = "Images to generate", DefaultValueFactory = _ => 1 };
        var scheduler = new Option<string?>("--scheduler") { Description = "Scheduler (euler_a, euler, ddim, dpmpp_2m, ...; default from plugins.json)" };
        var truncate = new Option<bool>("--truncate") { Description = "Cut prompts over 77 tokens instead of chunking them" };
        var outDir = new Option<string>("--output", "-o") { Description = "Folder for the PNG files", DefaultValueFactory = _ => "." };
        var initImage = new Option<string?>("--init-image") { Description = "PNG to start from (image-to-image; the model needs a VAE encoder)" };
        var strength = new Option<double>("--strength") { Description = "Image-to-image strength, 0 (keep) to 1 (ignore the image)", DefaultValueFactory = _ => 0.75 };
        var stepCache = new Option<int?>("--step-cache")
        {
            Description = "Step caching: a full UNet step every N steps, shallow ones between (the model needs ctcal-export's step-cache graphs; asked for as '<model>?stepCache=N')",
        };

        var command = new Command("generate", "Generate images with a model");
        foreach (var o in new Option[] { model, prompt, negative, width, height, steps, guidance, seed, count, scheduler, truncate, outDir, initImage, strength, stepCache })
        {
            command.Options.Add(o);
        }

        command.SetAction((parse, ct) => RunAsync(output, async () =>
        {
            string modelId = parse.GetValue(model)!;
            var request = new GenerationRequest
            {
                // the plugin reads a per-request interval from the model id; the plugin validates the value
                Model = parse.GetValue(stepCache) is { } interval ? RequestModelId.WithStepCache(modelId, interval) : modelId,
                Prompt = parse.GetValue(prompt)!,
                NegativePrompt = parse.GetValue(negative)!,
                Width = parse.GetValue(width),
                Height = parse.GetValue(height),
                Steps = parse.GetValue(steps),
                GuidanceScale = parse.GetValue(guidance),
                Seed = parse.GetValue(seed),
                BatchCount = parse.GetValue(count),
                Scheduler = parse.GetValue(scheduler),
                PromptOverflow = parse.GetValue(truncate) ? PromptOverflow.Truncate : PromptOverflow.Chunk,
                InitImage = parse.GetValue(initImage) is { } initPath ? await File.ReadAllBytesAsync(initPath, ct) : null,
                Strength = parse.GetValue(strength),
            };

            // The same checks as the web server's, before any plugin loads or output is written.
            GenerationRules.Validate(request);
            using var host = open(parse);
            var generator = await FindGeneratorAsync(filter(parse, host.Generators), modelId, ct)
                ?? throw new ArgumentException($"No loaded plugin has a model '{modelId}' (see 'ctcal-host models')");
            var progress = new SynchronousProgress<GenerationProgress>(p =>
            {
                if (p.Stage == GenerationStage.Denoising && (p.Step == p.TotalSteps || p.Step % 5 == 0))
                {
                    output.WriteLine($"image {p.ImageIndex + 1}/{p.ImageCount} step {p.Step}/{p.TotalSteps}");
                }
            });
            GenerationResult result;
            try
            {
                result = await generator.Value.GenerateAsync(request, progress, ct);
            }
            catch (Exception ex) when (ex is not (OperationCanceledException or ArgumentException or OutOfMemoryException or GenerationOutOfMemoryException))
            {
                throw new PluginCallException(generator.PluginId, "generate", ex);
            }

            string folder = Path.GetFullPath(parse.GetValue(outDir)!);
            Directory.CreateDirectory(folder);
            foreach (string warning in result.Warnings)
            {
                output.WriteLine($"warning: {warning}");
            }

            foreach (var image in result.Images)
            {
                string path = Path.Combine(folder, $"{result.Parameters.Model}-{image.Seed.ToString(CultureInfo.InvariantCulture)}.png");
                AtomicFile.WriteBytes(path, image.Png);
                output.WriteLine(path);
            }

            output.WriteLine($"{result.Images.Count} image(s), seed {result.Parameters.Seed}, {result.Parameters.Scheduler}, {result.Parameters.Steps} steps, provider {result.ExecutionProvider}");
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// The generator of the plugin that serves <paramref name="modelId"/>, or null after writing an error naming the model
    /// to <paramref name="output"/> (the verb then exits with 2).
    /// </summary>
    internal static async Task<IImageGenerator?> FindGeneratorOrReportAsync(
        IEnumerable<PluginExport<IImageGenerator>> generators, string modelId, TextWriter output, CancellationToken ct)
    {
        var found = await FindGeneratorAsync(generators, modelId, ct);
        if (found is null)
        {
            output.WriteLine($"error: no loaded plugin has a model '{modelId}'");
        }

        return found?.Value;
    }

    /// <summary>The first generator that lists <paramref name="modelId"/>, or null.</summary>
    internal static async Task<PluginExport<IImageGenerator>?> FindGeneratorAsync(
        IEnumerable<PluginExport<IImageGenerator>> generators, string modelId, CancellationToken ct)
    {
        foreach (var generator in generators)
        {
            IReadOnlyList<ModelInfo> models;
            try
            {
                models = await generator.Value.ListModelsAsync(ct);
            }
            catch (Exception ex) when (ex is not (OperationCanceledException or OutOfMemoryException))
            {
                // A plugin that cannot list its models must not hide the models of the others.
                NLog.LogManager.GetLogger("ctcal-host").Warn(ex, "Plugin {0} failed to list models", generator.PluginId);
                continue;
            }

            if (models.Any(m => m.Id == modelId))
            {
                return generator;
            }
        }

        return null;
    }

    private static Command ExportCommand(
        TextWriter output,
        Func<ParseResult, PluginHost> open,
        Func<ParseResult, IEnumerable<PluginExport<IModelExporter>>, IEnumerable<PluginExport<IModelExporter>>> filter)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "Diffusers-layout safetensors folder, or an original single-file SD 1.x/2.x checkpoint (.safetensors)", Required = true };
        var id = new Option<string>("--id") { Description = "Id of the new model folder", Required = true };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing model with that id" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Single file: folder with the CLIP BPE files vocab.json and merges.txt" };
        var configFolder = new Option<string?>("--config-folder") { Description = "Single file: a diffusers folder whose configs (and tokenizer/) are used instead of the derived ones" };
        var prediction = new Option<string?>("--prediction-type") { Description = "Single file: epsilon, v_prediction or sample (default: SD 1.x epsilon, SD 2.x v_prediction)" };
        var ema = new Option<bool>("--ema") { Description = "Single file: use the EMA UNet weights (model_ema.*)" };
        var command = new Command("export", "Export a safetensors checkpoint to an ONNX model folder and register it");
        command.Options.Add(checkpoint);
        command.Options.Add(id);
        command.Options.Add(overwrite);
        command.Options.Add(tokenizer);
        command.Options.Add(configFolder);
        command.Options.Add(prediction);
        command.Options.Add(ema);
        command.SetAction((parse, ct) => RunAsync(output, async () =>
        {
            using var host = open(parse);
            var exporter = filter(parse, host.Exporters).FirstOrDefault()
                ?? throw new InvalidOperationException("No loaded plugin exports models");
            var progress = Throttled(output);
            var model = await exporter.Value.ExportAsync(
                new ModelExportRequest(Path.GetFullPath(parse.GetValue(checkpoint)!), parse.GetValue(id)!, parse.GetValue(overwrite))
                {
                    TokenizerFolder = parse.GetValue(tokenizer) is { } t ? Path.GetFullPath(t) : null,
                    ConfigFolder = parse.GetValue(configFolder) is { } c ? Path.GetFullPath(c) : null,
                    PredictionType = parse.GetValue(prediction),
                    UseEma = parse.GetValue(ema),
                },
                progress,
                ct);
            output.WriteLine($"exported {model.Id} to {model.Folder}");
            return 0;
        }));
        return command;
    }

    private static Command FineTuneCommand(
        TextWriter output,
        Func<ParseResult, PluginHost> open,
        Func<ParseResult, IEnumerable<PluginExport<IFineTuner>>, IEnumerable<PluginExport<IFineTuner>>> filter)
    {
        var baseModel = new Option<string>("--base") { Description = "Diffusers-layout safetensors checkpoint to start from", Required = true };
        var data = new Option<string>("--data") { Description = "Training data, as the trainer expects it", Required = true };
        var outDir = new Option<string>("--output", "-o") { Description = "Folder for the trainer's checkpoints", Required = true };
        var id = new Option<string>("--id") { Description = "Id of the model registered when training succeeds", Required = true };
        var maxSteps = new Option<int?>("--max-steps") { Description = "Training steps" };
        var jobFile = new Option<string?>("--job") { Description = "Trainer job file (JSON, keys: ctcal-train's option names) the other values are set over" };
        var extra = new Argument<string[]>("trainer-args") { Description = "Further trainer options as --key value (after --), set over the job", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("finetune", "Fine-tune with CTCal (runs ctcal-train as a separate process), then export and register the result");
        foreach (var o in new Option[] { baseModel, data, outDir, id, maxSteps, jobFile })
        {
            command.Options.Add(o);
        }

        command.Arguments.Add(extra);
        command.SetAction((parse, ct) => RunAsync(output, async () =>
        {
            using var host = open(parse);
            var tuner = filter(parse, host.FineTuners).FirstOrDefault()
                ?? throw new InvalidOperationException("No loaded plugin offers fine-tuning");
            var progress = Throttled(output);
            var request = new FineTuneRequest(parse.GetValue(id)!, FineTuneJobFrom(
                parse.GetValue(jobFile), parse.GetValue(baseModel)!, parse.GetValue(data)!, parse.GetValue(outDir)!, parse.GetValue(maxSteps), parse.GetValue(extra) ?? []));
            var result = await tuner.Value.FineTuneAsync(request, progress, ct);
            output.WriteLine($"fine-tuned {result.Steps} steps; checkpoint {result.CheckpointFolder}; model {result.Model.Id} registered at {result.Model.Folder}");
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// The trainer job of the finetune verb: the <c>--job</c> file (or the defaults), then the base, data and output folders
    /// and the step count, then the trailing <c>--key value</c> options. The folders have options of their own here, so the
    /// trailing options may not name them.
    /// </summary>
    internal static FineTuneJob FineTuneJobFrom(string? jobFile, string baseModel, string data, string output, int? maxSteps, IReadOnlyList<string> extra)
    {
        foreach (string reserved in new[] { "--model", "--data", "--out" })
        {
            if (extra.Contains(reserved))
            {
                throw new ArgumentException($"{reserved} is set by --base, --data and --output, not as a trainer option");
            }
        }

        var job = jobFile is null ? new FineTuneJob() : FineTuneJobJson.Read(jobFile);
        job = job with { Model = Path.GetFullPath(baseModel), Data = Path.GetFullPath(data), Out = Path.GetFullPath(output) };
        if (maxSteps is int steps)
        {
            job = job with { Steps = steps };
        }

        return FineTuneJobJson.WithArguments(job, extra);
    }

    /// <summary>
    /// Prints operation progress: every event that carries metrics or a message, and for byte counters (export) only
    /// the first and last report of each stage, so a large export does not print thousands of lines.
    /// </summary>
    private static IProgress<OperationProgress> Throttled(TextWriter output)
    {
        string? lastStage = null;
        return new SynchronousProgress<OperationProgress>(p =>
        {
            bool counterOnly = p.Metrics is not { Count: > 0 } && p.Message is null or "writing";
            bool edge = p.Stage != lastStage || p.Current == p.Total || p.Message is "done";
            lastStage = p.Stage;
            if (counterOnly && !edge)
            {
                return;
            }

            string metrics = p.Metrics is null ? "" : string.Join(" ", p.Metrics.Select(m => $"{m.Key}={m.Value.ToString("G4", CultureInfo.InvariantCulture)}"));
            output.WriteLine($"{p.Stage} {p.Current}/{p.Total} {metrics} {p.Message}".Replace("  ", " ").TrimEnd());
        });
    }

    private static int Run(TextWriter output, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (NoPluginLoadedException ex)
        {
            output.WriteLine($"error: {ex.Message}");
            return 1;
        }
        catch (Exception ex) when (IsUserError(ex))
        {
            output.WriteLine($"error: {ex.Message}");
            return 2;
        }
    }

    /// <summary>Exit code of a verb whose request needed more memory than the plugin could get.</summary>
    public const int OutOfMemoryExitCode = 5;

    internal static async Task<int> RunAsync(TextWriter output, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (OperationCanceledException)
        {
            output.WriteLine("cancelled");
            return 130;
        }
        catch (GenerationOutOfMemoryException ex)
        {
            // The plugin's own account (request, limit, what to lower); the ONNX Runtime detail goes to the log only.
            output.WriteLine($"error: {ex.Message}");
            NLog.LogManager.GetLogger("ctcal-host").Debug(ex.InnerException, "Out of memory");
            return OutOfMemoryExitCode;
        }
        catch (PluginCallException ex)
        {
            output.WriteLine($"error: {ex.Message}");
            NLog.LogManager.GetLogger("ctcal-host").Error(ex.InnerException, "Plugin {0} failed", ex.PluginId);
            return 3;
        }
        catch (NoPluginLoadedException ex)
        {
            output.WriteLine($"error: {ex.Message}");
            return 1;
        }
        catch (Exception ex) when (IsUserError(ex))
        {
            output.WriteLine($"error: {ex.Message}");
            return 2;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A plugin threw something unexpected: report it, do not crash the host with a stack trace.
            output.WriteLine($"error: plugin failed: {ex.GetType().Name}: {ex.Message}");
            NLog.LogManager.GetLogger("ctcal-host").Error(ex, "Plugin call failed");
            return 3;
        }
    }

    private static bool IsUserError(Exception ex) =>
        ex is PluginsFileException or ArgumentException or InvalidOperationException or FineTuneException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException or FormatException;
}
