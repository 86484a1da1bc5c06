using System.Globalization;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Training;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary><c>ctcal-train bench step</c> on the tiny SD fixture: it runs both modes and prints every figure as key=value.</summary>
public sealed class BenchStepCommandTests
{
    [Fact]
    public void BenchStepPrintsTimeAndMemoryOfBothModes()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var cli = new TrainerCli(DiffusersTrainableModel.Load, stdout, stderr);
        string model = Path.Combine(TestPaths.Fixtures, "tiny-sd1");
        int code = cli.Run(["bench", "step", "--model", model, "--resolution", "16", "--batch", "2", "--steps", "1", "--warmup", "1",
            "--compare", "--threads", "1", "--layers", "all"]);
        Assert.True(code == 0, stderr.ToString());

        var lines = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Dictionary<string, string> Fields(string line) => line.Split(' ').Select(f => f.Split('=', 2)).Where(p => p.Length == 2)
            .ToDictionary(p => p[0], p => p[1]);
        var header = Fields(lines.Single(l => l.StartsWith("bench=step", StringComparison.Ordinal)));
        Assert.Equal("16", header["resolution"]);
        Assert.Equal("2", header["batch"]);
        Assert.Equal("4", header["calibrated_layers"]);
        var state = Fields(lines.Single(l => l.StartsWith("weights_bytes=", StringComparison.Ordinal)));
        Assert.True(long.Parse(state["weights_bytes"], CultureInfo.InvariantCulture) > 1_000_000);
        Assert.True(long.Parse(state["lora_bytes"], CultureInfo.InvariantCulture) > 0);
        Assert.True(long.Parse(state["optimizer_state_bytes"], CultureInfo.InvariantCulture) > 0);
        Assert.True(long.Parse(state["cached_encodings_bytes"], CultureInfo.InvariantCulture) > 0);
        var rss = Fields(lines.Single(l => l.StartsWith("rss_start_bytes=", StringComparison.Ordinal)));
        long loaded = long.Parse(rss["rss_loaded_bytes"], CultureInfo.InvariantCulture);
        Assert.True(loaded > 0);
        foreach (string mode in new[] { "plain", "checkpointing" })
        {
            var m = Fields(lines.Single(l => l.StartsWith($"mode={mode} ", StringComparison.Ordinal)));
            Assert.True(double.Parse(m["seconds_per_step"], CultureInfo.InvariantCulture) > 0);
            long peak = long.Parse(m["peak_rss_bytes"], CultureInfo.InvariantCulture);
            long trainingState = new[] { "weights_bytes", "lora_bytes", "optimizer_state_bytes", "gradient_bytes" }.Sum(k => long.Parse(state[k], CultureInfo.InvariantCulture));
            Assert.Equal(peak - trainingState, long.Parse(m["activation_bytes"], CultureInfo.InvariantCulture)); // peak minus the resident training state
        }
        Assert.Single(lines, l => l.StartsWith("activation_ratio_checkpointing_over_plain=", StringComparison.Ordinal));
    }
}
