using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Plugin.Hosting;
using CTCal.Plugin.Onnx;
using CTCal.Tests;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Plugin.Tests;

/// <summary>
/// The shipped base exported by <c>ctcal-export export</c> (the command line, as a process) in float32 and with
/// <c>--precision fp16</c> (float16 compute), both generated through the plugin on the CPU provider with the same request:
/// the plugin serves the fp16 folder unchanged (float32 inputs and outputs) and its image stays close to the float32 one.
/// </summary>
public sealed class Fp16ExportGenerationTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>
    /// Mean |fp16 - fp32| over all RGB bytes allowed (0..255 scale). float16 changes each step's prediction by ~1e-3 of its
    /// scale; over 10 DDIM steps that moved these images by 0.018 and 0.027 grey levels on average (no byte by more than 1);
    /// the bound keeps about 10x margin and is a tenth of one grey level.
    /// </summary>
    private const double MeanAbsPixelBound = 0.25;

    private readonly string _root = TestPaths.NewTempDir("ctcal-fp16-gen");

    public void Dispose() => Directory.Delete(_root, true);

    private string Models => Path.Combine(_root, "models");

    private static string BaseModel => Path.Combine(TestPaths.RepoRoot, "assets", "base-model");

    private (int ExitCode, string Stderr) RunExport(params string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string[] all = [Path.Combine(AppContext.BaseDirectory, "ctcal-export.dll"), "export", .. args];
        foreach (string a in all) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "ctcal-export did not exit within 2 minutes"); // a hang guard, not a race
        process.WaitForExit();
        output.WriteLine($"ctcal-export {string.Join(' ', args)}: exit {process.ExitCode}");
        return (process.ExitCode, stdout.Result + stderr.Result);
    }

    [Fact]
    public async Task Fp16_export_generates_through_the_plugin_close_to_the_fp32_export()
    {
        Assert.Equal(0, RunExport("--model", BaseModel, "--out", Path.Combine(Models, "base-fp32")).ExitCode);
        Assert.Equal(0, RunExport("--model", BaseModel, "--out", Path.Combine(Models, "base-fp16"), "--precision", "fp16").ExitCode);
        Assert.Equal("fp16", OnnxModelManifest.TryRead(Path.Combine(Models, "base-fp16"))!.Precision);

        // --fp16 is the old spelling of fp16-weights and contradicts float16 compute: refused before anything is written
        var (code, text) = RunExport("--model", BaseModel, "--out", Path.Combine(Models, "refused"), "--fp16", "--precision", "fp16");
        Assert.Equal(2, code);
        Assert.Contains("--fp16 means --precision fp16-weights", text);
        Assert.False(Directory.Exists(Path.Combine(Models, "refused")));

        var settings = new PluginSettings
        {
            ModelsFolder = Models,
            ExecutionProviders = [ExecutionProviderKind.Cpu],
            IntraOpThreads = 1,
            InterOpThreads = 1,
        };
        using var runtime = new PluginRuntime(settings, new RecordingLog());
        var generator = new OnnxImageGenerator(runtime);
        GenerationRequest Request(string model) => new()
        {
            Model = model,
            Prompt = "two red circles left of a blue square",
            Width = 64,
            Height = 64,
            Steps = 10,
            GuidanceScale = 5,
            Seed = 11,
            BatchCount = 2,
            Scheduler = "ddim",
        };
        var fp32 = await generator.GenerateAsync(Request("base-fp32"));
        var fp16 = await generator.GenerateAsync(Request("base-fp16"));
        for (int i = 0; i < fp32.Images.Count; i++)
        {
            var a = PngReader.Read(fp32.Images[i].Png).Rgb;
            var b = PngReader.Read(fp16.Images[i].Png).Rgb;
            Assert.Equal(a.Length, b.Length);
            double mean = a.Zip(b, (x, y) => Math.Abs(x - y)).Average();
            int max = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
            output.WriteLine($"image {i}: mean |fp16 - fp32| {mean:F3} grey levels, max {max}");
            Assert.True(a.Distinct().Count() > 10, "the fp32 image is flat");
            Assert.True(mean <= MeanAbsPixelBound, $"image {i}: mean abs pixel difference {mean:F3} > {MeanAbsPixelBound}");
        }
        Assert.NotEqual(fp32.Images[0].Png, fp16.Images[0].Png); // computed in float16, not a copy of the float32 graph
        // the plugin read the precision from the manifest and says what float16 compute costs on the CPU provider
        Assert.Contains(fp16.Warnings, w => w.Contains("--precision fp16", StringComparison.Ordinal));
        Assert.DoesNotContain(fp32.Warnings, w => w.Contains("--precision", StringComparison.Ordinal));
    }
}
