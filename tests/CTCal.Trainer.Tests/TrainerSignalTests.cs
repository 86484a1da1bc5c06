using System.Globalization;
using System.Text.Json;
using CTCal.Core.Diagnostics;
using CTCal.Tests;
using CTCal.Trainer.Training;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>
/// SIGTERM to the real <c>ctcal-train train</c> process in the middle of a step (docs/trainer.md: "Ctrl+C / SIGTERM finishes
/// the current step, writes a checkpoint and exits with 130"). The trainer is held at the fault point <c>train.mid-step</c>
/// of step 2 (<c>CTCAL_FAULT_PAUSE</c>: the gradients are in, the weights not yet updated) and released only by the signal,
/// so the signal lands mid-step every time; the test waits for the pause line on stderr, not for a time.
/// </summary>
public sealed class TrainerSignalTests : IDisposable
{
    private const int Cancelled = 130;
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromMinutes(3);
    private readonly string _dir = TestPaths.NewTempDir("ctcal-sigterm");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string[] Arguments(string data, string outFolder, int steps) =>
    [
        "train", "--model", Path.Combine(TestPaths.Fixtures, "tiny-sd1"), "--data", data, "--out", outFolder,
        "--resolution", "16", "--batch-size", "1", "--lora-rank", "2", "--steps", steps.ToString(CultureInfo.InvariantCulture),
        "--save-every", "0", "--lr", "1e-2", "--seed", "7", "--progress", "json",
    ];

    [SkippableFact]
    public void SigtermMidStepFinishesTheStepWritesACheckpointAndExitsWith130()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "SIGTERM is sent through libc's kill(), declared for Linux here");
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        string cancelled = Path.Combine(_dir, "cancelled");
        var events = new List<(string Name, JsonElement Body)>();
        int code;
        using (var process = new TrainerProcess(Arguments(data, cancelled, steps: 5),
                   new Dictionary<string, string?> { [FaultPoints.PauseVariable] = "train.mid-step#2" }))
        {
            process.EventReceived += (name, body) => { lock (events) events.Add((name, body)); };
            Assert.True(process.WaitForStderr("fault injection: paused at 'train.mid-step' (hit 2)", ProcessTimeout),
                $"the trainer ended without reaching the pause:\n{process.Stderr}");
            lock (events)
            {
                // Held inside step 2: step 1 is reported, step 2 is not.
                Assert.Equal([1L], events.Where(e => e.Name == "step").Select(e => e.Body.GetProperty("step").GetInt64()));
            }
            process.Terminate();
            code = process.WaitForExit(ProcessTimeout);
            Assert.True(code == Cancelled, $"exit {code}, expected {Cancelled}:\n{process.Stderr}");
        }

        // The step under way was finished (its event, and no later step), then one checkpoint of it was written.
        Assert.Equal([1L, 2L], events.Where(e => e.Name == "step").Select(e => e.Body.GetProperty("step").GetInt64()));
        Assert.False(events.Single(e => e.Name == "step" && e.Body.GetProperty("step").GetInt64() == 2).Body.GetProperty("skipped").GetBoolean());
        var checkpoint = Assert.Single(events, e => e.Name == "checkpoint").Body;
        Assert.Equal(2, checkpoint.GetProperty("step").GetInt64());
        var done = Assert.Single(events, e => e.Name == "done").Body;
        Assert.True(done.GetProperty("cancelled").GetBoolean());
        Assert.Equal(Cancelled, done.GetProperty("exit_code").GetInt32());
        Assert.Equal(2, done.GetProperty("steps").GetInt64());
        Assert.False(done.TryGetProperty("final_weights", out _), "a cancelled run reports no final weights");

        string expectedPath = Path.Combine(cancelled, "checkpoints", "step-0000002.safetensors");
        Assert.Equal(expectedPath, checkpoint.GetProperty("path").GetString());
        Assert.Equal([expectedPath], Directory.GetFiles(Path.Combine(cancelled, "checkpoints")));
        Assert.False(File.Exists(Path.Combine(cancelled, LoraFile.DefaultName)), "a cancelled run writes no final weights");

        // The checkpoint holds step 2 complete (update, optimizer moments, RNG): the same as a run of exactly 2 steps.
        string straight = Path.Combine(_dir, "straight");
        using (var process = new TrainerProcess(Arguments(data, straight, steps: 2)))
        {
            int straightCode = process.WaitForExit(ProcessTimeout);
            Assert.True(straightCode == 0, $"uninterrupted run exited with {straightCode}:\n{process.Stderr}");
        }
        var expected = TensorFile.Load(Path.Combine(straight, "checkpoints", "step-0000002.safetensors"));
        var actual = TensorFile.Load(expectedPath);
        try
        {
            Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
            foreach (var (name, tensor) in expected)
            {
                double difference = tensor.to_type(TorchSharp.torch.ScalarType.Float64).sub(actual[name].to_type(TorchSharp.torch.ScalarType.Float64)).abs().max().item<double>();
                Assert.True(difference <= 1e-6, $"'{name}' differs from the 2-step run by {difference}");
            }
        }
        finally
        {
            foreach (var t in expected.Values.Concat(actual.Values)) t.Dispose();
        }
    }
}
