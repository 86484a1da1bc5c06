using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using CTCal.Core.Diagnostics;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using CTCal.Trainer.Training;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Trainer.Tests;

/// <summary>
/// Kills the real <c>ctcal-train train</c> process 20 times during one run on the tiny-sd1 fixture, each time at a named
/// fault point (<see cref="FaultPoints"/>, armed through <c>CTCAL_FAULT_KILL</c> in the child's environment): after start-up,
/// with a checkpoint's temporary file written and flushed but not renamed, right after a step, in the middle of an AdamW
/// update, right after a checkpoint, and during the final writes (the attention autoencoder's and the LoRA's temporary files,
/// between those two files, and the rewrite of the last checkpoint). Every kill lands by construction; the test checks that it
/// did (exit 137 and the hook's line on stderr), then resumes with <c>--resume latest</c>. After every kill the newest
/// checkpoint is the expected step, loads completely, and no half-written file sits under a final name; at the end the
/// weights equal those of an uninterrupted run with the same seed within 1e-6. <c>CTCAL_TRAINER_KILL_SEED</c> changes the
/// seed that picks which hit of each point is killed (every seed lands every kill).
/// </summary>
public sealed partial class TrainerFaultInjectionTests(ITestOutputHelper output) : IDisposable
{
    private const int Steps = 24;
    private const int Kills = 20;
    private const int SigkillExitCode = 137;
    private const string MuxerFailure = "Could not execute because the specified command or file was not found";
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromMinutes(3);
    private readonly string _dir = TestPaths.NewTempDir("ctcal-kill");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [GeneratedRegex(@"^step-\d{7}\.safetensors$")]
    private static partial Regex CheckpointName();

    private const string CheckpointTemp = "safetensors.before-rename:step-*";
    private const string AutoencoderTemp = "safetensors.before-rename:attention_autoencoder.safetensors";
    private const string LoraTemp = "safetensors.before-rename:" + LoraFile.DefaultName;

    /// <summary>
    /// One kill: the point, which hit of it, and the step the newest checkpoint must be at afterwards given the step
    /// <paramref name="From"/> the start resumed from.
    /// </summary>
    private sealed record Kill(string Point, int Hit, long From)
    {
        public long ExpectedCheckpoint => Point switch
        {
            "train.started" => From,
            "train.after-checkpoint" => Math.Min(From + Hit, Steps),
            CheckpointTemp or "train.after-step" or "train.mid-optimizer-step" => From + Hit - 1,
            _ => Steps, // the final writes come after the last checkpoint
        };

        /// <summary>Kills that stop with a temporary file under the checkpoint folder or the output folder.</summary>
        public string? TempFolder => Point switch
        {
            CheckpointTemp => "checkpoints",
            AutoencoderTemp or LoraTemp => ".",
            _ => null,
        };
    }

    private string[] Arguments(string data, string outFolder, bool resume) =>
    [
        "train", "--model", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--data", data, "--out", outFolder,
        "--resolution", "16", "--batch-size", "1", "--lora-rank", "2", "--steps", Steps.ToString(CultureInfo.InvariantCulture),
        "--save-every", "1", "--lr", "1e-2", "--seed", "7", "--progress", "json", .. (resume ? new[] { "--resume", "latest" } : []),
    ];

