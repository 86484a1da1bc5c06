using System.Text.Json;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Probes;
using CTCal.Synthetic;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Data;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>End-to-end training of a tiny SD3-style folder (<see cref="TinyStableDiffusion3"/>, written here): flow matching, joint-attention CTCal.</summary>
public sealed class TinySD3TrainingTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-tiny-sd3");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void TheFolderLoadsAsAnSD3ModelWithTheFlowObjectiveAndJointAttentionLayers()
    {
        string folder = TinyStableDiffusion3.Write(_dir);
        using var model = TrainableModels.Load(folder);
        var sd3 = Assert.IsType<SD3TrainableModel>(model);
        Assert.Equal("transformer", model.DenoiserComponent);
        Assert.Equal(16, model.LatentChannels);
        Assert.Equal(2, model.VaeScaleFactor);
        Assert.Equal([new AttentionLayerInfo("transformer_blocks.0.attn", 2), new AttentionLayerInfo("transformer_blocks.1.attn", 2)], model.CrossAttentionLayers);
        var objective = Assert.IsType<FlowTrainingObjective>(model.CreateObjective(new TrainingOptions()));
        Assert.Equal(3.0, objective.Flow.Options.Shift);
        Assert.Throws<ArgumentException>(() => model.CreateObjective(new TrainingOptions { MinSnrGamma = 5 }));

        // The CLIP word positions index the joint text sequence; the maps are distributions over its text tokens.
        var tokens = model.Tokenize("a red cube on a blue sphere");
        Assert.Equal(154, tokens.InputIds.Length);
        Assert.Equal(0, tokens.InputIds[^1]); // tokenizer_2 pads with "!"
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var text = model.EncodeText(tensor(tokens.InputIds, new long[] { 1, 154 }));
        Assert.Equal(new long[] { 1, 154, 32 }, text.Hidden.shape);
        Assert.Equal(new long[] { 1, 16 }, text.Pooled!.shape);
        var latents = randn(new long[] { 1, 16, 8, 8 }, generator: new Generator(1));
        var prediction = model.PredictNoise(latents, tensor(new float[] { 500f }), text, ["transformer_blocks.0.attn"], out var maps);
        Assert.Equal(latents.shape, prediction.shape);
        var map = maps["transformer_blocks.0.attn"];
        Assert.Equal(new long[] { 1, 4, 16, 154 }, map.shape);
        Assert.True(allclose(map.sum(-1), ones(1, 4, 16), atol: 1e-5));
        // ... and equal the joint softmax's image x text block renormalised over the text keys.
        using var raw = new AttentionCapture(["transformer_blocks.0.attn"]);
        var same = sd3.Transformer.forward(latents, text.Hidden, text.Pooled, tensor(new float[] { 500f }), raw);
        Assert.True(allclose(SD3TrainableModel.RenormaliseOverText(raw.Maps["transformer_blocks.0.attn"]), map, rtol: 1e-4, atol: 1e-6));
        Assert.True(allclose(same, prediction, rtol: 1e-4, atol: 1e-5));
        Assert.Same(sd3.Transformer, model.UNet);
    }

    [Theory]
    [InlineData(TrainingMethod.Vanilla)]
    [InlineData(TrainingMethod.Ctcal)]
    public void LoraTrainingLowersTheLoss(TrainingMethod method)
    {
        string folder = TinyStableDiffusion3.Write(_dir);
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        var dataset = ImageCaptionDataset.Open(data, resolution: 16);
        using var model = TrainableModels.Load(folder);
        var options = new TrainingOptions
        {
            Method = method, Steps = 20, BatchSize = 2, LearningRate = 5e-2, Lora = new LoraOptions { Rank = 4 }, SaveEvery = 0, Seed = 3,
        };
        using var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "out"));
        // 2 joint blocks x (to_q, to_k, to_v, to_out.0, add_q_proj, add_k_proj, add_v_proj), + to_add_out of the first (the last is context_pre_only).
        Assert.Equal(2 * 7 + 1, run.UNetLora!.Layers.Count);
        Assert.Contains(run.UNetLora.Layers, l => l.Path == "transformer_blocks.0.attn.add_k_proj");
        double before = run.EvaluationLoss(samples: 4);
        var reports = Enumerable.Range(0, options.Steps).Select(_ => run.TrainStep()).ToList();
        double after = run.EvaluationLoss(samples: 4);

        Assert.All(reports, r => Assert.False(r.Skipped));
        // Deterministic (seeded draws, fixed evaluation batch); on the reference machine the loss falls by about 4.4 %.
        Assert.True(after < before * 0.97, $"{method}: evaluation loss {before} -> {after}");
        if (method == TrainingMethod.Ctcal)
        {
            Assert.Equal(["transformer_blocks.0.attn", "transformer_blocks.1.attn"], run.CalibratedLayers); // auto: every joint block (downscale 2)
            Assert.Contains(reports, r => r.Nouns > 0 && r.Ctcal > 0);
        }
        else
        {
            Assert.All(reports, r => Assert.Equal(0, r.Ctcal));
        }
    }

    [Theory]
    [InlineData(TrainingMethod.Vanilla, TeacherSampling.Fixed)]
    [InlineData(TrainingMethod.Ctcal, TeacherSampling.Fixed)]
    [InlineData(TrainingMethod.Ctcal, TeacherSampling.Below)]
    public void ResumeEqualsAnUninterruptedRunExactly(TrainingMethod method, TeacherSampling sampling)
    {
        string folder = TinyStableDiffusion3.Write(_dir);
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        var dataset = ImageCaptionDataset.Open(data, resolution: 16);
        var options = new TrainingOptions
        {
            Method = method, Steps = 8, BatchSize = 2, LearningRate = 1e-2, Lora = new LoraOptions { Rank = 2 },
            SaveEvery = 0, EmaDecay = 0.9, LrSchedule = LrScheduleKind.Cosine, WarmupSteps = 2, Seed = 5, TeacherSampling = sampling,
        };
        List<double> straight;
        Dictionary<string, float[]> straightWeights;
        using (var model = TrainableModels.Load(folder))
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "a")))
        {
            for (int i = 0; i < 8; i++) run.TrainStep();
            straight = run.Losses.ToList();
            straightWeights = Weights(run);
        }
        string checkpoint;
        using (var model = TrainableModels.Load(folder))
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            for (int i = 0; i < 4; i++) run.TrainStep();
            checkpoint = run.SaveCheckpoint();
        }
        using (var model = TrainableModels.Load(folder))
        using (var run = new TrainingRun(model, dataset, options, Path.Combine(_dir, "b")))
        {
            run.Resume(checkpoint);
            for (int i = 0; i < 4; i++) run.TrainStep();
            Assert.Equal(straight.Skip(4), run.Losses);
            var resumed = Weights(run);
            Assert.Equal(straightWeights.Keys.Order(), resumed.Keys.Order());
            foreach (var (name, values) in straightWeights) Assert.True(values.AsSpan().SequenceEqual(resumed[name]), $"{name} differs after resume");
        }
    }

    [Fact]
    public void CachedEncodingsIncludingThePooledVectorTrainLikeUncachedOnes()
    {
        string folder = TinyStableDiffusion3.Write(_dir);
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        var dataset = ImageCaptionDataset.Open(data, resolution: 16);
        var options = new TrainingOptions { Method = TrainingMethod.Ctcal, Steps = 5, BatchSize = 1, LearningRate = 1e-2, SaveEvery = 0, Seed = 2 };
        var losses = new List<IReadOnlyList<double>>();
        foreach (bool cache in new[] { false, true })
        {
            using var model = TrainableModels.Load(folder);
            using var run = new TrainingRun(model, dataset, options with { CacheEncodings = cache }, Path.Combine(_dir, $"cache-{cache}"));
            for (int i = 0; i < 5; i++) run.TrainStep();
            losses.Add(run.Losses.ToList());
            if (cache) Assert.True(run.CachedEncodingBytes > 0);
        }
        Assert.Equal(losses[0], losses[1]);
    }

    private static Dictionary<string, float[]> Weights(TrainingRun run) =>
        run.TrainableParameters.ToDictionary(t => t.Name, t => t.Parameter.detach().cpu().contiguous().data<float>().ToArray());

    [Fact]
    public void CommandLineTrainsTheSD3FolderAndWritesATransformerLora()
    {
        string folder = TinyStableDiffusion3.Write(_dir);
        string data = TrainingRunTests.MakeDataset(_dir, size: 16);
        string output = Path.Combine(_dir, "run");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var cli = new TrainerCli(TrainableModels.Load, stdout, stderr);
        int code = cli.Run(["train", "--model", folder, "--data", data, "--out", output, "--resolution", "16", "--steps", "2",
            "--batch-size", "2", "--lr", "1e-3", "--progress", "json", "--validation-prompts", "a red cube on top of a blue sphere",
            "--validation-steps", "2", "--save-every", "1"]);
        Assert.True(code == 0, stderr.ToString());
        Assert.Contains("\"event\":\"done\"", stdout.ToString());
        Assert.True(File.Exists(Path.Combine(output, "validation", "step-0000002.png")));
        var lora = TensorFile.Load(Path.Combine(output, LoraFile.DefaultName));
        try
        {
            Assert.NotEmpty(lora.Keys);
            Assert.All(lora.Keys, k => Assert.StartsWith("transformer.transformer_blocks.", k));
            Assert.Contains("transformer.transformer_blocks.0.attn.to_add_out.lora_A.weight", lora.Keys);
            Assert.True(LoraKeys.TryParse("transformer.transformer_blocks.0.attn.to_q.lora_B.weight", out var key));
            Assert.Equal((LoraKeys.Transformer, "transformer_blocks.0.attn.to_q", LoraPart.Up), (key.Component, key.Module, key.Part));
        }
        finally
        {
            foreach (var t in lora.Values) t.Dispose();
        }

        // The written LoRA continues as --init-lora (read back through the transformer component), here with the flow options.
        string resumed = Path.Combine(_dir, "continued");
        code = cli.Run(["train", "--model", folder, "--data", data, "--out", resumed, "--resolution", "16", "--steps", "1",
            "--batch-size", "2", "--init-lora", Path.Combine(output, LoraFile.DefaultName), "--save-every", "0",
            "--teacher-sampling", "below", "--weighting-scheme", "mode"]);
        Assert.True(code == 0, stderr.ToString());
        string config = File.ReadAllText(Path.Combine(resumed, "train_config.json"));
        Assert.Contains("\"teacher-sampling\": \"below\"", config);
        Assert.Contains("\"weighting-scheme\": \"mode\"", config);

        // merge writes the adapted transformer, loadable strictly, W0 + B·A on an adapted text-stream projection.
        string merged = Path.Combine(_dir, "merged");
        Assert.Equal(0, cli.Run(["merge", "--model", folder, "--lora", Path.Combine(output, LoraFile.DefaultName), "--out", merged]));
        using var transformer = new SD3Transformer2DModel(SD3TransformerConfig.Load(Path.Combine(folder, "transformer", "config.json")));
        DiffusersWeights.Load(transformer, Path.Combine(merged, "transformer", "diffusion_pytorch_model.safetensors"));
        using var original = new SD3Transformer2DModel(SD3TransformerConfig.Load(Path.Combine(folder, "transformer", "config.json")));
        DiffusersWeights.Load(original, Path.Combine(folder, "transformer", "diffusion_pytorch_model.safetensors"));
        var factors = TensorFile.Load(Path.Combine(output, LoraFile.DefaultName));
        string module = "transformer_blocks.0.attn.add_v_proj";
        var expected = original.state_dict()[module + ".weight"] + factors[$"transformer.{module}.lora_B.weight"].matmul(factors[$"transformer.{module}.lora_A.weight"]);
        Assert.True(allclose(transformer.state_dict()[module + ".weight"], expected, atol: 1e-6));
        foreach (var t in factors.Values) t.Dispose();
    }

    [Fact]
    public void BenchPrintsSecondsPerStepOfBothMethodsAndTheirRatioForSD3()
    {
        string folder = TinyStableDiffusion3.Write(_dir);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = new TrainerCli(TrainableModels.Load, stdout, stderr).Run(["bench", "--model", folder, "--steps", "1", "--warmup", "0",
            "--rounds", "1", "--batch-size", "1", "--resolution", "16", "--threads", "1"]);
        Assert.True(code == 0, stderr.ToString());
        string text = stdout.ToString();
        Assert.Contains("calibrated layers: transformer_blocks.0.attn, transformer_blocks.1.attn", text);
        Assert.Matches(@"vanilla: [0-9.]+ s/step wall", text);
        Assert.Matches(@"ctcal: +[0-9.]+ s/step wall", text);
        Assert.Matches(@"ratio ctcal/vanilla: [0-9.]+ wall", text);
    }

    [Fact]
    public void PremiseProbeOfTheSD3FolderMeasuresEveryJointBlockAtFlowTimesteps()
    {
        string folder = TinyStableDiffusion3.Write(_dir);
        string data = Path.Combine(_dir, "masked");
        DatasetWriter.WriteDataset(SyntheticWorld.Create(new SyntheticWorldOptions { Seed = 2, TrainCount = 2 }), data, withMasks: true);
        string output = Path.Combine(_dir, "probe");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = new TrainerCli(TrainableModels.Load, stdout, stderr).Run(["probe", "--model", folder, "--data", data, "--out", output,
            "--records", "2", "--resolution", "32", "--timesteps", "0", "500", "900"]);
        Assert.True(code == 0, stderr.ToString());
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, PremiseProbeResult.JsonFileName)));
        var rows = json.RootElement.GetProperty("per_layer").EnumerateArray().ToList();
        Assert.Equal(3 * 2, rows.Count); // 3 timesteps x 2 joint blocks
        Assert.All(rows, r => Assert.InRange(r.GetProperty("mass").GetDouble(), 0, 1));
        Assert.Contains(rows, r => r.GetProperty("layer").GetString() == "transformer_blocks.1.attn");
    }
}
