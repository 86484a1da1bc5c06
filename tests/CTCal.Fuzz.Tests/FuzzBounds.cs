using CsCheck;
using System.Diagnostics;
using Xunit.Sdk;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// The fuzz property: running a parser on any input ends in a result or in one of its documented exception types,
/// within <see cref="TimeBound"/> and allocating at most <see cref="AllocationBound"/> bytes on its thread.
/// The iteration count comes from <c>CTCAL_FUZZ_ITERATIONS</c> (default <see cref="DefaultIterations"/>); the inputs from a
/// fixed seed set (<see cref="Run{T}"/>).
/// </summary>
internal static class FuzzBounds
{
    /// <summary>Iterations per fuzz property when CTCAL_FUZZ_ITERATIONS is not set (sized for CI: the project runs in well under a minute).</summary>
    public const int DefaultIterations = 250;

    /// <summary>
    /// Wall-clock limit for one parse (CTCAL_FUZZ_TIMEOUT_MS overrides; default 10 s). A hang detector, not a speed goal: a
    /// parse takes milliseconds on an idle machine, and a 2 s limit failed on a 2-core machine at load average 15+.
    /// </summary>
    public static readonly TimeSpan TimeBound = TimeSpan.FromMilliseconds(ReadPositive("CTCAL_FUZZ_TIMEOUT_MS", 10_000));

    /// <summary>Bytes one parse of an input under 1 MB may allocate on its thread.</summary>
    public const long AllocationBound = 64L << 20;

    /// <summary>Iterations of each fuzz property.</summary>
    public static readonly long Iterations = ReadPositive("CTCAL_FUZZ_ITERATIONS", DefaultIterations);

    /// <summary><see cref="Iterations"/> scaled for a costlier property (at least 1).</summary>
    public static long Scaled(double factor) => Math.Max(1, (long)(Iterations * factor));

    /// <summary>
    /// A seed to replay (the one a failure printed): CTCAL_FUZZ_SEED, or CsCheck's own CsCheck_Seed. When set, each property
    /// runs that one case.
    /// </summary>
    public static string? Seed =>
        Environment.GetEnvironmentVariable("CTCAL_FUZZ_SEED") is { Length: > 0 } s ? s
        : Environment.GetEnvironmentVariable("CsCheck_Seed") is { Length: > 0 } c ? c : null;

    /// <summary>
    /// CTCAL_FUZZ_RANDOM=1 explores with CsCheck's own time-seeded generator (a campaign); otherwise every run of the same
    /// commit tries the same fixed inputs: iteration i of every property uses the seed <c>PCG(stream 7, i + FixedBase)</c>,
    /// so a CI failure is a real, repeatable failure and never luck.
    /// </summary>
    public static readonly bool RandomExploration = Environment.GetEnvironmentVariable("CTCAL_FUZZ_RANDOM") == "1";

    /// <summary>First seed of the fixed set (CTCAL_FUZZ_BASE overrides, to try another fixed set).</summary>
    public static readonly ulong FixedBase = (ulong)ReadPositive("CTCAL_FUZZ_BASE", 20_261_206);

    /// <summary>The seed string of iteration <paramref name="i"/> of the fixed set.</summary>
    public static string FixedSeed(long i) => new PCG(7, FixedBase + (ulong)i).ToString();

    /// <summary>
    /// Runs <paramref name="assert"/> on <paramref name="iter"/> generated inputs, one thread: the fixed seed set by default,
    /// the one replayed <see cref="Seed"/> when set, or random inputs under <see cref="RandomExploration"/>. A failure is
    /// shrunk by CsCheck and reported with its seed (CsCheck_Seed = "..."), to replay with CTCAL_FUZZ_SEED.
    /// </summary>
    public static void Run<T>(this Gen<T> gen, Action<T> assert, long iter)
    {
        if (Seed is { } replay)
        {
            gen.Sample(assert, seed: replay, iter: 1, threads: 1);
            return;
        }
        if (RandomExploration)
        {
            gen.Sample(assert, iter: iter, threads: 1);
            return;
        }
        for (long i = 0; i < iter; i++) gen.Sample(assert, seed: FixedSeed(i), iter: 1, threads: 1);
    }

    public static void Run<T1, T2>(this Gen<(T1, T2)> gen, Action<T1, T2> assert, long iter) =>
        gen.Run(t => assert(t.Item1, t.Item2), iter);

