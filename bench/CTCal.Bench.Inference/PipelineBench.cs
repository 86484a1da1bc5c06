using System.Diagnostics;
using System.Reflection;
using System.Text.Json;
using CTCal.Contracts;
using CTCal.Core.Diagnostics;
using CTCal.Export;
using CTCal.Hosting;

namespace CTCal.Bench.Inference;

/// <summary>Options of <c>--pipeline</c>.</summary>
internal sealed record PipelineBenchOptions
{
    public int Runs { get; init; } = 3;
    public int Steps { get; init; } = 20;
    /// <summary>Image side in pixels; null: 256 for the mid model, the model's native size otherwise.</summary>
    public int? Size { get; init; }
    /// <summary>The generated model: mid (<see cref="MidPipelineFolder"/>) or tiny (the tests' tiny-sd1 fixture folder).</summary>
    public string Model { get; init; } = "mid";
    public double Guidance { get; init; } = 7.5;
    public string? Scheduler { get; init; }
    /// <summary>ONNX Runtime providers best first, as the plugin's <c>executionProviders</c> setting.</summary>
    public IReadOnlyList<string> Providers { get; init; } = ["cuda", "cpu"];
    /// <summary>The plugin's <c>intraOpThreads</c> (0: ONNX Runtime's choice).</summary>
    public int Threads { get; init; }
    public string? PluginBuildOutput { get; init; }
    public string? TokenizerFolder { get; init; }
    /// <summary>An exported ONNX model folder to serve (e.g. a full-size export) instead of building the mid model.</summary>
    public string? OnnxFolder { get; init; }
    /// <summary>The plugin's <c>memoryMode</c> (low or balanced); null: the plugin's default.</summary>
    public string? MemoryMode { get; init; }

    /// <summary>
    /// When set (generated models only), the model is also exported with this profile as <c>&lt;model&gt;-&lt;profile&gt;</c>
    /// and, after the plain model's runs, both are timed in back-to-back pairs (alternating order) per seed.
    /// </summary>
    public ExportOptimization? Optimize { get; init; }
}

/// <summary>
/// Seconds per image through the real plugin pipeline: builds the mid-size diffusers folder with random weights,
/// exports it with <see cref="OnnxExporter"/> into a models folder, lays out the plugin's build output in a plugin
/// folder beside a generated plugins.json, loads it with CTCal.Hosting's <see cref="PluginHost"/> (own
/// AssemblyLoadContext, MEF composition) and times <see cref="IImageGenerator.GenerateAsync"/> (tokenizer, text
/// encoder, sampler loop with classifier-free guidance, VAE decode, PNG encode).
/// </summary>
internal static class PipelineBench
{
    private const string Prompt = "a red cube on top of a blue sphere";

