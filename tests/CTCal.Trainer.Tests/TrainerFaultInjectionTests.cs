using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using CTCal.Trainer.Training;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Trainer.Tests;

/// <summary>
/// Kills the real <c>ctcal-train train</c> process (SIGKILL, whole process tree) at many points of a run on the tiny-sd1
/// fixture: while a checkpoint's temporary file is being written, right after a step, right after a checkpoint, and at
/// seeded random delays after launch (start-up included) and after the start event; then resumes with <c>--resume latest</c> until done. After every kill the
/// newest checkpoint must load completely and no half-written file may sit under a final name; the final weights must
/// equal those of an uninterrupted run with the same seed.
/// <c>CTCAL_TRAINER_KILLS</c> sets the number of kills (default 20), <c>CTCAL_TRAINER_KILL_SEED</c> the seed of the kill schedule.
/// </summary>
public sealed partial class TrainerFaultInjectionTests(ITestOutputHelper output) : IDisposable
{
    private const int Steps = 24;
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromMinutes(3);
    private readonly string _dir = TestPaths.NewTempDir("ctcal-kill");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [GeneratedRegex(@"^step-\d{7}\.safetensors$")]
    private static partial Regex CheckpointName();

    private enum KillPoint { CheckpointTempFile, AfterStep, AfterCheckpoint, DelayAfterStartEvent, DelayAfterLaunch }

    private string[] Arguments(string data, string outFolder, bool resume) =>
    [
        "train", "--model", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--data", data, "--out", outFolder,
        "--resolution", "16", "--batch-size", "1", "--lora-rank", "2", "--steps", Steps.ToString(CultureInfo.InvariantCulture),
        "--save-every", "1", "--lr", "1e-2", "--seed", "7", "--progress", "json", .. (resume ? new[] { "--resume", "latest" } : []),
    ];

    [Fact]
    public void KilledRunsResumeToTheWeightsOfAnUninterruptedRun()
    {
        int kills = int.Parse(Environment.GetEnvironmentVariable("CTCAL_TRAINER_KILLS") ?? "20", CultureInfo.InvariantCulture);
        int seed = int.Parse(Environment.GetEnvironmentVariable("CTCAL_TRAINER_KILL_SEED") ?? "20261126", CultureInfo.InvariantCulture);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);

        string straight = Path.Combine(_dir, "straight");
        using (var run = new TrainerProcess(Arguments(data, straight, resume: false)))
        {
            int code = run.WaitForExit(ProcessTimeout);
            Assert.True(code == 0, $"uninterrupted run exited with {code}:\n{run.Stderr}");
        }
        var straightTime = clock.Elapsed;

        string faulty = Path.Combine(_dir, "faulty");
        string checkpoints = Path.Combine(faulty, "checkpoints");
        Directory.CreateDirectory(checkpoints);
        var random = new Random(seed);
        var landed = new Dictionary<string, int>();
        int starts = 0, killed = 0, tempFilesLeft = 0;
        bool finished = false;
        while (killed < kills)
        {
            var point = (KillPoint)(killed % 5);
            int nth = random.Next(1, 3);
            int delayMs = point == KillPoint.DelayAfterLaunch ? random.Next(100, 2500) : random.Next(0, 700);
            if (LastStep(checkpoints) >= Steps)
            {
                // No steps left: a resumed run only rewrites the last checkpoint and the final weights; kill during those.
                if (point == KillPoint.AfterStep) point = KillPoint.CheckpointTempFile;
                nth = 1;
            }
            var outcome = StartAndKill(data, faulty, point, nth, delayMs);
            starts++;
            if (outcome.Killed)
            {
                killed++;
                string where = $"{point} (last event: {outcome.LastEvent})";
                landed[where] = landed.GetValueOrDefault(where) + 1;
                string[] temps = Directory.GetFiles(checkpoints, ".*.tmp");
                if (temps.Length > 0) tempFilesLeft++;
                output.WriteLine($"kill {killed}: {point} #{nth} / {delayMs} ms, last event '{outcome.LastEvent}', newest checkpoint step {LastStep(checkpoints)}, temp files {temps.Length}");
            }
            else
            {
                Assert.True(outcome.ExitCode == 0, $"start {starts} exited with {outcome.ExitCode} before the kill:\n{outcome.Stderr}");
                finished = true;
                output.WriteLine($"start {starts}: finished before the {point} kill point");
            }
            AssertConsistent(faulty);
        }

        // Run to the end without interruption.
        using (var last = new TrainerProcess(Arguments(data, faulty, resume: LastStep(checkpoints) > 0)))
        {
            int code = last.WaitForExit(ProcessTimeout);
            Assert.True(code == 0, $"final resume exited with {code}:\n{last.Stderr}");
            starts++;
        }
        AssertConsistent(faulty);
        Assert.Empty(Directory.GetFiles(checkpoints, ".*.tmp")); // stale temporary files are removed at start

