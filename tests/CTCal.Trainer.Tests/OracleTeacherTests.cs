using CTCal.Synthetic;
using CTCal.Tests;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary><c>--teacher oracle</c>: the subject masks as teacher maps, shaped and normalised like the model's.</summary>
public sealed class OracleTeacherTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-oracle");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void OracleMapsAreTheResizedMasksOnTheNounTokens()
    {
        using var scope = NewDisposeScope();
        // 4x4 masks: a left block for the one-token noun, a right block (half covered at one pixel) for the two-token noun.
        float[] left4 = new float[16], right4 = new float[16];
        for (int y = 0; y < 4; y++) { left4[y * 4] = 1; left4[y * 4 + 1] = 1; right4[y * 4 + 3] = 1; }
        right4[2] = 0.5f;
        float[] left2 = MaskLoader.AreaResize(left4, 4, 2), right2 = MaskLoader.AreaResize(right4, 4, 2);
        var sample = new List<OracleNoun>
        {
            new([2], new Dictionary<int, float[]> { [4] = left4, [2] = left2 }),
            new([3, 4], new Dictionary<int, float[]> { [4] = right4, [2] = right2 }),
        };
        var maps = OracleTeacher.Maps([sample, sample], [("a.attn2", 4), ("b.attn2", 2)], tokenCount: 6);
        Assert.Equal(new long[] { 2, 1, 16, 6 }, maps["a.attn2"].shape);
        Assert.Equal(new long[] { 2, 1, 4, 6 }, maps["b.attn2"].shape);
        foreach (var (path, side, left, right) in new[] { ("a.attn2", 4, left4, right4), ("b.attn2", 2, left2, right2) })
        {
            var m = maps[path];
            Assert.Equal(left, m[1, 0, TensorIndex.Colon, 2].data<float>().ToArray());
            // The two-token noun's mask is shared by its tokens; the aggregator's token average gives the mask back.
            var pair = (m[1, 0, TensorIndex.Colon, 3] + m[1, 0, TensorIndex.Colon, 4]).data<float>().ToArray();
            for (int p = 0; p < side * side; p++) Assert.Equal(right[p], pair[p], 6);
            // Rows are distributions over tokens, like softmax output; the spare mass is on the start token.
            var sums = m.sum(new long[] { 3 }).data<float>().ToArray();
            Assert.All(sums, s => Assert.Equal(1f, s, 5));
            Assert.True(m.min().item<float>() >= 0);
            Assert.Equal(0f, m[0, 0, TensorIndex.Colon, 5].abs().sum().item<float>());
        }

        // What CtcalLoss compares: the aggregated, mean-1 normalised noun maps equal the normalised masks.
        var nouns = new NounTokens([new List<int[]> { new[] { 2 }, new[] { 3, 4 } }, new List<int[]> { new[] { 2 }, new[] { 3, 4 } }]);
        var aggregated = CtcalLoss.Normalise(AttentionMapAggregator.Aggregate(maps, ["a.attn2"], nouns.ToWeights(6), 4));
        var expectedLeft = CtcalLoss.Normalise(tensor(left4, new long[] { 4, 4 }));
        var expectedRight = CtcalLoss.Normalise(tensor(right4, new long[] { 4, 4 }));
        Assert.True(allclose(aggregated[0, 0], expectedLeft, atol: 1e-5));
        Assert.True(allclose(aggregated[1, 1], expectedRight, atol: 1e-5));
    }

    [Fact]
    public void EmptyMaskGivesAUniformMapAndBadTokenPositionsAreRefused()
    {
        using var scope = NewDisposeScope();
        var empty = new List<OracleNoun> { new([1], new Dictionary<int, float[]> { [2] = new float[4] }) };
        var map = OracleTeacher.Maps([empty], [("x", 2)], tokenCount: 3)["x"];
        Assert.All(map[0, 0, TensorIndex.Colon, 1].data<float>().ToArray(), v => Assert.Equal(0.25f, v, 6));
        var bad = new List<OracleNoun> { new([0], new Dictionary<int, float[]> { [2] = [1, 0, 0, 0] }) };
        Assert.Throws<ArgumentException>(() => OracleTeacher.Maps([bad], [("x", 2)], tokenCount: 3));
        var missing = new List<OracleNoun> { new([1], new Dictionary<int, float[]> { [4] = new float[16] }) };
        Assert.Throws<ArgumentException>(() => OracleTeacher.Maps([missing], [("x", 2)], tokenCount: 3));
    }

    [Fact]
    public void TwoStepOracleRunTrainsAndADatasetWithoutMasksIsRefusedBeforeOutIsTouched()
    {
        string model = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        var world = SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 4, TrainCount = 4 });
        string withMasks = Path.Combine(_dir, "masked");
        DatasetWriter.WriteDataset(world, withMasks, withMasks: true);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var cli = new TrainerCli(DiffusersTrainableModel.Load, stdout, stderr);
        string output = Path.Combine(_dir, "run");
        int code = cli.Run(["train", "--model", model, "--data", withMasks, "--out", output, "--resolution", "64", "--steps", "2",
            "--batch-size", "2", "--teacher", "oracle", "--teacher-t", "0", "--progress", "json", "--save-every", "0"]);
        Assert.True(code == 0, stderr.ToString());
        Assert.Contains("\"event\":\"done\"", stdout.ToString());
        Assert.Contains("\"teacher\": \"oracle\"", File.ReadAllText(Path.Combine(output, "train_config.json")));

        // The same run through the library: the CTCal term is computed against the oracle maps and is finite.
        using (var diffusion = DiffusersTrainableModel.Load(model))
        {
            var data = ImageCaptionDataset.Open(withMasks, 64);
            var options = new TrainingOptions { Method = TrainingMethod.Ctcal, Teacher = TeacherSource.Oracle, Steps = 2, BatchSize = 4, SaveEvery = 0, TeacherTimestep = 0 };
            using var run = new TrainingRun(diffusion, data, options, Path.Combine(_dir, "lib"));
            var step = run.TrainStep();
            Assert.True(step.Nouns > 0);
            Assert.True(double.IsFinite(step.Ctcal) && step.Ctcal > 0, $"ctcal {step.Ctcal}");
        }

        string plain = Path.Combine(_dir, "plain");
        DatasetWriter.WriteDataset(world, plain);
        stderr.GetStringBuilder().Clear();
        string refused = Path.Combine(_dir, "refused");
        code = cli.Run(["train", "--model", model, "--data", plain, "--out", refused, "--resolution", "64", "--steps", "2", "--teacher", "oracle"]);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Contains(Path.Combine(plain, "metadata.jsonl") + ":1", stderr.ToString());
        Assert.Contains("has no mask", stderr.ToString());
        Assert.False(Directory.Exists(refused));
    }
}
