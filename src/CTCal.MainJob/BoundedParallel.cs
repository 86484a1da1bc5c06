namespace CTCal.MainJob;

/// <summary>Runs work items a bounded number at a time, the first failure cancelling the rest.</summary>
internal static class BoundedParallel
{
    /// <summary>
    /// Runs <paramref name="body"/> for every item, at most <paramref name="parallel"/> at a time, and returns the results
    /// in item order. The first failure cancels the items still running or waiting and is rethrown itself (not the
    /// cancellations it caused); a cancellation of <paramref name="ct"/> is rethrown as such.
    /// </summary>
    public static async Task<IReadOnlyList<TResult>> RunAsync<TItem, TResult>(
        IReadOnlyList<TItem> items, int parallel, Func<TItem, CancellationToken, Task<TResult>> body, CancellationToken ct)
    {
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var gate = new SemaphoreSlim(parallel);
        var tasks = items.Select(async item =>
        {
            await gate.WaitAsync(failed.Token);
            try
            {
                return await body(item, failed.Token);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                failed.Cancel();
                throw;
            }
            finally
            {
                gate.Release();
            }
        }).ToList();
        try
        {
            return await Task.WhenAll(tasks);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // Another item failed and cancelled this one: report the failure, not the cancellation.
            var failure = tasks.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!).FirstOrDefault();
            if (failure is not null)
            {
                throw failure;
            }

            throw;
        }
    }
}
