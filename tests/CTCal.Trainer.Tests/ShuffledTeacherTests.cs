using System.Text.Json;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>The shuffled-teacher control: the derangement, the noun mapping, the one-sample fallback, training and resume.</summary>
public sealed class ShuffledTeacherTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-shuffled");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void DerangementHasNoFixedPointAndIsDeterministicPerSeed()
    {
        var seen = new HashSet<string>();
        for (int n = 2; n <= 9; n++)
        {
            for (ulong seed = 1; seed <= 20; seed++)
            {
                using var a = new Generator(seed);
                using var b = new Generator(seed);
                var first = ShuffledTeacher.Derangement(n, a);
                Assert.Equal(Enumerable.Range(0, n), first.Order());
                for (int i = 0; i < n; i++) Assert.NotEqual(i, first[i]);
                Assert.Equal(first, ShuffledTeacher.Derangement(n, b));
                if (n == 5) seen.Add(string.Join(",", first));
            }
        }
        Assert.True(seen.Count > 5, $"20 seeds gave only {seen.Count} different derangements of 5");
        using var g = new Generator(3);
        Assert.Equal([0], ShuffledTeacher.Derangement(1, g));
    }

    [Fact]
    public void EachNounGetsTheNounOfItsSourceSampleModuloItsNounCount()
    {
        using var scope = NewDisposeScope();
        var maps = arange(3 * 2 * 4 * 6, dtype: ScalarType.Float32).reshape(3, 2, 4, 6); // [samples, heads, H*W, tokens]
        IReadOnlyList<int[]>[] nouns = [[[1], [2, 3]], [[1]], [[2], [4], [5]]];
        int[] source = [1, 2, 0];
        var shuffled = ShuffledTeacher.Permuted(new Dictionary<string, Tensor> { ["l"] = maps }, nouns, source)["l"];

        Tensor Column(int sample, params long[] tokens) => maps[sample].index_select(-1, tensor(tokens)).mean(new long[] { -1 });
        void Expect(int sample, int token, Tensor column) =>
            Assert.True(shuffled[sample].select(-1, token).eq(column).all().item<bool>(), $"sample {sample} token {token}");
        Expect(0, 1, Column(1, 1));       // noun 0 <- sample 1 noun 0
        Expect(0, 2, Column(1, 1));       // noun 1 <- sample 1 noun (1 mod 1 = 0); every sub-word token
        Expect(0, 3, Column(1, 1));
        Expect(1, 1, Column(2, 2));       // noun 0 <- sample 2 noun 0
        Expect(2, 2, Column(0, 1));       // noun 0 <- sample 0 noun 0
        Expect(2, 4, Column(0, 2, 3));    // noun 1 <- sample 0 noun 1, averaged over its two tokens
        Expect(2, 5, Column(0, 1));       // noun 2 <- sample 0 noun (2 mod 2 = 0)
        foreach (var (sample, token) in new[] { (0, 0), (0, 4), (1, 0), (1, 2), (2, 0), (2, 1), (2, 3) })
            Expect(sample, token, maps[sample].select(-1, token)); // tokens that are no noun are untouched
    }

    [Fact]
    public void OneCalibratedSampleGetsItsMapsRolledByHalfTheSideAndDrawsNothing()
    {
        using var scope = NewDisposeScope();
        var maps = zeros(1, 2, 16, 3);
        maps[0, TensorIndex.Colon, 1 * 4 + 0, 2] = tensor(1f); // row 1, column 0 of a 4 x 4 map
        using var generator = new Generator(5);
        var state = generator.get_state();
        var rolled = ShuffledTeacher.Apply(new Dictionary<string, Tensor> { ["l"] = maps }, [[[2]]], generator)["l"];
        Assert.Equal(1f, rolled[0, 0, 3 * 4 + 2, 2].item<float>()); // moved to row 3, column 2
        Assert.Equal(1f, rolled.sum().item<float>() / 2);
        Assert.True(generator.get_state().eq(state).all().item<bool>(), "the one-sample fallback drew from the generator");
        Assert.Throws<ArgumentException>(() => ShuffledTeacher.Rolled(zeros(1, 1, 15, 3), "l"));
    }

    private static TrainingOptions Options(TeacherSource teacher, int steps) => new()
    {
        Method = TrainingMethod.Ctcal,
        Teacher = teacher,
        Steps = steps,
        BatchSize = 3,
        LearningRate = 1e-2,
        Lora = new LoraOptions { Rank = 2, Dropout = 0.1 },
        SaveEvery = 0,
        Layers = ["all"],
        Seed = 7,
    };

    private static Dictionary<string, Tensor> Weights(TrainingRun run) =>
        run.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.detach().clone());

    [Fact]
    public void ShuffledTeacherTrainsDifferentlyFromTheModelTeacher()
    {
        string data = TrainingRunTests.MakeDataset(_dir, captions: ["a red cube", "two green spheres and a cone", "a blue cone on top of a cube", "an orange ball"]);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        List<StepReport> Reports(TeacherSource teacher)
        {
            using var model = new ToyDiffusionModel();
            using var run = new TrainingRun(model, dataset, Options(teacher, 3), Path.Combine(_dir, teacher.ToString()));
            return Enumerable.Range(0, 3).Select(_ => run.TrainStep()).ToList();
        }
        var shuffled = Reports(TeacherSource.Shuffled);
        var own = Reports(TeacherSource.Model);
        Assert.All(shuffled, r => Assert.True(double.IsFinite(r.Loss) && r.Nouns > 0));
        Assert.Equal(own[0].Diffusion, shuffled[0].Diffusion); // same batch, noise and timesteps
        Assert.NotEqual(own[0].Pixel, shuffled[0].Pixel);      // other teacher maps
    }

    [Fact]
    public void ResumedShuffledRunGivesTheWeightsOfTheUninterruptedOne()
    {
        string data = TrainingRunTests.MakeDataset(_dir, captions: ["a red cube", "two green spheres and a cone", "a blue cone on top of a cube", "an orange ball"]);
        var dataset = ImageCaptionDataset.Open(data, resolution: 8);
        var options = Options(TeacherSource.Shuffled, 6) with { GradientAccumulation = 2, EmaDecay = 0.9 };

        List<double> straight;
        Dictionary<string, Tensor> straightWeights;
        using (var model = new ToyDiffusionModel())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "a")))
        {
            for (int i = 0; i < 6; i++) run.TrainStep();
            straight = run.Losses.ToList();
            straightWeights = Weights(run);
        }

        string checkpoint;
        using (var model = new ToyDiffusionModel())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            for (int i = 0; i < 3; i++) run.TrainStep();
            checkpoint = run.SaveCheckpoint();
        }

        using (var model = new ToyDiffusionModel())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            run.Resume(checkpoint);
            for (int i = 0; i < 3; i++) run.TrainStep();
            Assert.Equal(straight.Skip(3), run.Losses);
            foreach (var (name, value) in Weights(run))
                Assert.True(value.eq(straightWeights[name]).all().item<bool>(), $"'{name}' differs after resume");
        }
    }

    [Fact]
    public void CommandLineTrainsTwoStepsWithTheShuffledTeacher()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        using var output = new StringWriter();
        using var error = new StringWriter();
        var cli = new TrainerCli(_ => new ToyDiffusionModel(), output, error);
        int code = cli.Run(["train", "--model", "toy", "--data", data, "--out", Path.Combine(_dir, "out"), "--resolution", "8",
            "--batch-size", "2", "--lora-rank", "2", "--layers", "all", "--progress", "json", "--steps", "2", "--teacher", "shuffled"]);
        Assert.True(code == 0, error.ToString());
        var steps = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.GetProperty("event").GetString() == "step").ToList();
        Assert.Equal(2, steps.Count);
        Assert.All(steps, s => Assert.True(double.IsFinite(s.GetProperty("loss").GetDouble())));
    }
}