    public static async Task<int> RunAsync(PipelineBenchOptions o, string work, Func<string> loadAverage)
    {
        string pluginSource = o.PluginBuildOutput ?? DefaultPluginBuildOutput();
        if (!File.Exists(Path.Combine(pluginSource, "CTCal.Plugin.dll")))
        {
            Console.Error.WriteLine($"--plugin-dir: {pluginSource} has no CTCal.Plugin.dll; build src/CTCal.Plugin (same configuration) first");
            return 2;
        }

        string tokenizer = o.TokenizerFolder ?? Path.Combine(RepositoryRoot(), "tests", "data", "fixtures", "tiny-sd1", "tokenizer");
        int? size = o.Size ?? (o.OnnxFolder is null && o.Model == "mid" ? 256 : null);
        string sizeText = size is int side ? $"{side}x{side}" : "native size";
        Console.WriteLine($"pipeline: {(o.OnnxFolder is null ? o.Model + " config" : o.OnnxFolder)}, {sizeText}, {o.Steps} steps, guidance {o.Guidance}, {o.Runs} timed runs after the first call; " +
            $"plugin from {pluginSource}; {Environment.ProcessorCount} logical CPUs");
        Console.WriteLine($"load average at start: {loadAverage()} (other processes on these CPUs inflate the times)");

        // 1. Diffusers folder with seeded random weights, exported into <work>/host/models/mid; or the given ONNX folder,
        //    served where it is (its parent is the plugin's models folder, its name the model id).
        //    The plugin accepts only a models folder relative to plugins.json, so with --onnx the host root is the folder
        //    above the model's parent (plugins.json and plugins/ are written there).
        string root = o.OnnxFolder is { } onnx ? Path.GetDirectoryName(Path.GetDirectoryName(onnx)!)! : Path.Combine(work, "host");
        string modelsFolder = o.OnnxFolder is { } given ? Path.GetDirectoryName(given)! : Path.Combine(root, "models");
        string modelId = o.OnnxFolder is null ? o.Model : Path.GetFileName(o.OnnxFolder);
        string? profileId = o.Optimize is { } optimize ? $"{modelId}-{ExportOptimizationNames.Name(optimize)}" : null;
        var clock = Stopwatch.StartNew();
        if (o.OnnxFolder is null && o.Model == "tiny")
        {
            string fixture = Path.Combine(RepositoryRoot(), "tests", "data", "fixtures", "tiny-sd1");
            OnnxExporter.Export(new ExportOptions { ModelFolder = fixture, OutputFolder = Path.Combine(modelsFolder, modelId), Force = true });
            Console.WriteLine($"export of {fixture}: {clock.Elapsed.TotalSeconds:F1} s");
            ExportProfile(fixture);
        }
        else if (o.OnnxFolder is null)
        {
            string diffusers = Path.Combine(work, "diffusers-mid");
            var (unetParams, textParams, vaeParams) = MidPipelineFolder.Build(diffusers, tokenizer, seed: 1);
            Console.WriteLine($"diffusers folder: UNet {unetParams:N0}, text encoder {textParams:N0}, VAE {vaeParams:N0} parameters ({clock.Elapsed.TotalSeconds:F1} s)");
            clock.Restart();
            OnnxExporter.Export(new ExportOptions { ModelFolder = diffusers, OutputFolder = Path.Combine(modelsFolder, modelId), Force = true });
            Console.WriteLine($"export: {clock.Elapsed.TotalSeconds:F1} s");
            ExportProfile(diffusers);
        }

        void ExportProfile(string source)
        {
            if (profileId is null) return;
            OnnxExporter.Export(new ExportOptions { ModelFolder = source, OutputFolder = Path.Combine(modelsFolder, profileId), Force = true, Optimize = o.Optimize!.Value });
            Console.WriteLine($"export of {profileId} (--optimize {ExportOptimizationNames.Name(o.Optimize!.Value)}) done");
        }

        // 2. Host root: plugins/CTCal.Plugin (a copy of the build output), models/, plugins.json.
        CopyFolder(pluginSource, Path.Combine(root, "plugins", "CTCal.Plugin"));
        var settings = new Dictionary<string, object>
        {
            ["modelsFolder"] = Path.GetRelativePath(root, modelsFolder),
            ["executionProviders"] = o.Providers,
            ["intraOpThreads"] = o.Threads,
        };
        if (o.MemoryMode is not null) settings["memoryMode"] = o.MemoryMode;
        string pluginsJson = Path.Combine(root, "plugins.json");
        File.WriteAllText(pluginsJson, JsonSerializer.Serialize(new
        {
            version = 1,
            plugins = new[] { new { id = "ctcal.onnx", path = "plugins/CTCal.Plugin", assembly = "CTCal.Plugin.dll", enabled = true, settings } },
        }, new JsonSerializerOptions { WriteIndented = true }));

        var log = new ConsoleLogSink(LogSeverity.Warning);
        using var host = PluginHost.Load(PluginsFile.Load(pluginsJson), log, _ => log);
        foreach (var failure in host.Failures)
        {
            Console.Error.WriteLine($"plugin failure: {failure}");
        }

        var generator = host.Generators.Select(g => g.Value).FirstOrDefault();
        if (generator is null)
        {
            Console.Error.WriteLine("no image generator was loaded from the plugin");
            return 1;
        }

        var models = await generator.ListModelsAsync();
        if (models.All(m => m.Id != modelId))
        {
            Console.Error.WriteLine($"the plugin does not list model '{modelId}' (listed: {string.Join(", ", models.Select(m => m.Id))})");
            return 1;
        }

        GenerationRequest Request(int seed) => new()
        {
            Model = modelId,
            Prompt = Prompt,
            Width = size,
            Height = size,
            Steps = o.Steps,
            GuidanceScale = o.Guidance,
            Seed = seed,
            Scheduler = o.Scheduler,
        };

        // 3. First call (creates the sessions), then timed runs with per-phase times from the progress reports.
        clock.Restart();
        var first = await generator.GenerateAsync(Request(999), null);
        double firstSeconds = clock.Elapsed.TotalSeconds;
        var p = first.Parameters;
        Console.WriteLine($"execution provider: {first.ExecutionProvider}; scheduler {p.Scheduler}; {p.Width}x{p.Height}; PNG {first.Images[0].Png.Length:N0} bytes");
        foreach (string warning in first.Warnings)
        {
            Console.WriteLine($"warning: {warning}");
        }

        Console.WriteLine($"first call (loads the ONNX Runtime sessions + one image): {firstSeconds:F2} s; " +
            $"memory mode {o.MemoryMode ?? "default"}; RSS after it {ProcessMemory.Resident() / 1e9:F2} GB, peak so far {ProcessMemory.Peak() / 1e9:F2} GB");

        var total = new List<double>();
        var outside = new List<double>();
        var parts = new Dictionary<string, List<double>>(StringComparer.Ordinal);
        var perStep = new List<double>();
        var decode = new List<double>();
        var before = new List<double>();
        for (int i = 0; i < o.Runs; i++)
        {
            var phases = new PhaseClock();
            log.StageTimes.Clear();
            clock.Restart();
            var result = await generator.GenerateAsync(Request(1000 + i), phases);
            double seconds = clock.Elapsed.TotalSeconds;
            if (log.StageTimes.Count != 1)
            {
                Console.Error.WriteLine($"the plugin logged {log.StageTimes.Count} stage-time lines for one request (expected 1 at Debug)");
                return 3;
            }

            var times = ParseStageTimes(log.StageTimes[0]);
            foreach (var (key, ms) in times) (parts.TryGetValue(key, out var list) ? list : parts[key] = new List<double>()).Add(ms);
            double share = (times["total"] - times["denoiser"]) / times["total"];
            outside.Add(share);
            total.Add(seconds);
            if (result.Images.Count != 1 || result.Images[0].Png.Length == 0)
            {
                Console.Error.WriteLine("the plugin returned no image");
                return 3;
            }

            var (stepSeconds, decodeSeconds, beforeSeconds) = phases.Summarize(o.Steps, seconds);
            perStep.Add(stepSeconds);
            decode.Add(decodeSeconds);
            before.Add(beforeSeconds);
            Console.WriteLine($"  run {i + 1}: {seconds:F2} s/image ({stepSeconds * 1000:F0} ms/step); outside the UNet {share:P1} " +
                $"({string.Join(", ", times.Where(t => t.Key is not ("total" or "denoiser_calls")).Select(t => $"{t.Key} {t.Value:F0} ms"))}); RSS after it {ProcessMemory.Resident() / 1e9:F2} GB, peak so far {ProcessMemory.Peak() / 1e9:F2} GB");
        }

        Console.WriteLine($"RESULT [{first.ExecutionProvider}] {modelId} {p.Width}x{p.Height}, {p.Steps} steps, guidance {p.Guidance()}: " +
            $"median {StepBench.Median(total):F2} s/image over {o.Runs} runs (min {total.Min():F2}, max {total.Max():F2}); " +
            $"per step {StepBench.Median(perStep) * 1000:F0} ms (UNet with the CFG pair + scheduler); first call {firstSeconds:F2} s");
        Console.WriteLine($"phases (medians): before the first step (tokenize + text encoder) + first step {StepBench.Median(before):F2} s, " +
            $"VAE decode + PNG {StepBench.Median(decode):F2} s");
        string Part(string key) => $"{key} {StepBench.Median(parts[key]):F1} ms ({StepBench.Median(parts[key]) / StepBench.Median(parts["total"]):P1})";
        Console.WriteLine($"RESULT share of time outside the UNet [{first.ExecutionProvider}] {modelId} {p.Width}x{p.Height}, {p.Steps} steps: median {StepBench.Median(outside):P1} " +
            $"over {o.Runs} runs (min {outside.Min():P1}, max {outside.Max():P1}); parts (medians, share of the plugin's {StepBench.Median(parts["total"]):F0} ms): " +
            string.Join(", ", new[] { "text_encoder", "vae_encoder", "sampler", "vae_decoder", "png", "denoiser" }.Select(Part)) +
            $"; {StepBench.Median(parts["denoiser_calls"]):F0} UNet calls; load average {loadAverage()}");
        if (profileId is not null)
        {
            // The profile model against the plain one: a first call each, then per seed one image of each, back to back, in
            // alternating order, so both see the same load; the paired ratio is the median of plain / profile per seed.
            await generator.GenerateAsync(Request(999) with { Model = profileId }, null);
            var plainTimes = new List<double>();
            var profileTimes = new List<double>();
            var ratios = new List<double>();
            for (int i = 0; i < o.Runs; i++)
            {
                int seed = 2000 + i;
                async Task<double> Time(string id)
                {
                    var pairClock = Stopwatch.StartNew();
                    var result = await generator.GenerateAsync(Request(seed) with { Model = id }, null);
                    if (result.Images.Count != 1) throw new InvalidOperationException($"{id}: no image");
                    return pairClock.Elapsed.TotalSeconds;
                }

                double a, b;
                if (i % 2 == 0) { a = await Time(modelId); b = await Time(profileId); }
                else { b = await Time(profileId); a = await Time(modelId); }
                plainTimes.Add(a);
                profileTimes.Add(b);
                ratios.Add(a / b);
                Console.WriteLine($"  pair {i + 1}: plain {a:F2} s, {profileId} {b:F2} s");
            }

            Console.WriteLine($"RESULT pipeline plain vs {ExportOptimizationNames.Name(o.Optimize!.Value)} profile [{first.ExecutionProvider}] {p.Width}x{p.Height}, {p.Steps} steps: " +
                $"median s/image plain {StepBench.Median(plainTimes):F2}, profile {StepBench.Median(profileTimes):F2}; paired ratio plain / profile {StepBench.Median(ratios):F3} over {o.Runs} pairs " +
                $"(> 1: the profile is faster); load average {loadAverage()}");
        }

        Console.WriteLine($"peak RSS of this process (sessions loaded + generation): {ProcessMemory.Peak() / 1e9:F2} GB ({ProcessMemory.PeakSource})");
        Console.WriteLine($"load average at end: {loadAverage()}");
        return 0;
    }

