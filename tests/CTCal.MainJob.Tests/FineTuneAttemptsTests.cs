using CTCal.Contracts;
using CTCal.Core.Diagnostics;
using CTCal.Tests;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>
/// <see cref="FineTuneStage.WithAttemptsAsync"/>: a fine-tune that fails the way the sporadic libtorch crash does (no
/// error kind, or an unexpected error) is run again up to <see cref="FineTuneStage.MaxAttempts"/> times; one the trainer
/// reports as repeating (bad input, divergence) fails at once instead of costing the same minutes again.
/// </summary>
public sealed class FineTuneAttemptsTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-attempts");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(null, FineTuneStage.MaxAttempts)]
    [InlineData(TrainerErrorKinds.Error, FineTuneStage.MaxAttempts)]
    [InlineData(TrainerErrorKinds.BadInput, 1)]
    [InlineData(TrainerErrorKinds.Diverged, 1)]
    [InlineData(TrainerErrorKinds.OutputNotWritable, 1)]
    public async Task OnlyFailuresThatMayNotRepeatAreRunAgain(string? kind, int expectedRuns)
    {
        string output = Path.Combine(_dir, "runs", "job");
        int runs = 0;
        var e = await Assert.ThrowsAsync<FineTuneException>(() => FineTuneStage.WithAttemptsAsync<int>("job", output, _ =>
        {
            runs++;
            Directory.CreateDirectory(output);
            File.WriteAllText(Path.Combine(output, "train.log"), $"run {runs}");
            var failure = new FineTuneException("Trainer reported an error: it failed");
            if (kind is not null)
            {
                failure.Data[TrainerErrorKinds.DataKey] = kind;
            }

            throw failure;
        }, CancellationToken.None));

        Assert.Equal(expectedRuns, runs);
        Assert.StartsWith($"fine-tune job failed (log: {Path.Combine(output, "train.log")}): Trainer reported an error: it failed", e.Message);
        // every run but the last keeps its log beside the folder
        Assert.Equal(expectedRuns - 1, Directory.GetFiles(Path.Combine(_dir, "runs"), "job.attempt*.train.log").Length);
    }

    [Fact]
    public async Task AnAttemptThatSucceedsEndsTheRetries()
    {
        int runs = 0;
        int result = await FineTuneStage.WithAttemptsAsync("job", Path.Combine(_dir, "job"), n =>
        {
            runs++;
            return n < 2 ? throw new FineTuneException("Trainer exited with code 134") : Task.FromResult(n);
        }, CancellationToken.None);
        Assert.Equal(2, result);
        Assert.Equal(2, runs);
    }
}
