using System.Diagnostics;
using CTCal.Contracts;
using CTCal.Core.Diagnostics;
using CTCal.Plugin.TrainerClient;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>
/// The sidecar protocol against a fake trainer: a small shell script that prints JSON progress lines, standing in
/// for <c>ctcal-train</c> (started directly, not through a shell command line).
/// </summary>
public sealed class TrainerSidecarTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, true);

    private string FakeTrainer(string body)
    {
        string path = Path.Combine(_dir, "fake-train");
        File.WriteAllText(path, "#!/bin/sh\n" + body.Replace("\r", ""));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        return path;
    }

    private sealed class ListProgress : IProgress<OperationProgress>
    {
        public List<OperationProgress> Items { get; } = new();

        public void Report(OperationProgress value)
        {
            lock (Items)
            {
                Items.Add(value);
            }
        }
    }

    [SkippableFact]
    public async Task RelaysEventsAndReturnsDone()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string trainer = FakeTrainer("""
            echo "args: $*" >&2
            echo '{"event":"start","time":"2026-01-01T00:00:00Z","total_steps":3,"start_step":0,"records":4,"method":"ctcal"}'
            echo 'not json, ignored'
            echo '{"event":"step","step":1,"total_steps":3,"loss":0.5,"lr":0.0001,"skipped":false}'
            echo '{"event":"message","level":"warn","text":"record 3 has no nouns"}'
            echo '{"event":"step","step":2,"total_steps":3,"loss":0.25}'
            echo '{"event":"validation","step":2,"path":"validation/step-0000002.png"}'
            echo '{"event":"checkpoint","step":3,"path":"checkpoints/step-0000003.safetensors"}'
            echo '{"event":"done","steps":3,"skipped_steps":0,"last_checkpoint":"checkpoints/step-0000003.safetensors","final_weights":"final","cancelled":false,"exit_code":0}'
            """);
        var log = new RecordingLog();
        var progress = new ListProgress();
        var args = CtcalFineTuner.BuildArguments("/tmp/jobs with space/job.json");
        var done = await new TrainerSidecar(trainer, log).RunAsync(args, progress, CancellationToken.None);

        Assert.Equal("final", done.Path);
        Assert.Equal(3, done.Step);
        Assert.Equal(new[] { "start", "step", "message", "step", "validation", "checkpoint", "done" }, progress.Items.Select(p => p.Stage));
        Assert.Equal("record 3 has no nouns", progress.Items[2].Message);
        Assert.False(progress.Items[^1].Metrics!.ContainsKey("exit_code"));
        Assert.Equal(0.5, progress.Items[1].Metrics!["loss"]);
        Assert.Equal(3, progress.Items[1].Total);
        Assert.Equal(2, progress.Items[3].Current);
        // The command line is the job file and nothing else; arguments arrive one by one (the space stays inside its argument).
        Assert.Contains(log.Entries, e => e.Message.Contains("args: train --config /tmp/jobs with space/job.json"));
        Assert.Equal(new[] { "train", "--config", "/tmp/jobs with space/job.json" }, args);
    }

    [SkippableFact]
    public async Task ShellMetacharactersInArgumentsArriveVerbatimAndRunNothing()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string received = Path.Combine(_dir, "received.txt");
        string pwned = Path.Combine(_dir, "pwned");
        string trainer = FakeTrainer($$"""
            printf '%s\n' "$@" > '{{received}}'
            echo '{"event":"done","steps":1,"final_weights":"final","cancelled":false}'
            """);
        string[] hostile = ["$(touch " + pwned + ")", "`touch " + pwned + "`", "; touch " + pwned, "a b", "'\"", "*", "x && touch " + pwned, "--out=/etc"];
        string[] args = ["train", "--config", .. hostile];
        await new TrainerSidecar(trainer, new RecordingLog()).RunAsync(args, new ListProgress(), CancellationToken.None);

        Assert.Equal(args, File.ReadAllLines(received));
        foreach (string argument in hostile) Assert.Contains(argument, File.ReadAllLines(received));
        Assert.False(File.Exists(pwned), "an argument was run by a shell");
    }

    [SkippableFact]
    public async Task ErrorEventBecomesFineTuneException()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string trainer = FakeTrainer("""
            echo '{"event":"start","totalSteps":10}'
            echo '{"event":"error","message":"CUDA out of memory"}'
            exit 3
            """);
        var ex = await Assert.ThrowsAsync<FineTuneException>(() => new TrainerSidecar(trainer, new RecordingLog()).RunAsync(new[] { "train" }, null, CancellationToken.None));
        Assert.Contains("CUDA out of memory", ex.Message);
        Assert.Null(TrainerErrorKinds.Of(ex)); // no kind given
        Assert.True(TrainerErrorKinds.MayPassOnRetry(ex));
    }

    /// <summary>The error event's kind travels on the exception, so a caller can tell a failure that would repeat from one that may not.</summary>
    [SkippableTheory]
    [InlineData("bad_input", false)]
    [InlineData("diverged", false)]
    [InlineData("error", true)]
    public async Task ErrorEventKindIsCarriedOnTheException(string kind, bool mayPassOnRetry)
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string trainer = FakeTrainer($$"""
            echo '{"event":"error","kind":"{{kind}}","message":"it failed","exitCode":2}'
            exit 2
            """);
        var ex = await Assert.ThrowsAsync<FineTuneException>(() => new TrainerSidecar(trainer, new RecordingLog()).RunAsync(new[] { "train" }, null, CancellationToken.None));
        Assert.Equal(kind, TrainerErrorKinds.Of(ex));
        Assert.Equal(mayPassOnRetry, TrainerErrorKinds.MayPassOnRetry(ex));
    }

    [SkippableFact]
    public async Task DoneButCancelledIsNotASuccess()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string trainer = FakeTrainer("""
            echo '{"event":"done","steps":7,"final_weights":null,"cancelled":true,"exit_code":130}'
            exit 130
            """);
        var ex = await Assert.ThrowsAsync<FineTuneException>(() => new TrainerSidecar(trainer, new RecordingLog()).RunAsync(new[] { "train" }, null, CancellationToken.None));
        Assert.Contains("130", ex.Message);
    }

    [SkippableFact]
    public async Task NonZeroExitWithoutEventsReportsStderr()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        string trainer = FakeTrainer("""
            echo 'model folder not found' >&2
            exit 2
            """);
        var ex = await Assert.ThrowsAsync<FineTuneException>(() => new TrainerSidecar(trainer, new RecordingLog()).RunAsync(new[] { "train" }, null, CancellationToken.None));
        Assert.Contains("code 2", ex.Message);
        Assert.Contains("model folder not found", ex.Message);
    }

    /// <summary>
    /// Cancelling kills the trainer and what it started. The grandchild is a <c>sleep</c> with a duration unique to this run,
    /// so it is found by its command line in /proc, never by a PID that another process may have reused. The cancel happens on
    /// the reader's own thread, inside the progress callback of the first step event (no thread pool hop, no clock).
    /// </summary>
    [SkippableFact]
    public async Task CancellationKillsTheProcessTree()
    {
        Skip.If(OperatingSystem.IsWindows(), "the stand-in trainer is a POSIX shell script");
        Skip.IfNot(Directory.Exists("/proc"), "needs /proc to find the grandchild");
        string marker = $"3600.{Random.Shared.Next(100_000, 999_999)}";
        string startedFile = Path.Combine(_dir, "child.started");
        string trainer = FakeTrainer($$"""
            sleep {{marker}} &
            echo started > '{{startedFile}}'
            echo '{"event":"start","total_steps":1000}'
            echo '{"event":"step","step":1,"loss":1.0}'
            wait
            """);
        using var cts = new CancellationTokenSource();
        var progress = new CancellingProgress(cts);
        // A trainer that is not killed sleeps an hour: the bound below only turns such a hang into a failure.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            new TrainerSidecar(trainer, new RecordingLog()).RunAsync(new[] { "train" }, progress, cts.Token).WaitAsync(TimeSpan.FromMinutes(2)));
        Assert.True(progress.CancelledAtStep, "the step event did not arrive before the cancel");
        Assert.True(File.Exists(startedFile), "the grandchild was never started");

        // SIGKILL is delivered asynchronously: wait (bounded) until no live process has the marker's command line.
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (SleepersWith(marker).Count > 0 && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Empty(SleepersWith(marker));
    }

    /// <summary>Synchronous progress (runs on the reporting thread) that cancels on the first step event.</summary>
    private sealed class CancellingProgress(CancellationTokenSource cts) : IProgress<OperationProgress>
    {
        public bool CancelledAtStep { get; private set; }

        public void Report(OperationProgress value)
        {
            if (value.Stage != "step" || CancelledAtStep) return;
            CancelledAtStep = true;
            cts.Cancel();
        }
    }

    /// <summary>PIDs of live (not zombie: a zombie's cmdline is empty) processes whose command line is <c>sleep marker</c>.</summary>
    private static List<int> SleepersWith(string marker)
    {
        var found = new List<int>();
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            try
            {
                string[] args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                if (args.Length == 2 && Path.GetFileName(args[0]) == "sleep" && args[1] == marker) found.Add(pid);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The process ended while being read.
            }
        }
        return found;
    }

    [Fact]
    public async Task MissingTrainerIsReported()
    {
        var ex = await Assert.ThrowsAsync<FineTuneException>(() => new TrainerSidecar(Path.Combine(_dir, "nope"), new RecordingLog()).RunAsync(new[] { "train" }, null, CancellationToken.None));
        Assert.Contains("nope", ex.Message);
    }

    [Fact]
    public void ParsesProtocolLines()
    {
        var evt = TrainerEvent.TryParse("""{"event":"checkpoint","step":5,"total_steps":9,"path":"c5","loss":0.1}""", out _);
        Assert.NotNull(evt);
        Assert.Equal(("checkpoint", 5L, 9L, "c5"), (evt!.Kind, evt.Step, evt.TotalSteps, evt.Path));
        Assert.Equal(0.1, evt.Metrics["loss"]);
        Assert.False(evt.Metrics.ContainsKey("step"));
        Assert.Null(TrainerEvent.TryParse("""{"event":"party"}""", out string? problem));
        Assert.Contains("party", problem);
        Assert.Null(TrainerEvent.TryParse("{broken", out _));
        var done = TrainerEvent.TryParse("""{"event":"done","steps":12,"final_weights":"/run/pytorch_lora_weights.safetensors","cancelled":false,"exit_code":0}""", out _)!;
        Assert.Equal((12L, "/run/pytorch_lora_weights.safetensors", false), (done.Step, done.Path, done.Cancelled));
    }
}