    private static string Guidance(this GenerationParameters p) => p.GuidanceScale.ToString("0.0##", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Timestamps the plugin's progress reports (they are raised synchronously on the generating thread).</summary>
    private sealed class PhaseClock : IProgress<GenerationProgress>
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private double _firstStep = double.NaN, _lastStep = double.NaN, _decoding = double.NaN;
        private int _steps;

        public void Report(GenerationProgress value)
        {
            double now = _clock.Elapsed.TotalSeconds;
            switch (value.Stage)
            {
                case GenerationStage.Denoising:
                    if (value.Step == 1) _firstStep = now;
                    _lastStep = now;
                    _steps = value.Step;
                    break;
                case GenerationStage.Decoding:
                    _decoding = now;
                    break;
            }
        }

        /// <summary>Per-step seconds (steps 2..N), decode + PNG seconds, seconds up to the end of step 1.</summary>
        public (double PerStep, double Decode, double Before) Summarize(int steps, double total)
        {
            if (double.IsNaN(_firstStep) || double.IsNaN(_decoding) || _steps != steps)
            {
                throw new InvalidOperationException($"the plugin reported {_steps} of {steps} denoising steps");
            }

            double perStep = steps > 1 ? (_lastStep - _firstStep) / (steps - 1) : _firstStep;
            return (perStep, total - _decoding, _firstStep);
        }
    }