    [Fact]
    public void KilledRunsResumeToTheWeightsOfAnUninterruptedRun()
    {
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

        // 15 kills during training (at most 15 steps of progress, so all land before step 24), then 5 during the final writes
        // (the first of those runs the remaining steps, then dies writing the autoencoder).
        string[] training = ["train.started", CheckpointTemp, "train.after-step", "train.mid-optimizer-step", "train.after-checkpoint"];
        string[] final = [AutoencoderTemp, "train.between-final-files", LoraTemp, CheckpointTemp, "train.started"];
        var random = new Random(seed);
        var plan = Enumerable.Range(0, 15).Select(i => (Point: training[i % training.Length], Hit: i % training.Length == 0 ? 1 : random.Next(1, 3)))
            .Concat(final.Select(p => (Point: p, Hit: 1))).ToList();
        Assert.Equal(Kills, plan.Count);

        string faulty = Path.Combine(_dir, "faulty");
        string checkpoints = Path.Combine(faulty, "checkpoints");
        foreach (var (point, hit) in plan)
        {
            var kill = new Kill(point, hit, LastStep(checkpoints));
            for (int launch = 1; ; launch++)
            {
                using var process = new TrainerProcess(Arguments(data, faulty, resume: kill.From > 0),
                    new Dictionary<string, string?> { [FaultPoints.Variable] = $"{point}#{hit}" });
                int code = process.WaitForExit(ProcessTimeout);
                // Once in a full-suite run (9 test assemblies at once on 2 cores) the dotnet host itself failed to start the
                // existing ctcal-train.dll ("Could not execute because the specified command or file was not found"): no code
                // of the trainer ran, so nothing of the run changed; that launch is repeated (at most twice) and reported.
                if (code != SigkillExitCode && launch <= 2 && process.Stderr.Contains(MuxerFailure, StringComparison.Ordinal))
                {
                    output.WriteLine($"launch {launch} for {point}#{hit}: the dotnet host did not start the trainer ({MuxerFailure}); launching again");
                    continue;
                }
                Assert.True(code == SigkillExitCode && process.Stderr.Contains($"fault injection: killed at '", StringComparison.Ordinal),
                    $"kill at {point}#{hit} from step {kill.From} did not land: exit {code}\n{process.Stderr}");
                break;
            }
            long newest = LastStep(checkpoints);
            string[] temps = kill.TempFolder is { } sub ? Directory.GetFiles(Path.Combine(faulty, sub), ".*.tmp") : [];
            output.WriteLine($"kill at {point}#{hit}: from step {kill.From}, newest checkpoint step {newest}, temporary files {temps.Length}");
            Assert.Equal(kill.ExpectedCheckpoint, newest);
            if (kill.TempFolder is not null) Assert.NotEmpty(temps); // the kill landed between the write and the rename
            AssertConsistent(faulty);
        }

        // Run to the end without interruption.
        using (var last = new TrainerProcess(Arguments(data, faulty, resume: true)))
        {
            int code = last.WaitForExit(ProcessTimeout);
            Assert.True(code == 0, $"final resume exited with {code}:\n{last.Stderr}");
        }
        AssertConsistent(faulty);
        Assert.Empty(Directory.GetFiles(checkpoints, ".*.tmp")); // stale temporary files are removed at start
        Assert.Empty(Directory.GetFiles(faulty, ".*.tmp"));

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
        output.WriteLine($"{Kills} kills over {Kills + 1} starts; uninterrupted run {straightTime.TotalSeconds:F1} s, total {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>
    /// The shared atomic-write helper (now in CTCal.Core) still reaches <c>atomic-file.before-rename:&lt;file&gt;</c> in the
    /// trainer: killed there, <c>train_config.json</c> is not in place and only its hidden temporary file is.
    /// </summary>
    [Fact]
    public void AKillBeforeAnAtomicRenameLeavesOnlyTheHiddenTemporaryFile()
    {
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        string outFolder = Path.Combine(_dir, "atomic");
        const string point = "atomic-file.before-rename:train_config.json";
        using (var process = new TrainerProcess(Arguments(data, outFolder, resume: false), new Dictionary<string, string?> { [FaultPoints.Variable] = point }))
        {
            int code = process.WaitForExit(ProcessTimeout);
            Assert.True(code == SigkillExitCode && process.Stderr.Contains($"fault injection: killed at '{point}'", StringComparison.Ordinal),
                $"kill at {point} did not land: exit {code}\n{process.Stderr}");
        }
        Assert.False(File.Exists(Path.Combine(outFolder, "train_config.json")));
        Assert.Single(Directory.GetFiles(outFolder, ".train_config.json.*.tmp"));
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
        if (!Directory.Exists(checkpoints)) return;
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
