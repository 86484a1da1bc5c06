using System.Text.Json;
using CTCal.Core.Probes;
using CTCal.Synthetic;
using CTCal.Tests;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Training;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>The premise probe: the mass measure alone, and <c>ctcal-train probe</c> on the shipped base model.</summary>
public sealed class PremiseProbeTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-probe");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void MapOnTheMaskHasMassOneAndAUniformMapHasChance()
    {
        float[] mask = new float[64];
        for (int y = 2; y < 5; y++) for (int x = 1; x < 4; x++) mask[y * 8 + x] = 1f;
        mask[0] = 0.5f; // an edge pixel of an area-averaged mask
        var onMask = mask.Select(m => m * 0.3f).ToArray();
        var (mass, chance) = PremiseProbe.MassInside(onMask, mask);
        double area = mask.Sum() / 64.0;
        Assert.Equal(area, chance, 12);
        // Inside = sum(map * mask) / sum(map): 1 for a map that is the binary mask; the half pixel counts half.
        Assert.Equal((9 * 0.3 + 0.15 * 0.5) / (9 * 0.3 + 0.15), mass, 6);
        float[] binary = mask.Select(m => m == 1f ? 1f : 0f).ToArray();
        Assert.Equal(1.0, PremiseProbe.MassInside(binary, binary).Mass, 12);
        var (uniformMass, uniformChance) = PremiseProbe.MassInside(Enumerable.Repeat(1f / 64, 64).ToArray(), mask);
        Assert.Equal(uniformChance, uniformMass, 6);
        float[] outside = mask.Select(m => m == 0f ? 1f : 0f).ToArray();
        Assert.Equal(0.0, PremiseProbe.MassInside(outside, mask).Mass, 12);
        Assert.True(double.IsNaN(PremiseProbe.MassInside(new float[64], mask).Mass));
        Assert.Throws<ArgumentException>(() => PremiseProbe.MassInside(new float[63], mask));
    }

    [Fact]
    public void ProbeOfTheBaseModelWritesFiniteNumbersForEveryTimestepAndLayer()
    {
        string model = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        string data = Path.Combine(_dir, "data");
        DatasetWriter.WriteDataset(SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 2, TrainCount = 3 }), data, withMasks: true);
        string output = Path.Combine(_dir, "probe");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var cli = new TrainerCli(DiffusersTrainableModel.Load, stdout, stderr);
        int code = cli.Run(["probe", "--model", model, "--data", data, "--out", output, "--records", "3", "--resolution", "64", "--timesteps", "0", "500", "900"]);
        Assert.True(code == 0, stderr.ToString());
        Assert.Contains("premise", stdout.ToString());

        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, PremiseProbeResult.JsonFileName)));
        var root = json.RootElement;
        Assert.Equal(3, root.GetProperty("records").GetInt32());
        using var loaded = DiffusersTrainableModel.Load(model);
        var layers = loaded.CrossAttentionLayers.Select(l => l.Path).ToList();
        var rows = root.GetProperty("per_layer").EnumerateArray().ToList();
        Assert.Equal(3 * layers.Count, rows.Count);
        foreach (int t in new[] { 0, 500, 900 })
        {
            foreach (string layer in layers)
            {
                var row = Assert.Single(rows, r => r.GetProperty("t").GetInt32() == t && r.GetProperty("layer").GetString() == layer);
                Assert.True(row.GetProperty("count").GetInt32() > 0);
                foreach (string key in new[] { "mass", "chance", "ratio" })
                {
                    double v = row.GetProperty(key).GetDouble();
                    Assert.True(double.IsFinite(v) && v >= 0, $"{key} {v} at t={t} {layer}");
                }
                Assert.InRange(row.GetProperty("mass").GetDouble(), 0, 1);
            }
        }
        Assert.Equal(3 * 2, root.GetProperty("per_resolution").GetArrayLength()); // 16x16 and 8x8 maps
        Assert.NotEmpty(root.GetProperty("verdicts").EnumerateArray());
        string md = File.ReadAllText(Path.Combine(output, PremiseProbeResult.MarkdownFileName));
        Assert.Contains("| t | resolution | mass | chance | mass/chance | n |", md);
        Assert.Contains("## Verdicts", md);
    }

    [Fact]
    public void ProbeRefusesAnOutputInsideTheDataAndADatasetWithoutMasks()
    {
        string model = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        string data = Path.Combine(_dir, "data");
        DatasetWriter.WriteDataset(SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 2, TrainCount = 2 }), data);
        var stderr = new StringWriter();
        var cli = new TrainerCli(DiffusersTrainableModel.Load, new StringWriter(), stderr);
        Assert.Equal(ExitCodes.BadInput, cli.Run(["probe", "--model", model, "--data", data, "--out", Path.Combine(data, "probe"), "--resolution", "64"]));
        Assert.Contains("must not be, contain or lie inside --data", stderr.ToString());
        Assert.False(Directory.Exists(Path.Combine(data, "probe")));
        stderr.GetStringBuilder().Clear();
        string output = Path.Combine(_dir, "probe");
        Assert.Equal(ExitCodes.BadInput, cli.Run(["probe", "--model", model, "--data", data, "--out", output, "--resolution", "64"]));
        Assert.Contains("no record carries subject masks", stderr.ToString());
        Assert.False(File.Exists(Path.Combine(output, PremiseProbeResult.JsonFileName)));
    }
}
