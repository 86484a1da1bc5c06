using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Hosting;

namespace CTCal.Host.Cli;

/// <summary>
/// <c>ctcal-host bench</c>: times single-image generations through a plugin (first call separately, since it loads the
/// sessions), then the same requests run sequentially and concurrently, and prints medians and throughput. Errors go through
/// the host's exit codes like every verb (2 bad input such as a broken plugins.json, 3 a plugin failed, 130 cancelled).
/// </summary>
internal static class BenchCommand
{
    public static Command Create(TextWriter output, Func<ParseResult, PluginHost> open)
    {
        var model = new Option<string>("--model", "-m") { Description = "Model id", Required = true };
        var steps = new Option<int>("--steps") { Description = "Denoising steps per image", DefaultValueFactory = _ => 10 };
        var size = new Option<int?>("--size") { Description = "Width and height (default: the model's)" };
        var runs = new Option<int>("--runs") { Description = "Timed images per mode", DefaultValueFactory = _ => 8 };
        var concurrency = new Option<int>("--concurrency") { Description = "Requests in flight in the concurrent mode", DefaultValueFactory = _ => 4 };
        var scheduler = new Option<string?>("--scheduler") { Description = "Scheduler" };
        var command = new Command("bench", "Time generation: first call, sequential and concurrent requests (medians, images/s)");
        foreach (var o in new Option[] { model, steps, size, runs, concurrency, scheduler })
        {
            command.Options.Add(o);
        }

        command.SetAction((parse, ct) => HostCommands.RunAsync(output, async () =>
        {
            using var host = open(parse);
            string id = parse.GetValue(model)!;
            if (await HostCommands.FindGeneratorOrReportAsync(host.Generators, id, output, ct) is not { } generator)
            {
                return 2;
            }

            int n = Math.Max(1, parse.GetValue(runs));
            int inFlight = Math.Max(1, parse.GetValue(concurrency));
            GenerationRequest Request(int i) => new()
            {
                Model = id,
                Prompt = "a red cube on top of a blue sphere",
                Steps = parse.GetValue(steps),
                Width = parse.GetValue(size),
                Height = parse.GetValue(size),
                Seed = 1000 + i,
                Scheduler = parse.GetValue(scheduler),
            };

            var first = Stopwatch.StartNew();
            var warm = await generator.GenerateAsync(Request(-1), null, ct);
            output.WriteLine($"model {id}, {warm.Parameters.Width}x{warm.Parameters.Height}, {warm.Parameters.Steps} steps, {warm.Parameters.Scheduler}, provider {warm.ExecutionProvider}");
            output.WriteLine($"first call (loads sessions): {first.Elapsed.TotalMilliseconds:F0} ms");
            // Startup cost up to the first image (runtime start, plugin load, sessions, first run) and how much of it the JIT
            // took: what ReadyToRun code in a plugin package saves (docs/packaging.md).
            using (var self = Process.GetCurrentProcess())
            {
                output.WriteLine(FormattableString.Invariant(
                    $"first image {(DateTime.Now - self.StartTime).TotalMilliseconds:F0} ms after process start; JIT so far: {System.Runtime.JitInfo.GetCompiledMethodCount(currentThread: false)} methods, {System.Runtime.JitInfo.GetCompilationTime(currentThread: false).TotalMilliseconds:F0} ms compiling"));
            }

            var sequential = new List<double>();
            var wall = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                var one = Stopwatch.StartNew();
                await generator.GenerateAsync(Request(i), null, ct);
                sequential.Add(one.Elapsed.TotalMilliseconds);
            }

            double sequentialWall = wall.Elapsed.TotalSeconds;
            var concurrent = new List<double>();
            using var gate = new SemaphoreSlim(inFlight);
            wall.Restart();
            await Task.WhenAll(Enumerable.Range(0, n).Select(async i =>
            {
                await gate.WaitAsync(ct);
                try
                {
                    var one = Stopwatch.StartNew();
                    await generator.GenerateAsync(Request(i), null, ct);
                    lock (concurrent)
                    {
                        concurrent.Add(one.Elapsed.TotalMilliseconds);
                    }
                }
                finally
                {
                    gate.Release();
                }
            }));
            double concurrentWall = wall.Elapsed.TotalSeconds;

            string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
            output.WriteLine($"sequential: median {F(Median(sequential))} ms/image ({F(Median(sequential) / warm.Parameters.Steps)} ms/step), {F(n / sequentialWall)} images/s");
            output.WriteLine($"concurrent x{inFlight}: median {F(Median(concurrent))} ms/image, {F(n / concurrentWall)} images/s ({F(sequentialWall / concurrentWall)}x sequential throughput)");
            return 0;
        }));
        return command;
    }

    private static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
