using System.Text.Json;
using CTCal.Contracts;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

public sealed class TrainerCliTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-cli");
    private readonly StringWriter _out = new();
    private readonly StringWriter _err = new();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private TrainerCli Cli(bool poison = false) => new(_ => new ToyDiffusionModel { PoisonPredictions = poison }, _out, _err);

    private string _model = "toy";

    private string[] Train(string data, string output, params string[] extra) =>
        ["train", "--model", _model, "--data", data, "--out", output, "--resolution", "8", "--batch-size", "2", "--lora-rank", "2",
         "--layers", "all", "--progress", "json", .. extra];

    private List<JsonElement> Events() => _out.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    [Fact]
    public void TrainWritesJsonLinesAndWeights()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string output = Path.Combine(_dir, "out");
        int code = Cli().Run(Train(data, output, "--steps", "3", "--save-every", "2"));
        Assert.True(code == 0, _err.ToString());
        var events = Events();
        Assert.Equal("start", events[0].GetProperty("event").GetString());
        Assert.Equal(4, events[0].GetProperty("records").GetInt32());
        Assert.Equal(3, events.Count(e => e.GetProperty("event").GetString() == "step"));
        var step = events.First(e => e.GetProperty("event").GetString() == "step");
        foreach (var field in new[] { "step", "total_steps", "loss", "diffusion", "ctcal", "pixel", "semantic", "reconstruction", "balance", "lr", "it_per_s" })
            Assert.True(step.TryGetProperty(field, out _), $"step event lacks {field}");
        Assert.Equal(2, events.Count(e => e.GetProperty("event").GetString() == "checkpoint"));
        var done = events[^1];
        Assert.Equal("done", done.GetProperty("event").GetString());
        Assert.Equal(0, done.GetProperty("exit_code").GetInt32());
        Assert.True(File.Exists(Path.Combine(output, LoraFile.DefaultName)));
        Assert.True(File.Exists(Path.Combine(output, "train_config.json")));
        Assert.True(File.Exists(Path.Combine(output, "train.log")));
    }

    /// <summary>
    /// Two runs in one process (as the tests run) each log into their own train.log: the file log's folder is scoped to
    /// the run, not a process-wide variable (CI once failed because a parallel test's run moved this one's log away).
    /// </summary>
    [Fact]
    public async Task ConcurrentRunsEachLogIntoTheirOwnFolder()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string a = Path.Combine(_dir, "run-a"), b = Path.Combine(_dir, "run-b");
        var errA = new StringWriter();
        var errB = new StringWriter();
        int[] codes = await Task.WhenAll(
            Task.Run(() => new TrainerCli(_ => new ToyDiffusionModel(), new StringWriter(), errA).Run(Train(data, a, "--steps", "4", "--save-every", "1"))),
            Task.Run(() => new TrainerCli(_ => new ToyDiffusionModel(), new StringWriter(), errB).Run(Train(data, b, "--steps", "4", "--save-every", "1"))));
        Assert.True(codes[0] == 0, errA.ToString());
        Assert.True(codes[1] == 0, errB.ToString());
        NLog.LogManager.Flush();
        string logA = File.ReadAllText(Path.Combine(a, "train.log"));
        string logB = File.ReadAllText(Path.Combine(b, "train.log"));
        // Each log has its own run's four checkpoints and done line, and nothing of the other run's.
        Assert.Equal(4, logA.Split("checkpoint at step").Length - 1);
        Assert.Equal(4, logB.Split("checkpoint at step").Length - 1);
        Assert.Contains(Path.Combine(a, LoraFile.DefaultName), logA);
        Assert.Contains(Path.Combine(b, LoraFile.DefaultName), logB);
        Assert.DoesNotContain(b, logA);
        Assert.DoesNotContain(a, logB);
    }

    [Fact]
    public void ConfigFileFillsOptionsAndTheCommandLineWins()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string output = Path.Combine(_dir, "out");
        string config = Path.Combine(_dir, "config.json");
        File.WriteAllText(config, """{"steps": 2, "lr": 0.5, "method": "vanilla", "validation-prompts": "a cube", "save-every": 0, "validation-steps": 2}""");
        _model = Path.Combine(TestPaths.Fixtures, "tiny-sd1"); // the toy loader ignores it; validation reads its scheduler config
        int code = Cli().Run(Train(data, output, "--config", config, "--lr", "0.001"));
        Assert.True(code == 0, _err.ToString());
        // train_config.json is the job that ran: the file's values, the command line's over them, absolute paths.
        var saved = FineTuneJobJson.Read(Path.Combine(output, "train_config.json"));
        Assert.Equal(2, saved.Steps);
        Assert.Equal(0.001, saved.Lr);
        Assert.Equal("vanilla", saved.Method);
        Assert.Equal(["a cube"], saved.ValidationPrompts);
        Assert.Equal(output, saved.Out);
        // ... and runs again as the job file: the same job, written again byte for byte.
        string again = Path.Combine(_dir, "again");
        Assert.True(Cli().Run(["train", "--config", Path.Combine(output, "train_config.json"), "--out", again]) == 0, _err.ToString());
        Assert.Equal(saved with { Out = again }, FineTuneJobJson.Read(Path.Combine(again, "train_config.json")));
        Assert.True(File.Exists(Path.Combine(output, "validation", "step-0000002.png")));
    }

    /// <summary>The train verb's options are the job's keys, one for one, plus --config (the job file itself).</summary>
    [Fact]
    public void TrainOptionsAreTheJobKeys()
    {
        Assert.Equal(0, Cli().Run(["train", "--help"]));
        var options = System.Text.RegularExpressions.Regex.Matches(_out.ToString(), @"^\s+(?:-\S+, )*--([a-z-]+)", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).Where(o => o != "help").ToHashSet();
        Assert.Equal(FineTuneJobJson.Keys.Append("config").Order(), options.Order());
    }

    [Theory]
    [InlineData("--bogus", "1")]
    [InlineData("--method", "sideways")]
    [InlineData("--steps", "zero")]
    public void BadArgumentsExitWithTwo(string option, string value)
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(data, Path.Combine(_dir, "out"), option, value)));
        Assert.Contains("error", _err.ToString());
    }

    [Fact]
    public void ThreadsIsRecordedAndNegativeThreadsExitWithTwo()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string output = Path.Combine(_dir, "out");
        // The current count, so the process-wide torch setting the other tests see does not change.
        int current = TorchSharp.torch.get_num_threads();
        int code = Cli().Run(Train(data, output, "--steps", "1", "--save-every", "0", "--threads", current.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Assert.True(code == 0, _err.ToString());
        Assert.Equal(current, FineTuneJobJson.Read(Path.Combine(output, "train_config.json")).Threads);
        Assert.Equal(current, TorchSharp.torch.get_num_threads());

        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(data, Path.Combine(_dir, "out2"), "--steps", "1", "--threads", "-1")));
        Assert.Contains("--threads must be >= 0, got -1", _err.ToString());
    }

    [Fact]
    public void BadConfigKeysAndMissingOptionsExitWithTwo()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string config = Path.Combine(_dir, "config.json");
        File.WriteAllText(config, """{"stepz": 2}""");
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(data, Path.Combine(_dir, "out"), "--config", config)));
        Assert.Contains("unknown option 'stepz'", _err.ToString());

        File.WriteAllText(config, """{"steps": "many"}""");
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(data, Path.Combine(_dir, "out"), "--config", config)));
        Assert.Contains("'steps' must be an integer", _err.ToString());

        Assert.Equal(ExitCodes.BadInput, Cli().Run(["train", "--model", "toy", "--out", Path.Combine(_dir, "o")]));
        Assert.Contains("--data is required", _err.ToString());
    }

    [Fact]
    public void BadDatasetExitsWithTwoAndAnErrorEvent()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        File.AppendAllText(Path.Combine(data, "metadata.jsonl"), "{not json\n");
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(data, Path.Combine(_dir, "out"), "--strict")));
        var error = Events().Last();
        Assert.Equal("error", error.GetProperty("event").GetString());
        Assert.Equal("bad_input", error.GetProperty("kind").GetString());
        Assert.Contains("metadata.jsonl:5", error.GetProperty("message").GetString());
    }

    [Fact]
    public void DivergenceExitsWithThree()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        Assert.Equal(ExitCodes.Diverged, Cli(poison: true).Run(Train(data, Path.Combine(_dir, "out"), "--steps", "10", "--max-nan-steps", "2")));
        var error = Events().Last();
        Assert.Equal("diverged", error.GetProperty("kind").GetString());
        Assert.Equal(3, error.GetProperty("exit_code").GetInt32());
    }

    [Theory]
    [InlineData("model")]
    [InlineData("io")]
    public void AnUnexpectedErrorExitsWithOneAndAnErrorEvent(string failure)
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        // A model that fails to run in the middle of training, or an I/O error while the model is read.
        var cli = new TrainerCli(_ => failure == "io"
            ? throw new IOException("read error on the model's weights (simulated)")
            : new ToyDiffusionModel { FailPredictions = new InvalidOperationException("the UNet failed (simulated)") }, _out, _err);
        Assert.Equal(ExitCodes.Error, cli.Run(Train(data, Path.Combine(_dir, "out"), "--steps", "3")));
        Assert.Equal(1, ExitCodes.Error);
        var error = Events().Last();
        Assert.Equal("error", error.GetProperty("event").GetString());
        Assert.Equal("error", error.GetProperty("kind").GetString());
        Assert.Equal(1, error.GetProperty("exit_code").GetInt32());
        Assert.Contains("(simulated)", error.GetProperty("message").GetString());
        Assert.Contains("(simulated)", _err.ToString());
    }

    [Fact]
    public void CancellationWritesACheckpointAndExitsWith130ThenResumeLatestContinues()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string output = Path.Combine(_dir, "out");
        var cli = Cli();
        cli.Cancellation.Cancel();
        Assert.Equal(ExitCodes.Cancelled, cli.Run(Train(data, output, "--steps", "3")));
        Assert.NotNull(TrainingRun.LatestCheckpoint(output));

        Assert.Equal(0, Cli().Run(Train(data, output, "--steps", "2", "--save-every", "0")));
        _out.GetStringBuilder().Clear();
        Assert.Equal(0, Cli().Run(Train(data, output, "--steps", "3", "--resume", "latest")));
        var start = Events().First(e => e.GetProperty("event").GetString() == "start");
        Assert.Equal(2, start.GetProperty("start_step").GetInt64());
        Assert.Single(Events(), e => e.GetProperty("event").GetString() == "step");
    }

    [Fact]
    public void KohyaLoraFormatIsWrittenAndMergedThroughTheKeyGrammar()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string output = Path.Combine(_dir, "out");
        Assert.Equal(0, Cli().Run(Train(data, output, "--steps", "2", "--lora-alpha", "4", "--lr", "0.05", "--train-text-encoder", "--lora-format", "kohya")));
        string file = Path.Combine(output, LoraFile.DefaultName);
        var lora = TensorFile.Load(file);
        Assert.All(lora.Keys, k => Assert.True(k.StartsWith("lora_unet_", StringComparison.Ordinal) || k.StartsWith("lora_te_", StringComparison.Ordinal), k));
        Assert.Contains("lora_unet_down_attn2_to_q.lora_down.weight", lora.Keys);
        Assert.Contains("lora_unet_mid_attn2_to_out_0.lora_up.weight", lora.Keys);
        Assert.Contains("lora_te_q_proj.lora_down.weight", lora.Keys);
        Assert.All(lora.Where(kv => kv.Key.EndsWith(".alpha", StringComparison.Ordinal)), kv => Assert.Equal(4f, kv.Value.item<float>()));
        Assert.Equal(3 * 12, lora.Count);

        // read back through the grammar: peft names, kohya names mapped through the model's parameter names
        using (var model = new ToyDiffusionModel())
        {
            var (tensors, rank, alpha) = LoraFile.Load(file, c => (c == "unet" ? model.UNet : model.TextEncoder).named_parameters().Select(p => p.name).ToList());
            Assert.Equal(2, rank);
            Assert.Equal(4.0, alpha);
            Assert.True(tensors["unet.mid.attn2.to_out.0.lora_B.weight"].eq(lora["lora_unet_mid_attn2_to_out_0.lora_up.weight"]).all().item<bool>());
            Assert.True(tensors["text_encoder.q_proj.lora_A.weight"].eq(lora["lora_te_q_proj.lora_down.weight"]).all().item<bool>());
            Assert.Equal(2 * 12, tensors.Count);
            Assert.Throws<InvalidDataException>(() => LoraFile.Load(file)); // kohya names need the model's names
        }

        string merged = Path.Combine(_dir, "merged");
        Assert.Equal(0, Cli().Run(["merge", "--model", "toy", "--lora", file, "--out", merged]));
        var unet = TensorFile.Load(Path.Combine(merged, "unet", "diffusion_pytorch_model.safetensors"));
        using var fresh = new ToyDiffusionModel();
        var baseWeight = fresh.UNet.state_dict()["mid.attn2.to_out.0.weight"];
        var expected = baseWeight + lora["lora_unet_mid_attn2_to_out_0.lora_up.weight"].matmul(lora["lora_unet_mid_attn2_to_out_0.lora_down.weight"]).mul(4.0 / 2);
        Assert.True(allclose(unet["mid.attn2.to_out.0.weight"], expected, atol: 1e-6));
        Assert.False(allclose(unet["mid.attn2.to_out.0.weight"], baseWeight, atol: 1e-6));
    }

    [Fact]
    public void MergeFoldsTheLoraIntoTheWeights()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string output = Path.Combine(_dir, "out");
        Assert.Equal(0, Cli().Run(Train(data, output, "--steps", "2", "--lora-alpha", "4", "--lr", "0.05", "--train-text-encoder")));
        string merged = Path.Combine(_dir, "merged");
        Assert.Equal(0, Cli().Run(["merge", "--model", "toy", "--lora", Path.Combine(output, LoraFile.DefaultName), "--out", merged]));

        var lora = TensorFile.Load(Path.Combine(output, LoraFile.DefaultName));
        var unet = TensorFile.Load(Path.Combine(merged, "unet", "diffusion_pytorch_model.safetensors"));
        var text = TensorFile.Load(Path.Combine(merged, "text_encoder", "model.safetensors"));
        using var fresh = new ToyDiffusionModel();
        var baseWeight = fresh.UNet.state_dict()["down.attn2.to_q.weight"];
        var expected = baseWeight + lora["unet.down.attn2.to_q.lora_B.weight"].matmul(lora["unet.down.attn2.to_q.lora_A.weight"]).mul(4.0 / 2);
        Assert.True(allclose(unet["down.attn2.to_q.weight"], expected, atol: 1e-6));
        Assert.False(allclose(unet["down.attn2.to_q.weight"], baseWeight, atol: 1e-6));
        Assert.True(unet["conv_in.weight"].eq(fresh.UNet.state_dict()["conv_in.weight"]).all().item<bool>());
        // The text encoder's merged weights: W + (alpha/rank) B A for every adapted projection, the rest untouched.
        var freshText = fresh.TextEncoder.state_dict();
        int adapted = 0;
        foreach (var (name, mergedText) in text)
        {
            string stem = name[..^".weight".Length];
            if (lora.TryGetValue($"text_encoder.{stem}.lora_A.weight", out var a))
            {
                var expectedText = freshText[name] + lora[$"text_encoder.{stem}.lora_B.weight"].matmul(a).mul(4.0 / 2);
                Assert.True(allclose(mergedText, expectedText, atol: 1e-6), $"merged text encoder weight {name}");
                Assert.False(allclose(mergedText, freshText[name], atol: 1e-6), $"{name} did not change");
                adapted++;
            }
            else
            {
                Assert.True(mergedText.eq(freshText[name]).all().item<bool>(), $"{name} has no LoRA and must be unchanged");
            }
        }
        Assert.True(adapted > 0, "no text-encoder weight had a LoRA");
    }

    [Fact]
    public void HelpListsTheOptions()
    {
        Assert.Equal(0, Cli().Run(["train", "--help"]));
        string help = _out.ToString();
        foreach (var option in new[] { "--lora-rank", "--full", "--method", "--teacher-t", "--distance", "--tau", "--layers", "--config", "--resume", "--strict", "--progress" })
            Assert.Contains(option, help);
        _out.GetStringBuilder().Clear();
        Assert.Equal(0, Cli().Run(["merge", "--help"]));
        Assert.Contains("--lora", _out.ToString());
        Assert.Equal(0, Cli().Run(["bench", "--help"]));
    }
}
