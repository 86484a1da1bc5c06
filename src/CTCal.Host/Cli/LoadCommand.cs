using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Hosting;

namespace CTCal.Host.Cli;

/// <summary>
/// <c>ctcal-host load</c>: a sustained-load check. A warm-up in rounds (sequential calls, then one concurrent round) runs
/// until the runtime is steady (the JIT's compiled-method count stops rising and the GC has collected gen0 on its own,
/// so it holds its full allocation budget), or for at most <c>--warmup-rounds</c>. Then it runs N sequential
/// generations and M concurrent ones all in flight together, and prints resident memory (with its anonymous/file split,
/// the GC's live and committed bytes and the JIT's method count), open handles and threads, each after a full GC, with
/// images/s and managed allocation per phase. Exit code 0 when RSS grew under 10% over the after-warm-up value and
/// handles and threads came back within a small margin of it; 4 otherwise; 2 for bad input (unknown model, bad
/// plugins.json), 3 when the plugin fails, 130 when cancelled.
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
        var warmup = new Option<int>("--warmup") { Description = "Sequential generations per warm-up round (each round then runs one concurrent round)", DefaultValueFactory = _ => 20 };
        var warmupRounds = new Option<int>("--warmup-rounds") { Description = "Most warm-up rounds; warm-up ends earlier once a round leaves the JIT's method count and the GC's committed memory steady", DefaultValueFactory = _ => 20 };
        var settle = new Option<int>("--settle") { Description = "Seconds to wait at the end for idle pool threads to retire before judging", DefaultValueFactory = _ => 30 };
        var command = new Command("load", "Sustained load: sequential then concurrent generations; RSS, handles and threads at start and end (exit 4 on growth)");
        foreach (var o in new Option[] { model, sequential, concurrent, steps, size, warmup, warmupRounds, settle })
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

            int n = Math.Max(0, parse.GetValue(sequential));
            int m = Math.Max(0, parse.GetValue(concurrent));
            int w = Math.Max(0, parse.GetValue(warmup));
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

            // Warm-up in rounds shaped like the measured load (sequential, then all in flight) until the runtime's own
            // bounded caches have reached their working size: the JIT has finished re-compiling hot methods at tier 1
            // (its compiled-method count stops rising), and the GC has run through its gen0 allocation budget on its own
            // at least once (it keeps up to that budget committed after each collection, so until then its committed
            // memory keeps rising with every image; the budget is sized from the CPU's cache, about 80-90 MiB on a
            // machine reporting a 300 MiB L3). No collection is forced during the warm-up, which would restart the
            // budget. Both are runtime figures, never RSS itself, so native growth still shows in the measured phases.
            int maxRounds = Math.Max(MinWarmupRounds, parse.GetValue(warmupRounds));
            int gen0Before = GC.CollectionCount(0);
            long jitBefore = System.Runtime.JitInfo.GetCompiledMethodCount(currentThread: false);
            long allocatedBefore = GC.GetTotalAllocatedBytes(precise: false);
            int rounds = 0, warmupImages = 1;
            bool steady = false;
            while (rounds < maxRounds && !steady)
            {
                for (int i = 0; i < w; i++)
                {
                    await generator.GenerateAsync(Request(WarmupSeeds + warmupImages + i), null, ct);
                }

                if (m > 0)
                {
                    await Concurrent(m, WarmupSeeds + warmupImages + w);
                }

                warmupImages += w + m;
                rounds++;
                long jit = System.Runtime.JitInfo.GetCompiledMethodCount(currentThread: false);
                int gen0 = GC.CollectionCount(0) - gen0Before;
                bool jitSteady = jit - jitBefore < MaxJitGrowth * jitBefore;
                steady = rounds >= MinWarmupRounds && jitSteady && gen0 >= 1;
                output.WriteLine(
                    $"warm-up round {rounds}: JIT {jit - jitBefore:+0;-0;0} methods, {gen0} gen0 GCs so far, " +
                    $"{Mib(GC.GetTotalAllocatedBytes(precise: false) - allocatedBefore)} MiB allocated so far, VmRSS {Mib(Snapshot.ReadRss())} MiB (no GC forced){(steady ? " (steady)" : "")}");
                jitBefore = jit;
            }

            var warm = Snapshot.Take();
            string state = steady
                ? $"steady after {rounds} rounds, {warmupImages} images"
                : $"NOT steady after {rounds} rounds, {warmupImages} images";
            output.WriteLine($"after warm-up ({w} sequential + {m} concurrent per round, {state}): {warm}");

            var wall = Stopwatch.StartNew();
            for (int i = 0; i < n; i++)
            {
                await generator.GenerateAsync(Request(i), null, ct);
            }

            double sequentialSeconds = wall.Elapsed.TotalSeconds;
            var afterSequential = Snapshot.Take();
            output.WriteLine($"after {n} sequential: {afterSequential}, RSS growth {Growth(warm, afterSequential)}; {Managed(warm, afterSequential, n)}");

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
            output.WriteLine($"end, after {m} concurrent{settled}: {end}, RSS growth {Growth(warm, end)}; {Managed(afterSequential, end, m)}");
            output.WriteLine($"throughput: sequential {Rate(n, sequentialSeconds)} images/s, concurrent x{m} {Rate(m, concurrentSeconds)} images/s");

            var (pass, verdict) = Judge(new Reading(warm.RssBytes, warm.Handles, warm.Threads), new Reading(end.RssBytes, end.Handles, end.Threads));
            output.WriteLine(verdict);
            return pass ? 0 : 4;
        }));
        return command;
    }

    /// <summary>Warm-up requests use seeds from here on (measured ones from 1000), so none repeats a measured image.</summary>
    private const int WarmupSeeds = 1_000_000;

    /// <summary>Warm-up rounds always run, so that the first round's one-off start-up work is never judged steady.</summary>
    public const int MinWarmupRounds = 2;

    /// <summary>A warm-up round leaves the JIT steady when it compiled fewer new methods than this fraction of those compiled before.</summary>
    public const double MaxJitGrowth = 0.01;

    private static bool ResourcesBack(Snapshot warm, Snapshot now) =>
        now.Handles <= warm.Handles + HandleMargin && now.Threads <= warm.Threads + ThreadMargin;

    /// <summary>The figures the verdict is made of: resident memory (bytes), open handles, threads.</summary>
    public readonly record struct Reading(long RssBytes, int Handles, int Threads);

    /// <summary>
    /// The verdict of a load run: PASS when RSS grew by less than <see cref="MaxRssGrowth"/> of the after-warm-up value and
    /// handles and threads are within <see cref="HandleMargin"/> / <see cref="ThreadMargin"/> of it; the line says which
    /// figure failed against which limit.
    /// </summary>
    public static (bool Pass, string Line) Judge(Reading warm, Reading end)
    {
        if (warm.RssBytes <= 0) throw new ArgumentOutOfRangeException(nameof(warm), warm.RssBytes, "the after-warm-up RSS must be positive");
        double growth = (end.RssBytes - warm.RssBytes) / (double)warm.RssBytes;
        bool pass = growth < MaxRssGrowth && end.Handles <= warm.Handles + HandleMargin && end.Threads <= warm.Threads + ThreadMargin;
        string percent = (growth * 100).ToString("+0.0;-0.0;0.0", CultureInfo.InvariantCulture) + "%";
        return (pass, $"{(pass ? "PASS" : "FAIL")}: RSS growth {percent} (limit {MaxRssGrowth * 100:F0}%), " +
            $"handles {end.Handles - warm.Handles:+0;-0;0} (limit +{HandleMargin}), threads {end.Threads - warm.Threads:+0;-0;0} (limit +{ThreadMargin})");
    }

    private static string Mib(long bytes) => Snapshot.Mib(bytes);

    /// <summary>Managed allocation and the GC's own gen0 collections between two snapshots (the snapshot's forced ones excluded).</summary>
    private static string Managed(Snapshot from, Snapshot to, int images) =>
        $"allocated {Mib(to.AllocatedBytes - from.AllocatedBytes)} MiB managed " +
        $"({(images > 0 ? (to.AllocatedBytes - from.AllocatedBytes) / 1024.0 / images : 0).ToString("F0", CultureInfo.InvariantCulture)} KiB/image), " +
        $"{Math.Max(0, to.Gen0Collections - from.Gen0Collections - Snapshot.ForcedCollections)} gen0 GCs";

    private static string Growth(Snapshot from, Snapshot to) =>
        ((to.RssBytes - from.RssBytes) * 100.0 / from.RssBytes).ToString("+0.0;-0.0;0.0", CultureInfo.InvariantCulture) + "%";

    private static string Rate(int count, double seconds) =>
        (count == 0 || seconds <= 0 ? 0 : count / seconds).ToString("F1", CultureInfo.InvariantCulture);

    /// <summary>Process resources after a full, compacting GC (finalizers run, so released native handles are closed).</summary>
    /// <param name="RssBytes">VmRSS (Linux) or the working set.</param>
    /// <param name="AnonBytes">RssAnon: heap, stacks, the GC heap, JIT code; -1 off Linux.</param>
    /// <param name="FileBytes">RssFile: resident pages of mapped files (assemblies, native libraries); -1 off Linux.</param>
    /// <param name="ManagedBytes">Live managed bytes after the GC.</param>
    /// <param name="GcCommittedBytes">Memory the GC keeps committed (live objects plus free space it holds for reuse).</param>
    /// <param name="JitMethods">Methods compiled by the JIT so far (tier-0, tier-1 and OSR versions all count).</param>
    /// <param name="JitBytes">IL bytes compiled by the JIT so far.</param>
    private readonly record struct Snapshot(
        long RssBytes, long AnonBytes, long FileBytes, long ManagedBytes, long GcCommittedBytes, long JitMethods, long JitBytes, long AllocatedBytes, int Gen0Collections, int Handles, int Threads)
    {
        /// <summary>Collections <see cref="Take"/> itself forces (each counts in every generation).</summary>
        public const int ForcedCollections = 2;

        public static string Source => OperatingSystem.IsLinux()
            ? "linux (VmRSS = RssAnon + RssFile + RssShmem from /proc/self/status, handles = /proc/self/fd entries)"
            : "WorkingSet64 / HandleCount";

        public static Snapshot Take()
        {
            // Read before the collections below, so that they count only the program's own allocations and collections.
            long allocated = GC.GetTotalAllocatedBytes(precise: false);
            int gen0 = GC.CollectionCount(0);
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            using var process = Process.GetCurrentProcess();
            long managed = GC.GetTotalMemory(false);
            long committed = GC.GetGCMemoryInfo(GCKind.Any).TotalCommittedBytes;
            long jitMethods = System.Runtime.JitInfo.GetCompiledMethodCount(currentThread: false);
            long jitBytes = System.Runtime.JitInfo.GetCompiledILBytes(currentThread: false);
            if (OperatingSystem.IsLinux())
            {
                var status = ReadStatus("VmRSS:", "RssAnon:", "RssFile:");
                return new Snapshot(status[0], status[1], status[2], managed, committed, jitMethods, jitBytes, allocated, gen0,
                    Directory.GetFileSystemEntries("/proc/self/fd").Length, process.Threads.Count);
            }

            return new Snapshot(process.WorkingSet64, -1, -1, managed, committed, jitMethods, jitBytes, allocated, gen0, process.HandleCount, process.Threads.Count);
        }

        public override string ToString() =>
            $"VmRSS {Mib(RssBytes)} MiB (" +
            (AnonBytes >= 0 ? $"anon {Mib(AnonBytes)}, file {Mib(FileBytes)}; " : "") +
            $"managed heap {Mib(ManagedBytes)} MiB live, {Mib(GcCommittedBytes)} MiB committed; JIT {JitMethods} methods), " +
            $"handles {Handles}, threads {Threads}";

        /// <summary>VmRSS (Linux) or the working set now, without collecting first.</summary>
        public static long ReadRss()
        {
            if (OperatingSystem.IsLinux())
            {
                return ReadStatus("VmRSS:")[0];
            }

            using var process = Process.GetCurrentProcess();
            return process.WorkingSet64;
        }

        public static string Mib(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("F1", CultureInfo.InvariantCulture);

        /// <summary>The values (bytes) of the given kB lines of /proc/self/status, in order.</summary>
        private static long[] ReadStatus(params string[] keys)
        {
            var values = new long[keys.Length];
            Array.Fill(values, -1);
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                int k = Array.FindIndex(keys, key => line.StartsWith(key, StringComparison.Ordinal));
                if (k < 0)
                {
                    continue;
                }

                // "VmRSS:	  123456 kB"
                string[] parts = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length < 3 || !long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long kb) || parts[2] != "kB")
                {
                    throw new FormatException($"/proc/self/status: unexpected line '{line}'");
                }

                values[k] = kb * 1024;
            }

            int missing = Array.IndexOf(values, -1L);
            if (missing >= 0)
            {
                throw new FormatException($"/proc/self/status: no {keys[missing]} line");
            }

            return values;
        }
    }
}
