using System.Collections.Concurrent;
using CTCal.Contracts;
using CTCal.Host.Cli;

namespace CTCal.Host.Web;

/// <summary>
/// The web host's jobs by id. <see cref="Start"/> runs the work on the thread pool and turns its end into the job's
/// last event: <c>done</c>, <c>cancelled</c>, or <c>error</c> with what the plugin said.
/// </summary>
public sealed class JobRegistry
{
    private readonly ConcurrentDictionary<string, Job> _jobs = new();
    private readonly ConcurrentDictionary<string, int> _counters = new();

    /// <summary>The job with <paramref name="id"/>, or null.</summary>
    public Job? Find(string id) => _jobs.GetValueOrDefault(id);

    /// <summary>The jobs of one kind, oldest first.</summary>
    public IReadOnlyList<Job> OfKind(string kind) =>
        _jobs.Values.Where(j => j.Kind == kind).OrderBy(j => int.Parse(j.Id.AsSpan(j.Id.LastIndexOf('-') + 1), System.Globalization.CultureInfo.InvariantCulture)).ToList();

    /// <summary>Creates a job and runs <paramref name="work"/>; the data it returns is the <c>done</c> event's.</summary>
    public Job Start(string kind, object request, Func<Job, Task<object>> work)
    {
        var job = new Job($"{kind}-{_counters.AddOrUpdate(kind, 1, (_, n) => n + 1)}", kind, request);
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
}
