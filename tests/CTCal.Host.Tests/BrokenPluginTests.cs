using System.CommandLine;
using CTCal.Contracts;
using CTCal.Host.Cli;
using CTCal.Hosting;
using CTCal.Tests;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// Plugins that are broken on purpose, compiled from source during the test (Roslyn), loaded beside the real CTCal plugin
/// in one host: a constructor that throws, a generator that throws, P/Invoke into a native library that does not
/// exist, called at load and at generate, and a model listing that throws. The host keeps serving the real plugin and
/// every error names the broken one. A generator that only ends when cancelled checks that SIGTERM reaches it.
/// </summary>
public sealed class BrokenPluginTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-broken");

    public void Dispose() => Directory.Delete(_root, true);

    private const string Source = """
        using System;
        using System.Collections.Generic;
        using System.Composition;
        using System.Runtime.InteropServices;
        using System.Threading;
        using System.Threading.Tasks;
        using CTCal.Contracts;

        namespace Broken;

        public sealed class DeliberateFailureException(string message) : Exception(message);

        [Export(typeof(IImageGenerator))]
        [ExportMetadata(PluginMetadataKeys.Id, "broken.MODE")]
        [ExportMetadata(PluginMetadataKeys.Name, "Broken plugin (MODE)")]
        [ExportMetadata(PluginMetadataKeys.Version, "0.0.1")]
        public sealed class BrokenGenerator : IImageGenerator
        {
            private const string Mode = "MODE";

            [DllImport("ctcal_no_such_native_library")]
            private static extern int ctcal_missing_entry_point();

            [ImportingConstructor]
            public BrokenGenerator(IPluginContext context)
            {
                if (Mode == "ctor") throw new DeliberateFailureException("broken plugin: its constructor fails");
                if (Mode == "native-load") ctcal_missing_entry_point();
            }

            public Task<IReadOnlyList<ModelInfo>> ListModelsAsync(CancellationToken cancellationToken = default)
            {
                if (Mode == "list") throw new DeliberateFailureException("broken plugin: listing models fails");
                return Task.FromResult<IReadOnlyList<ModelInfo>>([new ModelInfo("model-MODE", "Broken MODE", "/nowhere", "sd1", 64, 64, false)]);
            }

            public Task<GenerationResult> GenerateAsync(GenerationRequest request, IProgress<GenerationProgress>? progress = null, CancellationToken cancellationToken = default)
            {
                if (Mode == "hang") return HangUntilCancelledAsync(progress, cancellationToken);
                if (Mode == "native-generate") ctcal_missing_entry_point();
                throw new DeliberateFailureException("broken plugin: generate fails");
            }

            // Reports step 5 of 10 (the host prints it), then waits for the cancellation and says on stdout that it saw it.
            private static async Task<GenerationResult> HangUntilCancelledAsync(IProgress<GenerationProgress>? progress, CancellationToken cancellationToken)
            {
                progress?.Report(new GenerationProgress(GenerationStage.Denoising, 0, 1, 5, 10));
                try
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    Console.Out.WriteLine("broken plugin: GenerateAsync saw the cancellation");
                    throw;
                }
                throw new DeliberateFailureException("broken plugin: the wait ended without a cancellation");
            }

            public bool UnloadModel(string modelId) => false;
        }
        """;

    /// <summary>Compiles the broken plugin for <paramref name="mode"/> into plugins/broken-MODE/Broken.MODE.dll.</summary>
    private string Compile(string mode)
    {
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => Path.GetFileName(p) is { } name
                && (name.StartsWith("System.", StringComparison.Ordinal) || name is "netstandard.dll" or "mscorlib.dll" or "CTCal.Contracts.dll"))
            .Select(p => MetadataReference.CreateFromFile(p));
        var compilation = CSharpCompilation.Create(
            $"Broken.{mode}",
            [CSharpSyntaxTree.ParseText(Source.Replace("MODE", mode), new CSharpParseOptions(LanguageVersion.Latest))],
            references,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, nullableContextOptions: NullableContextOptions.Enable));
        string folder = Path.Combine(_root, "plugins", $"broken-{mode}");
        Directory.CreateDirectory(folder);
        string dll = Path.Combine(folder, $"Broken.{mode}.dll");
        var result = compilation.Emit(dll);
        Assert.True(result.Success, string.Join("\n", result.Diagnostics));
        return Path.GetFileName(dll);
    }

    private static object BrokenEntry(string mode, string assembly) =>
        new { id = $"broken.{mode}", path = $"plugins/broken-{mode}", assembly, enabled = true, settings = new { } };

    private string Layout()
    {
        string[] modes = ["ctor", "generate", "native-load", "native-generate"];
        var entries = modes.Select(m => BrokenEntry(m, Compile(m))).ToList<object>();
        PluginFolders.CopyPlugin(_root, "good");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        entries.Insert(2, PluginFolders.Entry("good", "good"));
        return PluginFolders.WritePluginsJson(_root, [.. entries]);
    }

    [Fact]
    public async Task BrokenPluginsAreReportedByNameWhileTheRealOneKeepsServing()
    {
        string file = Layout();
        var log = new RecordingLog();
        using var host = PluginHost.Load(PluginsFile.Load(file), log, _ => log);

        Assert.Equal(["broken.generate", "good", "broken.native-generate"], host.Plugins.Select(p => p.Entry.Id));
        Assert.Contains(host.Failures, f => f.PluginId == "broken.ctor" && f.ToString().Contains("its constructor fails"));
        Assert.Contains(host.Failures, f => f.PluginId == "broken.native-load" && f.ToString().Contains("ctcal_no_such_native_library"));
        Assert.All(host.Failures, f => Assert.Contains(f.PluginId, new[] { "broken.ctor", "broken.native-load" }));
        Assert.Contains(log.Entries, e => e.Severity == LogSeverity.Error && e.Message.Contains("broken.ctor"));
        Assert.Contains(log.Entries, e => e.Severity == LogSeverity.Error && e.Message.Contains("broken.native-load"));

        var good = Assert.Single(host.Plugins, p => p.Entry.Id == "good").Generators.Single().Value;
        var broken = host.Plugins.Single(p => p.Entry.Id == "broken.generate").Generators.Single().Value;
        var native = host.Plugins.Single(p => p.Entry.Id == "broken.native-generate").Generators.Single().Value;
        var request = new GenerationRequest { Model = "tiny", Prompt = "a cube", Width = 64, Height = 64, Steps = 2, Seed = 1 };
        await Assert.ThrowsAnyAsync<Exception>(() => broken.GenerateAsync(request with { Model = "model-generate" }));
        await Assert.ThrowsAsync<DllNotFoundException>(() => native.GenerateAsync(request with { Model = "model-native-generate" }));
        var image = Assert.Single((await good.GenerateAsync(request)).Images);
        Assert.NotEmpty(image.Png);
    }

    private static (int Code, string Output) RunHost(params string[] args)
    {
        var output = new StringWriter();
        var log = new RecordingLog();
        int code = HostCommands.Build(output, log, _ => log).Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = output });
        return (code, output.ToString());
    }

    [Fact]
    public void APluginWhoseModelListingThrowsIsSkippedAndTheOthersKeepServing()
    {
        // The broken plugin comes first, so every lookup meets its failing ListModelsAsync before the real plugin.
        PluginFolders.CopyPlugin(_root, "good");
        TinySdModel.Create(Path.Combine(_root, "models"), "tiny");
        string file = PluginFolders.WritePluginsJson(_root, BrokenEntry("list", Compile("list")), PluginFolders.Entry("good", "good"));

        var (code, output) = RunHost("models", "--config", file);
        Assert.True(code == 0, output);
        Assert.Contains("warning: broken.list failed to list models: broken plugin: listing models fails", output);
        Assert.Contains("good  tiny", output);

        string outDir = Path.Combine(_root, "out");
        foreach (string verb in new[] { "generate", "bench" })
        {
            string[] args = verb == "generate"
                ? ["generate", "--config", file, "-m", "tiny", "--prompt", "a cube", "--width", "64", "--height", "64", "--steps", "2", "--seed", "1", "-o", outDir]
                : ["bench", "--config", file, "-m", "tiny", "--steps", "1", "--size", "64", "--runs", "1", "--concurrency", "1"];
            (code, output) = RunHost(args);
            Assert.True(code == 0, $"{verb}: exit {code}\n{output}");
        }
        Assert.True(File.Exists(Path.Combine(outDir, "tiny-1.png")));
    }

    [Fact]
    public void WithNoPluginLoadedEveryVerbExitsWithOne()
    {
        string file = PluginFolders.WritePluginsJson(_root, BrokenEntry("ctor", Compile("ctor")));
        string[][] verbs =
        [
            ["plugins"],
            ["models"],
            ["generate", "-m", "tiny", "--prompt", "x"],
            ["export", "--checkpoint", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--id", "x"],
            ["finetune", "--base", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--data", _root, "--output", Path.Combine(_root, "run"), "--id", "x"],
            ["bench", "-m", "tiny"],
            ["load", "-m", "tiny"],
        ];
        foreach (var verb in verbs)
        {
            var (code, output) = RunHost([.. verb, "--config", file]);
            Assert.True(code == 1, $"{verb[0]}: exit {code}, expected 1\n{output}");
            Assert.Contains("warning: plugin broken.ctor", output);
            if (verb[0] != "plugins") Assert.Contains($"error: no plugin of {file} could be loaded", output);
        }
    }

    [SkippableFact]
    public void SigtermCancelsARunningGenerateInThePluginAndExitsWith130()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "SIGTERM is sent through libc's kill(), declared for Linux here");
        string file = PluginFolders.WritePluginsJson(_root, BrokenEntry("hang", Compile("hang")));
        using var host = new HostProcess(_root, ["generate", "--config", file, "-m", "model-hang", "--prompt", "x", "-o", Path.Combine(_root, "out")]);
        // The plugin has reported step 5 and now waits for nothing but the cancellation.
        Assert.True(host.WaitForLine("image 1/1 step 5/10"), $"the host ended before the plugin reported progress:\n{host.Output}");
        host.Terminate();
        int code = host.WaitForExit();
        Assert.True(code == 130, $"exit {code}, expected 130\n{host.Output}");
        Assert.Contains("broken plugin: GenerateAsync saw the cancellation", host.Output);
        Assert.EndsWith("cancelled", host.Output.TrimEnd());
    }

    [Fact]
    public void TheHostCommandLineNamesTheBrokenPluginAndStillGeneratesWithTheRealOne()
    {
        string file = Layout();
        (int, string) Run(params string[] args)
        {
            var output = new StringWriter();
            var log = new RecordingLog();
            int code = HostCommands.Build(output, log, _ => log).Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = output });
            return (code, output.ToString());
        }

        var (code, output) = Run("plugins", "--config", file);
        Assert.Equal(0, code);
        Assert.Contains("broken.ctor", output);
        Assert.Contains("broken.native-load", output);

        (code, output) = Run("generate", "--config", file, "-m", "model-generate", "--prompt", "x", "-o", Path.Combine(_root, "out"));
        Assert.Equal(3, code);
        Assert.Contains("plugin 'broken.generate' failed in generate", output);
        Assert.DoesNotContain("   at ", output);

        (code, output) = Run("generate", "--config", file, "-m", "model-native-generate", "--prompt", "x", "-o", Path.Combine(_root, "out"));
        Assert.Equal(3, code);
        Assert.Contains("plugin 'broken.native-generate' failed in generate: DllNotFoundException", output);

        (code, output) = Run("generate", "--config", file, "-m", "tiny", "--prompt", "a cube", "--width", "64", "--height", "64",
            "--steps", "2", "--seed", "1", "-o", Path.Combine(_root, "out"));
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(_root, "out", "tiny-1.png")));
    }
}