    private static void CopyFolder(string source, string target)
    {
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string destination = Path.Combine(target, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination, overwrite: true);
        }
    }

    private static string Metadata(string key) =>
        typeof(PipelineBench).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().First(a => a.Key == key).Value!;

    /// <summary>src/CTCal.Plugin/bin/&lt;Configuration&gt;/net8.0, or its artifacts-output equivalent when CTCAL_ARTIFACTS is set.</summary>
    private static string DefaultPluginBuildOutput()
    {
        string configured = Metadata("PluginBuildOutput");
        if (File.Exists(Path.Combine(configured, "CTCal.Plugin.dll")))
        {
            return configured;
        }

        string? artifacts = Environment.GetEnvironmentVariable("CTCAL_ARTIFACTS");
        string folder = artifacts is null ? "" : Path.Combine(artifacts, "bin", "CTCal.Plugin");
        string? found = Directory.Exists(folder)
            ? Directory.EnumerateFiles(folder, "CTCal.Plugin.dll", SearchOption.AllDirectories).FirstOrDefault()
            : null;
        return found is null ? configured : Path.GetDirectoryName(found)!;
    }

    private static string RepositoryRoot() => Metadata("RepositoryRoot");

    /// <summary>The plugin's Debug line of part times (its <c>OnnxImageGenerator.StageTimingsPrefix</c>; the plugin's types live in its own load context).</summary>
    private const string StageTimesPrefix = "Stage times (ms) of";

    /// <summary><c>key=ms</c> pairs after the colon of a stage-times line: text_encoder, vae_encoder, denoiser, sampler, vae_decoder, png, total, denoiser_calls.</summary>
    private static Dictionary<string, double> ParseStageTimes(string line)
    {
        string pairs = line[(line.LastIndexOf(':') + 1)..];
        return pairs.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(p => p.Split('='))
            .ToDictionary(p => p[0], p => double.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture), StringComparer.Ordinal);
    }

    /// <summary>
    /// Writes plugin and host log lines at or above a severity to stderr, and keeps the plugin's Debug stage-times lines
    /// (asking for Debug lines is what makes the plugin time its parts).
    /// </summary>
    private sealed class ConsoleLogSink(LogSeverity minimum) : ILogSink
    {
        public List<string> StageTimes { get; } = new();

        public bool IsEnabled(LogSeverity severity) => severity >= LogSeverity.Debug;

        public void Log(LogSeverity severity, string message, Exception? exception = null)
        {
            if (severity == LogSeverity.Debug && message.StartsWith(StageTimesPrefix, StringComparison.Ordinal))
            {
                lock (StageTimes) StageTimes.Add(message);
            }
            else if (severity >= minimum)
            {
                Console.Error.WriteLine($"[{severity}] {message}{(exception is null ? "" : $": {exception.Message}")}");
            }
        }
    }
}
