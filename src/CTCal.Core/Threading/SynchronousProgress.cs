namespace CTCal.Core.Threading;

/// <summary>
/// An <see cref="IProgress{T}"/> that runs its callback on the reporting thread, before <see cref="Report"/> returns,
/// one report at a time (reports from several threads are serialized). <see cref="Progress{T}"/> instead posts each
/// report to the captured synchronization context or the thread pool, so reports arrive late, possibly out of order
/// and concurrently: wrong for a relay whose order matters, for a console that prints as it goes, and for tests that
/// assert on the reports once the call has returned.
/// </summary>
public sealed class SynchronousProgress<T> : IProgress<T>
{
    private readonly object _gate = new();
    private readonly Action<T> _report;

    public SynchronousProgress(Action<T> report)
    {
        ArgumentNullException.ThrowIfNull(report);
        _report = report;
    }

    public void Report(T value)
    {
        lock (_gate)
        {
            _report(value);
        }
    }
}
