using CTCal.Core.Threading;
using Xunit;

namespace CTCal.Core.Tests;

public sealed class SynchronousProgressTests
{
    [Fact]
    public void ReportsOnTheCallersThreadBeforeReturningInOrder()
    {
        var seen = new List<(int Value, int Thread)>();
        var progress = new SynchronousProgress<int>(v => seen.Add((v, Environment.CurrentManagedThreadId)));
        for (int i = 0; i < 5; i++)
        {
            progress.Report(i);
            Assert.Equal(i + 1, seen.Count); // already delivered
        }

        Assert.Equal(new[] { 0, 1, 2, 3, 4 }, seen.Select(s => s.Value));
        Assert.All(seen, s => Assert.Equal(Environment.CurrentManagedThreadId, s.Thread));
    }

    [Fact]
    public void ReportsFromSeveralThreadsAreNeverConcurrent()
    {
        int inside = 0, overlaps = 0, count = 0;
        var progress = new SynchronousProgress<int>(_ =>
        {
            if (Interlocked.Increment(ref inside) > 1) Interlocked.Increment(ref overlaps);
            Thread.SpinWait(200);
            count++; // unsynchronized on purpose: only correct when calls never overlap
            Interlocked.Decrement(ref inside);
        });
        Parallel.For(0, 2000, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => progress.Report(i));
        Assert.Equal(0, overlaps);
        Assert.Equal(2000, count);
    }
}
