using CTCal.Host.Web;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// The web host's job registry keeps the newest finished jobs of each kind and forgets older ones when a new job starts,
/// so a server that runs for days does not hold every job's events; running jobs are never forgotten.
/// </summary>
public sealed class JobRegistryTests
{
    [Fact]
    public async Task OnlyTheNewestFinishedJobsOfAKindAreKeptAndRunningOnesNeverForgotten()
    {
        var registry = new JobRegistry(finishedKept: 3);
        var hold = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
        var running = registry.Start("finetune", "r", _ => hold.Task);
        var other = registry.Start("export", "e", _ => Task.FromResult<object>("x"));
        await Finished(other);
        for (int i = 0; i < 5; i++)
        {
            await Finished(registry.Start("finetune", i, _ => Task.FromResult<object>(i)));
        }

        var last = registry.Start("finetune", "last", _ => Task.FromResult<object>("y"));
        await Finished(last);

        // when "last" started, finetune-2 .. finetune-6 were finished: the newest 3 stay, and the running finetune-1
        Assert.Equal(["finetune-1", "finetune-4", "finetune-5", "finetune-6", "finetune-7"], registry.OfKind("finetune").Select(j => j.Id));
        Assert.Null(registry.Find("finetune-2"));
        Assert.Same(running, registry.Find("finetune-1"));
        Assert.Same(other, registry.Find("export-1")); // other kinds keep their own count
        hold.SetResult("done");
        await Finished(running);
    }

    /// <summary>Waits for the job's last event (its event stream ends after it), without a time limit.</summary>
    private static async Task Finished(Job job)
    {
        await foreach (var _ in job.EventsAsync(CancellationToken.None))
        {
        }

        Assert.Equal(JobState.Done, job.State);
    }
}
