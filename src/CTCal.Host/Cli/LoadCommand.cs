using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Host.Plugins;

namespace CTCal.Host.Cli;

/// <summary>
/// <c>ctcal-host load</c>: a sustained-load check. After a warm-up (sequential calls, then one concurrent round so the
/// sessions' arenas and the thread pool reach their working size) it runs N sequential generations, then M concurrent
/// ones all in flight together, and prints resident memory, open handles and threads (each after a full GC) at
/// three points, with images/s per phase. Exit code 0 when RSS grew under 10% over the after-warm-up value and handles
/// and threads came back within a small margin of it; 4 otherwise; 2 for bad input (unknown model, bad plugins.json),
/// 3 when the plugin fails, 130 when cancelled.
/// </summary>
internal static class LoadCommand
{
    /// <summary>Allowed RSS growth (fraction of the after-warm-up value).</summary>
    public const double MaxRssGrowth = 0.10;

    /// <summary>Handles the end may have over the after-warm-up count.</summary>
    public const int HandleMargin = 16;

    /// <summary>Threads the end may have over the after-warm-up count.</summary>
    public const int ThreadMargin = 4;

    public static Command Create(TextWriter output, Func<ParseResult, PluginHost> open)
    {
        var model = new Option<string>("--model", "-m") { Description = "Model id", Required = true };
        var sequential = new Option<int>("--sequential") { Description = "Sequential generations", DefaultValueFactory = _ => 200 };
        var concurrent = new Option<int>("--concurrent") { Description = "Concurrent generations, all in flight together", DefaultValueFactory = _ => 16 };
        var steps = new Option<int>("--steps") { Description = "Denoising steps per image", DefaultValueFactory = _ => 2 };
        var size = new Option<int>("--size") { Description = "Width and height", DefaultValueFactory = _ => 32 };
        var warmup = new Option<int>("--warmup") { Description = "Sequential warm-up generations (then one concurrent round)", DefaultValueFactory = _ => 5 };
        var settle = new Option<int>("--settle") { Description = "Seconds to wait at the end for idle pool threads to retire before judging", DefaultValueFactory = _ => 30 };
        var command = new Command("load", "Sustained load: sequential then concurrent generations; RSS, handles and threads at start and end (exit 4 on growth)");
        foreach (var o in new Option[] { model, sequential, concurrent, steps, size, warmup, settle })
        {
            command.Options.Add(o);
        }

        command.SetAction((parse, ct) => HostCommands.RunAsync(output, async () =>
        {
            using var host = open(parse);
            string id = parse.GetValue(model)!;
            IImageGenerator? generator = (await HostCommands.FindGeneratorAsync(host.Generators, id, ct))?.Value;

            if (generator is null)
            {
                output.WriteLine($"error: no loaded plugin has a model '{id}'");
                return 2;
            }

            int n = Math.Max(0, parse.GetValue(sequential));
            int m = Math.Max(0, parse.GetValue(concurrent));
            int w = Math.Max(1, parse.GetValue(warmup));
            GenerationRequest Request(int i) => new()
            {
                Model = id,
                Prompt = "a red cube on top of a blue sphere",
                Steps = parse.GetValue(steps),
                Width = parse.GetValue(size),
                Height = parse.GetValue(size),
                Seed = 1000 + i,
            };

            // All requests start together; each runs on the thread pool so none waits for another to be issued.
            async Task Concurrent(int count, int offset) =>
                await Task.WhenAll(Enumerable.Range(0, count).Select(i => Task.Run(() => generator.GenerateAsync(Request(offset + i), null, ct), ct)));

            var start = Snapshot.Take();
            output.WriteLine($"platform {Snapshot.Source}; before warm-up: {start}");

            var first = await generator.GenerateAsync(Request(-1), null, ct);
            output.WriteLine($"model {id}, {first.Parameters.Width}x{first.Parameters.Height}, {first.Parameters.Steps} steps, {first.Parameters.Scheduler}, provider {first.ExecutionProvider}");
            for (int i = 1; i < w; i++)
            {
                await generator.GenerateAsync(Request(-1 - i), null, ct);
            }

            if (m > 0)
            {
                await Concurrent(m, -1000);
            }

            var warm = Snapshot.Take();
            output.WriteLine($"after warm-up ({w} sequential + {m} concurrent): {warm}");

            var wall = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                await generator.GenerateAsync(Request(i), null, ct);
            }

            double sequentialSeconds = wall.Elapsed.TotalSeconds;
            var afterSequential = Snapshot.Take();
            output.WriteLine($"after {n} sequential: {afterSequential}, RSS growth {Growth(warm, afterSequential)}");

            wall.Restart();
            if (m > 0)
            {
                await Concurrent(m, n);
            }

            double concurrentSeconds = wall.Elapsed.TotalSeconds;
            var end = Snapshot.Take();
            var settleWatch = Stopwatch.StartNew();
            int settleSeconds = Math.Max(0, parse.GetValue(settle));
            while (!ResourcesBack(warm, end) && settleWatch.Elapsed.TotalSeconds < settleSeconds)
            {
                await Task.Delay(1000, ct);
                end = Snapshot.Take();
            }

            string settled = settleWatch.Elapsed.TotalSeconds >= 1 ? $" (after {settleWatch.Elapsed.TotalSeconds:F0} s settling)" : "";
            output.WriteLine($"end, after {m} concurrent{settled}: {end}, RSS growth {Growth(warm, end)}");
            output.WriteLine($"throughput: sequential {Rate(n, sequentialSeconds)} images/s, concurrent x{m} {Rate(m, concurrentSeconds)} images/s");

            double growth = (end.RssBytes - warm.RssBytes) / (double)warm.RssBytes;
            bool pass = growth < MaxRssGrowth && ResourcesBack(warm, end);
            output.WriteLine(
                $"{(pass ? "PASS" : "FAIL")}: RSS growth {Growth(warm, end)} (limit {MaxRssGrowth * 100:F0}%), " +
                $"handles {end.Handles - warm.Handles:+0;-0;0} (limit +{HandleMargin}), threads {end.Threads - warm.Threads:+0;-0;0} (limit +{ThreadMargin})");
            return pass ? 0 : 4;
        }));
        return command;
    }

    private static bool ResourcesBack(Snapshot warm, Snapshot now) =>
        now.Handles <= warm.Handles + HandleMargin && now.Threads <= warm.Threads + ThreadMargin;

    private static string Growth(Snapshot from, Snapshot to) =>
        ((to.RssBytes - from.RssBytes) * 100.0 / from.RssBytes).ToString("+0.0;-0.0;0.0", CultureInfo.InvariantCulture) + "%";

    private static string Rate(int count, double seconds) =>
        (count == 0 || seconds <= 0 ? 0 : count / seconds).ToString("F1", CultureInfo.InvariantCulture);

    /// <summary>Process resources after a full, compacting GC (finalizers run, so released native handles are closed).</summary>
    private readonly record struct Snapshot(long RssBytes, long ManagedBytes, int Handles, int Threads)
    {
        public static string Source => OperatingSystem.IsLinux()
            ? "linux (VmRSS from /proc/self/status, handles = /proc/self/fd entries)"
            : "WorkingSet64 / HandleCount";

        public static Snapshot Take()
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            using var process = Process.GetCurrentProcess();
            if (OperatingSystem.IsLinux())
            {
                return new Snapshot(ReadVmRss(), GC.GetTotalMemory(false), Directory.GetFileSystemEntries("/proc/self/fd").Length, process.Threads.Count);
            }

            return new Snapshot(process.WorkingSet64, GC.GetTotalMemory(false), process.HandleCount, process.Threads.Count);
        }

        public override string ToString() =>
            $"VmRSS {Mib(RssBytes)} MiB (managed heap {Mib(ManagedBytes)} MiB), handles {Handles}, threads {Threads}";

        private static string Mib(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("F1", CultureInfo.InvariantCulture);

        private static long ReadVmRss()
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    // "VmRSS:	  123456 kB"
                    string[] parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length >= 3 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb) && parts[2] == "kB")
                    {
                        return kb * 1024;
                    }

                    throw new FormatException($"/proc/self/status: unexpected VmRSS line '{line}'");
                }
            }

            throw new FormatException("/proc/self/status: no VmRSS line");
        }
    }
}