        foreach (string file in new[] { LoraFile.DefaultName, "attention_autoencoder.safetensors" })
        {
            var expected = TensorFile.Load(Path.Combine(straight, file));
            var actual = TensorFile.Load(Path.Combine(faulty, file));
            Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
            foreach (var (name, tensor) in expected)
            {
                double difference = tensor.sub(actual[name]).abs().max().item<float>();
                Assert.True(difference <= 1e-6, $"{file}: '{name}' differs from the uninterrupted run by {difference}");
            }
            foreach (var t in expected.Values.Concat(actual.Values)) t.Dispose();
        }

        output.WriteLine($"{killed} kills over {starts} starts ({(finished ? "training finished before the last kills, which hit the final writes" : "all during training")}); " +
            $"kills that left a temporary checkpoint file: {tempFilesLeft}; uninterrupted run {straightTime.TotalSeconds:F1} s, total {clock.Elapsed.TotalSeconds:F1} s");
        foreach (var (where, count) in landed.OrderBy(kv => kv.Key, StringComparer.Ordinal)) output.WriteLine($"  {count} x {where}");
        Assert.True(tempFilesLeft > 0 || kills < 8, "no kill landed while a checkpoint was being written");
    }

    private sealed record Outcome(bool Killed, int ExitCode, string LastEvent, string Stderr);

    private Outcome StartAndKill(string data, string outFolder, KillPoint point, int nth, int delayMs)
    {
        string checkpoints = Path.Combine(outFolder, "checkpoints");
        bool resume = LastStep(checkpoints) > 0;
        int killRequested = 0;
        string lastEvent = "none";
        TrainerProcess? process = null;
        void KillNow()
        {
            if (Interlocked.Exchange(ref killRequested, 1) == 0) process!.Kill();
        }

        using var watcher = new FileSystemWatcher(checkpoints) { Filter = ".step-*.tmp" };
        int temps = 0;
        watcher.Created += (_, _) =>
        {
            if (point == KillPoint.CheckpointTempFile && Interlocked.Increment(ref temps) == nth) KillNow();
        };
        watcher.EnableRaisingEvents = true;

        int stepEvents = 0, checkpointEvents = 0;
        process = new TrainerProcess(Arguments(data, outFolder, resume));
        using var _ = process;
        process.EventReceived += (name, e) =>
        {
            lastEvent = name == "step" || name == "checkpoint" ? $"{name} {e.GetProperty("step").GetInt64()}" : name;
            if (point == KillPoint.AfterStep && name == "step" && ++stepEvents == nth) KillNow();
            if (point == KillPoint.AfterCheckpoint && name == "checkpoint" && ++checkpointEvents == nth) KillNow();
        };
        Timer? timer = point == KillPoint.DelayAfterLaunch ? new Timer(_ => KillNow(), null, delayMs, Timeout.Infinite) : null;
        process.EventReceived += (name, _) =>
        {
            if (point == KillPoint.DelayAfterStartEvent && name == "start") timer = new Timer(_ => KillNow(), null, delayMs, Timeout.Infinite);
        };
        int code = process.WaitForExit(ProcessTimeout);
        timer?.Dispose();
        return new Outcome(Volatile.Read(ref killRequested) == 1 && code != 0, code, lastEvent, process.Stderr);
    }

    private static long LastStep(string checkpoints)
    {
        string? latest = TrainingRun.LatestCheckpoint(Path.GetDirectoryName(checkpoints)!);
        return latest is null ? 0 : long.Parse(Path.GetFileNameWithoutExtension(latest)["step-".Length..], CultureInfo.InvariantCulture);
    }

    /// <summary>Every file under a final name is complete; the newest checkpoint is a real one and loads in full.</summary>
    private static void AssertConsistent(string outFolder)
    {
        string checkpoints = Path.Combine(outFolder, "checkpoints");
        foreach (string file in Directory.GetFiles(checkpoints))
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith('.') && name.EndsWith(".tmp", StringComparison.Ordinal)) continue; // a temporary file: never read
            Assert.Matches(CheckpointName(), name);
            var tensors = TensorFile.Load(file, out var metadata);
            try
            {
                Assert.Contains(tensors.Keys, k => k.StartsWith("adamw.", StringComparison.Ordinal));
                Assert.Contains("rng.torch", tensors.Keys);
                using var state = JsonDocument.Parse(metadata["ctcal.state"]);
                Assert.Equal(long.Parse(name[5..12], CultureInfo.InvariantCulture), state.RootElement.GetProperty("Step").GetInt64());
            }
            finally
            {
                foreach (var t in tensors.Values) t.Dispose();
            }
        }
        string? latest = TrainingRun.LatestCheckpoint(outFolder);
        if (latest is not null) Assert.Matches(CheckpointName(), Path.GetFileName(latest));
        foreach (string file in new[] { LoraFile.DefaultName, "attention_autoencoder.safetensors" }.Select(f => Path.Combine(outFolder, f)).Where(File.Exists))
        {
            using var complete = SafetensorsFile.Open(file);
            foreach (var info in complete.Tensors) _ = complete.ReadAsFloat32(info.Name);
        }
        string config = Path.Combine(outFolder, "train_config.json");
        if (File.Exists(config)) JsonDocument.Parse(File.ReadAllText(config)).Dispose();
    }
}
