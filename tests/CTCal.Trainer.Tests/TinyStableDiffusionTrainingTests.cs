using CTCal.Core.Diffusers;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Data;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>End-to-end training on a tiny SD-1-style UNet / CLIP text encoder / VAE (configs in <see cref="TinyStableDiffusion"/>).</summary>
public sealed class TinyStableDiffusionTrainingTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-tiny-sd");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(TrainingMethod.Vanilla)]
    [InlineData(TrainingMethod.Ctcal)]
    public void LoraTrainingLowersTheLoss(TrainingMethod method)
    {
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        var dataset = ImageCaptionDataset.Open(data, resolution: 16);
        using var model = TinyStableDiffusion.Create();
        var options = new TrainingOptions
        {
            Method = method, Steps = 8, BatchSize = 2, LearningRate = 2e-2, Lora = new LoraOptions { Rank = 4 }, SaveEvery = 0,
        };
        using var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "out"));
        Assert.Equal(4 * 2 * 4, run.UNetLora!.Layers.Count); // 4 transformer blocks x (attn1, attn2) x (to_q, to_k, to_v, to_out.0)
        double before = run.EvaluationLoss();
        var reports = Enumerable.Range(0, options.Steps).Select(_ => run.TrainStep()).ToList();
        double after = run.EvaluationLoss();

        Assert.All(reports, r => Assert.False(r.Skipped));
        Assert.True(after < before * 0.98, $"{method}: evaluation loss {before} -> {after}");
        if (method == TrainingMethod.Ctcal)
        {
            Assert.Equal(["mid_block.attentions.0.transformer_blocks.0.attn2"], run.CalibratedLayers); // auto: the 1/2-side maps
            Assert.Contains(reports, r => r.Nouns > 0 && r.Ctcal > 0);
        }
        else
        {
            Assert.All(reports, r => Assert.Equal(0, r.Ctcal));
        }
    }

    [Fact]
    public void ResumeMatchesAnUninterruptedRunOnTheTinyModel()
    {
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        var dataset = ImageCaptionDataset.Open(data, resolution: 16);
        var options = new TrainingOptions
        {
            Method = TrainingMethod.Ctcal, Steps = 10, BatchSize = 1, LearningRate = 1e-2, Lora = new LoraOptions { Rank = 2 },
            SaveEvery = 0, Layers = ["all"], EmaDecay = 0.9, LrSchedule = LrScheduleKind.Cosine, WarmupSteps = 2,
        };
        List<double> straight;
        using (var model = TinyStableDiffusion.Create())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "a")))
        {
            for (int i = 0; i < 10; i++) run.TrainStep();
            straight = run.Losses.ToList();
        }
        string checkpoint;
        using (var model = TinyStableDiffusion.Create())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            for (int i = 0; i < 5; i++) run.TrainStep();
            checkpoint = run.SaveCheckpoint();
        }
        using (var model = TinyStableDiffusion.Create())
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            run.Resume(checkpoint);
            for (int i = 0; i < 5; i++) run.TrainStep();
            for (int i = 0; i < 5; i++) Assert.Equal(straight[5 + i], run.Losses[i], 1e-6);
        }
    }

    [Fact]
    public void CommandLineTrainsTheFixtureFolderAndMergesIntoLoadableWeights()
    {
        string model = Path.Combine(TestPaths.Fixtures, "tiny-sd1");
        string data = TrainingRunTests.MakeDataset(_dir, size: 32);
        string output = Path.Combine(_dir, "run");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var cli = new TrainerCli(DiffusersTrainableModel.Load, stdout, stderr);
        int code = cli.Run(["train", "--model", model, "--data", data, "--out", output, "--resolution", "32", "--steps", "2",
            "--batch-size", "2", "--lr", "1e-3", "--progress", "json", "--validation-prompts", "a red cube on top of a blue sphere",
            "--validation-steps", "2", "--save-every", "1"]);
        Assert.True(code == 0, stderr.ToString());
        Assert.Contains("\"event\":\"done\"", stdout.ToString());
        Assert.True(File.Exists(Path.Combine(output, "validation", "step-0000002.png")));
        string lora = Path.Combine(output, LoraFile.DefaultName);

        string merged = Path.Combine(_dir, "merged");
        Assert.Equal(0, cli.Run(["merge", "--model", model, "--lora", lora, "--out", merged]));
        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(merged, "unet", "config.json")));
        DiffusersWeights.Load(unet, Path.Combine(merged, "unet", "diffusion_pytorch_model.safetensors")); // strict: names and shapes
        using var original = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(model, "unet", "config.json")));
        DiffusersWeights.Load(original, Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"));
        var loraTensors = TensorFile.Load(lora);
        string key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k";
        var expected = original.state_dict()[key + ".weight"] + loraTensors[$"unet.{key}.lora_B.weight"].matmul(loraTensors[$"unet.{key}.lora_A.weight"]);
        Assert.True(allclose(unet.state_dict()[key + ".weight"], expected, atol: 1e-6));
        foreach (var t in loraTensors.Values) t.Dispose();
    }

    [Fact]
    public void TextEncoderLoraAdaptsTheClipSelfAttentionAndTrains()
    {
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        var dataset = ImageCaptionDataset.Open(data, resolution: 16);
        using var model = TinyStableDiffusion.Create();
        var options = new TrainingOptions
        {
            Method = TrainingMethod.Ctcal, Steps = 2, BatchSize = 2, LearningRate = 1e-2, SaveEvery = 0,
            Lora = new LoraOptions { Rank = 2, TextEncoder = true },
        };
        using var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "out"));
        var layers = run.TextEncoderLora!.Layers.Select(l => l.Path).ToList();
        Assert.Equal(2 * 4, layers.Count); // 2 encoder layers x (q, k, v, out)
        Assert.Contains("text_model.encoder.layers.0.self_attn.q_proj", layers);
        var before = run.TextEncoderLora.Layers[0].B.clone();
        run.TrainStep();
        run.TrainStep();
        Assert.False(before.eq(run.TextEncoderLora.Layers[0].B).all().item<bool>(), "text-encoder LoRA received no update");
    }
}