    public static void Run<T1, T2, T3>(this Gen<(T1, T2, T3)> gen, Action<T1, T2, T3> assert, long iter) =>
        gen.Run(t => assert(t.Item1, t.Item2, t.Item3), iter);

    public static void Run<T1, T2, T3, T4>(this Gen<(T1, T2, T3, T4)> gen, Action<T1, T2, T3, T4> assert, long iter) =>
        gen.Run(t => assert(t.Item1, t.Item2, t.Item3, t.Item4), iter);

    public static void Run<T1, T2, T3, T4, T5>(this Gen<(T1, T2, T3, T4, T5)> gen, Action<T1, T2, T3, T4, T5> assert, long iter) =>
        gen.Run(t => assert(t.Item1, t.Item2, t.Item3, t.Item4, t.Item5), iter);

    private static long ReadPositive(string name, long fallback)
    {
        string? text = Environment.GetEnvironmentVariable(name);
        if (string.IsNullOrWhiteSpace(text)) return fallback;
        if (!long.TryParse(text, out long value) || value <= 0)
            throw new InvalidOperationException($"{name}='{text}' must be a positive integer");
        return value;
    }

    /// <summary>
    /// Runs <paramref name="parse"/> on a worker thread and checks the property. Returns the result, or default when it
    /// threw one of <paramref name="documented"/>; fails the test (naming <paramref name="input"/>) on any other
    /// exception, on a run longer than <see cref="TimeBound"/>, or on more than <paramref name="allocationBound"/> bytes.
    /// </summary>
    public static Outcome<T> Check<T>(Func<T> parse, string input, Type[] documented, long allocationBound = AllocationBound)
    {
        long allocated = 0;
        var stopwatch = Stopwatch.StartNew();
        var task = Task.Factory.StartNew(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                return parse();
            }
            finally
            {
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }
        }, CancellationToken.None, TaskCreationOptions.DenyChildAttach | TaskCreationOptions.LongRunning, TaskScheduler.Default); // its own thread: the time bound never counts a wait for a pool thread

        bool finished;
        try
        {
            finished = task.Wait(TimeBound);
        }
        catch (AggregateException)
        {
            finished = true; // faulted: inspected below
        }
        if (!finished && !task.IsCompleted)
            throw new XunitException($"parse did not finish within {TimeBound.TotalMilliseconds} ms (hang or super-linear work) on {input}");
        stopwatch.Stop();
        if (allocated > allocationBound)
            throw new XunitException($"parse allocated {allocated:N0} bytes (bound {allocationBound:N0}) on {input}");
        if (task.IsFaulted)
        {
            var e = task.Exception!.InnerException!;
            if (!documented.Any(t => t.IsInstanceOfType(e)))
                throw new XunitException($"undocumented {e.GetType().FullName}: {e.Message} on {input}{Environment.NewLine}{e.StackTrace}");
            if (string.IsNullOrWhiteSpace(e.Message))
                throw new XunitException($"{e.GetType().Name} without a message on {input}");
            return new Outcome<T>(default, e, stopwatch.Elapsed, allocated);
        }
        return new Outcome<T>(task.Result, null, stopwatch.Elapsed, allocated);
    }

    /// <summary>A short, printable description of bytes for failure messages.</summary>
    public static string Describe(byte[] bytes, int max = 160)
    {
        string hex = Convert.ToHexString(bytes.AsSpan(0, Math.Min(bytes.Length, max)));
        return $"{bytes.Length} bytes [{hex}{(bytes.Length > max ? "..." : "")}]";
    }

    /// <summary>A short, printable description of text for failure messages (escapes control and non-ASCII characters).</summary>
    public static string Describe(string text, int max = 300)
    {
        var sb = new System.Text.StringBuilder();
        foreach (char c in text.AsSpan(0, Math.Min(text.Length, max)))
            sb.Append(c is >= ' ' and < (char)0x7f ? c.ToString() : $"\\u{(int)c:x4}");
        return $"{text.Length} chars \"{sb}{(text.Length > max ? "..." : "")}\"";
    }
}

/// <summary>What one bounded parse produced: a value or a documented exception, and what it cost.</summary>
internal readonly record struct Outcome<T>(T? Value, Exception? Error, TimeSpan Elapsed, long AllocatedBytes)
{
    public bool Succeeded => Error is null;
}
