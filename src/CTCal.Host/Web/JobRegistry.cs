using System.Collections.Concurrent;
using CTCal.Contracts;
using CTCal.Host.Cli;

namespace CTCal.Host.Web;

/// <summary>
/// The web host's jobs by id. <see cref="Start"/> runs the work on the thread pool and turns its end into the job's
/// last event: <c>done</c>, <c>cancelled</c>, or <c>error</c> with what the plugin said. A server runs for days, so only
/// the newest <see cref="FinishedKept"/> finished jobs of each kind are kept (with their events); older ones are
/// forgotten when a new job of that kind starts (their images stay in the gallery, their checkpoints on disk). Running
/// jobs are never forgotten.
/// </summary>
public sealed class JobRegistry
{
    /// <summary>Finished jobs kept per kind.</summary>
    public const int FinishedKept = 50;

    private readonly ConcurrentDictionary<string, Job> _jobs = new();
    private readonly ConcurrentDictionary<string, int> _counters = new();
    private readonly int _finishedKept;

    /// <param name="finishedKept">Finished jobs kept per kind (<see cref="FinishedKept"/>).</param>
    public JobRegistry(int finishedKept = FinishedKept)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(finishedKept, 0);
        _finishedKept = finishedKept;
    }

    /// <summary>The job with <paramref name="id"/>, or null.</summary>
    public Job? Find(string id) => _jobs.GetValueOrDefault(id);

    /// <summary>The jobs of one kind, oldest first.</summary>
    public IReadOnlyList<Job> OfKind(string kind) =>
        _jobs.Values.Where(j => j.Kind == kind).OrderBy(Number).ToList();

    /// <summary>Creates a job and runs <paramref name="work"/>; the data it returns is the <c>done</c> event's.</summary>
    public Job Start(string kind, object request, Func<Job, Task<object>> work)
    {
        var job = new Job($"{kind}-{_counters.AddOrUpdate(kind, 1, (_, n) => n + 1)}", kind, request);
        ForgetOldFinished(kind);
        _jobs[job.Id] = job;
        _ = Task.Run(async () =>
        {
            try
            {
                object done = await work(job);
                job.Finish(JobState.Done, "done", done);
            }
            catch (OperationCanceledException)
            {
                job.Finish(JobState.Cancelled, "cancelled", new { message = "cancelled" });
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // What the plugin said, as the CLI prints it; the stack trace goes to the log only.
                string message = ex is ArgumentException or InvalidOperationException or FineTuneException or GenerationOutOfMemoryException or IOException
                    ? ex.Message
                    : $"{ex.GetType().Name}: {ex.Message}";
                NLog.LogManager.GetLogger("ctcal-host").Error(ex, "Job {0} failed", job.Id);
                job.Finish(JobState.Failed, "error", new { message, plugin = (ex as PluginCallException)?.PluginId }, message);
            }
        });
        return job;
    }

    private static int Number(Job job) => int.Parse(job.Id.AsSpan(job.Id.LastIndexOf('-') + 1), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Forgets all but the newest <c>finishedKept</c> finished jobs of <paramref name="kind"/>.</summary>
    private void ForgetOldFinished(string kind)
    {
        var finished = OfKind(kind).Where(j => j.State != JobState.Running).ToList();
        foreach (var old in finished.Take(Math.Max(0, finished.Count - _finishedKept)))
        {
            _jobs.TryRemove(old.Id, out _);
        }
    }
}
