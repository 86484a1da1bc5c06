using CTCal.Core.Checkpoints;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Weights;
using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>
/// The trainer reads every weights layout through Core: an original single-file checkpoint loads the same modules as the
/// folder it was written from (SD1 and SD2, bf16 too), sharded folders load, and <c>ctcal-train train --model file.safetensors</c> trains.
/// </summary>
public sealed class SingleFileModelTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-single-file");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static void AssertSameStateDict(TorchSharp.torch.nn.Module expected, TorchSharp.torch.nn.Module actual)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.Equal(a.Keys.Order(StringComparer.Ordinal), b.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, tensor) in a) Assert.True(tensor.eq(b[name]).all().item<bool>(), $"{name} differs");
    }

    [Theory]
    [InlineData(ModelFamily.Sd1, SafetensorsDType.F32)]
    [InlineData(ModelFamily.Sd2, SafetensorsDType.F32)]
    [InlineData(ModelFamily.Sd2, SafetensorsDType.BF16)]
    public void Single_file_loads_the_same_modules_as_its_folder(string family, SafetensorsDType dtype)
    {
        string source = family == ModelFamily.Sd2 ? TestWeightFolders.TinySd2 : TestWeightFolders.TinySd1;
        string folder = TestWeightFolders.Copy(source, Path.Combine(_dir, "folder"), dtype, shards: dtype == SafetensorsDType.BF16 ? 2 : 1);
        string file = TestWeightFolders.WriteSingleFile(folder, Path.Combine(_dir, "model.safetensors"), family);
        var notes = new List<string>();
        using var fromFolder = DiffusersTrainableModel.Load(folder);
        using var fromFile = DiffusersTrainableModel.LoadSingleFile(file, new SingleFileOptions { ConfigFolder = folder }, notes.Add);
        AssertSameStateDict(fromFolder.UNetModel, fromFile.UNetModel);
        AssertSameStateDict(fromFolder.TextModel, fromFile.TextModel);
        AssertSameStateDict(fromFolder.Vae, fromFile.Vae);
        Assert.Equal(fromFolder.PredictionType, fromFile.PredictionType);
        Assert.Contains(notes, n => n.Contains(family, StringComparison.Ordinal));
        Assert.Equal(file, fromFile.Folder);
    }

    [Fact]
    public void A_pickle_checkpoint_is_refused_naming_it()
    {
        string ckpt = Path.Combine(_dir, "model.ckpt");
        File.WriteAllBytes(ckpt, [0x80, 0x02]);
        var e = Assert.Throws<ModelFolderException>(() => DiffusersTrainableModel.Load(ckpt));
        Assert.Contains(ckpt, e.Message);
        Assert.Contains("pickle", e.Message);
    }

    [Fact]
    public void Mismatched_weights_name_the_single_file_and_key()
    {
        // a config folder whose UNet is not the file's: the strict load lists the keys and names the file
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_dir, "sd1.safetensors"), ModelFamily.Sd1);
        var checkpoint = SingleFileCheckpoint.Open(file, new SingleFileOptions { ConfigFolder = TestWeightFolders.TinySd1 });
        using var weights = checkpoint.OpenWeights("unet");
        using var other = new UNet2DConditionModel(Core.Diffusers.UNetConfig.Load(Path.Combine(TestWeightFolders.TinySd2, "unet", "config.json")));
        var e = Assert.Throws<StateDictMismatchException>(() => DiffusersWeights.Load(other, weights));
        Assert.Contains(file, e.Message);
        Assert.Contains("model.diffusion_model.", e.Message);
    }

    [Fact]
    public void Command_line_trains_from_a_single_file()
    {
        string file = TestWeightFolders.WriteSingleFile(TestWeightFolders.TinySd1, Path.Combine(_dir, "sd1.safetensors"), ModelFamily.Sd1,
            (map, sources) => TestWeightFolders.EmaCopy(map, sources, 0f).ToList());
        string data = TrainingRunTests.MakeDataset(_dir, size: 32);
        string output = Path.Combine(_dir, "run");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var cli = new TrainerCli(DiffusersTrainableModel.Load, stdout, stderr,
            loadSingleFile: (path, options) => DiffusersTrainableModel.LoadSingleFile(path, options));
        int code = cli.Run(["train", "--model", file, "--model-config", TestWeightFolders.TinySd1, "--ema", "--prediction-type", "epsilon",
            "--data", data, "--out", output, "--resolution", "32", "--steps", "1", "--batch-size", "2", "--progress", "json",
            "--validation-prompts", "a red cube", "--validation-steps", "2"]);
        Assert.True(code == 0, stderr.ToString());
        Assert.Contains("\"event\":\"done\"", stdout.ToString());
        Assert.True(File.Exists(Path.Combine(output, LoraFile.DefaultName)));

        // without a tokenizer the run stops before writing anything, naming the file and the option
        var err = new StringWriter();
        var bare = new TrainerCli(DiffusersTrainableModel.Load, new StringWriter(), err,
            loadSingleFile: (path, options) => DiffusersTrainableModel.LoadSingleFile(path, options));
        int refused = bare.Run(["train", "--model", file, "--data", data, "--out", Path.Combine(_dir, "run2"), "--resolution", "32", "--steps", "1"]);
        Assert.NotEqual(0, refused);
        Assert.Contains("--tokenizer", err.ToString());
    }
}
