using System.Text.Json;

namespace CTCal.Host.Web;

/// <summary>State of a <see cref="Job"/>.</summary>
public enum JobState
{
    Running,
    Done,
    Failed,
    Cancelled,
}

/// <summary>One event of a job as the server-sent event stream carries it (<c>event: Type</c>, <c>data: Json</c>).</summary>
public sealed record JobEvent(string Type, string Json);

/// <summary>
/// A running generation, fine-tune or export: its events in order (every subscriber gets them all from the first, so a
/// page that opens the stream late misses nothing), its state, and the token that cancels it. Subscribers wait on a
/// task that the next event completes; nothing polls.
/// </summary>
public sealed class Job
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    private readonly List<JobEvent> _events = new();
    private readonly CancellationTokenSource _cancel = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Creates a running job.</summary>
    public Job(string id, string kind, object request)
    {
        Id = id;
        Kind = kind;
        Request = request;
    }

    /// <summary>Identifier in URLs.</summary>
    public string Id { get; }

    /// <summary><c>generate</c>, <c>finetune</c> or <c>export</c>.</summary>
    public string Kind { get; }

    /// <summary>What was asked for (shown by the pages, and reused to resume a fine-tune).</summary>
    public object Request { get; }

    /// <summary>Current state.</summary>
    public JobState State { get; private set; }

    /// <summary>The last error message, when failed.</summary>
    public string? Error { get; private set; }

    /// <summary>A value the job produced for later use (a fine-tune's checkpoint folder), or null.</summary>
    public object? Result { get; set; }

    /// <summary>Cancelled by <see cref="Cancel"/>.</summary>
    public CancellationToken Token => _cancel.Token;

    /// <summary>Asks the job to stop; its work sees <see cref="Token"/> cancelled.</summary>
    public void Cancel() => _cancel.Cancel();

    /// <summary>Appends an event (its data serialized as JSON) and wakes the subscribers.</summary>
    public void Publish(string type, object data) => Append(new JobEvent(type, JsonSerializer.Serialize(data, Json)), null, null);

    /// <summary>Appends the last event and sets the final state.</summary>
    public void Finish(JobState state, string type, object data, string? error = null) =>
        Append(new JobEvent(type, JsonSerializer.Serialize(data, Json)), state, error);

    private void Append(JobEvent e, JobState? final, string? error)
    {
        TaskCompletionSource changed;
        lock (_events)
        {
            if (State != JobState.Running)
            {
                return;
            }

            _events.Add(e);
            if (final is JobState s)
            {
                State = s;
                Error = error;
            }

            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.SetResult();
    }

    /// <summary>Every event from the first; ends after the final one, or when <paramref name="ct"/> is cancelled.</summary>
    public async IAsyncEnumerable<JobEvent> EventsAsync([System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        int next = 0;
        while (true)
        {
            JobEvent? e = null;
            Task wait;
            lock (_events)
            {
                if (next < _events.Count)
                {
                    e = _events[next++];
                }
                else if (State != JobState.Running)
                {
                    yield break;
                }

                wait = _changed.Task;
            }

            if (e is not null)
            {
                yield return e;
                continue;
            }

            await wait.WaitAsync(ct);
        }
    }
}
