using CTCal.Tests;
using CTCal.Trainer.Cli;
using CTCal.Trainer.Training;
using Xunit;

namespace CTCal.Trainer.Tests;

/// <summary>
/// What <c>ctcal-train</c> may write and when: never into a folder it reads (the model, the dataset), and nothing at all
/// until every option is checked; a run that fails before its first step leaves no output folder behind, or the folder
/// exactly as it was.
/// </summary>
public sealed class TrainerOutputSafetyTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-outsafe");
    private readonly StringWriter _out = new();
    private readonly StringWriter _err = new();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private TrainerCli Cli() => new(_ => new ToyDiffusionModel(), _out, _err);

    private static string[] Train(string model, string data, string output, params string[] extra) =>
        ["train", "--model", model, "--data", data, "--out", output, .. extra.Contains("--resolution") ? Array.Empty<string>() : ["--resolution", "8"],
         "--batch-size", "2", .. extra.Contains("--lora-rank") ? Array.Empty<string>() : ["--lora-rank", "2"],
         "--layers", "all", "--progress", "none", .. extra.Contains("--steps") ? Array.Empty<string>() : ["--steps", "2"], .. extra];

    /// <summary>A folder shaped like a diffusers model (the toy loader ignores it; the path checks do not).</summary>
    private string MakeModelFolder()
    {
        string model = Path.Combine(_dir, "models", "base");
        Directory.CreateDirectory(Path.Combine(model, "unet"));
        File.WriteAllBytes(Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors"), [1, 2, 3, 4, 5, 6, 7, 8]);
        File.WriteAllText(Path.Combine(model, "unet", "config.json"), "{}");
        File.WriteAllText(Path.Combine(model, "model_index.json"), "{}");
        return model;
    }

    /// <summary>Every file (relative path -> bytes) and folder (relative path -> null) under <paramref name="root"/>.</summary>
    private static SortedDictionary<string, byte[]?> Snapshot(string root)
    {
        var result = new SortedDictionary<string, byte[]?>(StringComparer.Ordinal);
        if (!Directory.Exists(root)) return result;
        foreach (string entry in Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories))
            result[Path.GetRelativePath(root, entry)] = File.Exists(entry) ? File.ReadAllBytes(entry) : null;
        return result;
    }

    private static void AssertSame(SortedDictionary<string, byte[]?> before, SortedDictionary<string, byte[]?> after)
    {
        Assert.Equal(before.Keys, after.Keys);
        foreach (var (name, bytes) in before) Assert.True(bytes is null ? after[name] is null : after[name] is { } a && a.AsSpan().SequenceEqual(bytes), $"{name} changed");
    }

    public static TheoryData<string> OverlappingOutputs => new() { "same", "inside", "containing" };

    private static string OutputFor(string kind, string folder) => kind switch
    {
        "same" => folder,
        "inside" => Path.Combine(folder, "unet"),
        _ => Path.GetDirectoryName(folder)!,
    };

    [Theory]
    [MemberData(nameof(OverlappingOutputs))]
    public void TrainRefusesAnOutputThatOverlapsTheModelBeforeWritingAnything(string kind)
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string model = MakeModelFolder();
        var before = Snapshot(Path.GetDirectoryName(model)!);
        string output = OutputFor(kind, model);

        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(model, data, output, "--full")));
        Assert.Contains($"--out '{Path.GetFullPath(output)}'", _err.ToString());
        Assert.Contains($"--model '{Path.GetFullPath(model)}'", _err.ToString());
        AssertSame(before, Snapshot(Path.GetDirectoryName(model)!));
    }

    [Fact]
    public void TrainRefusesAnOutputThatOverlapsTheModelThroughALink()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string model = MakeModelFolder();
        string link = Path.Combine(_dir, "link-to-model");
        Directory.CreateSymbolicLink(link, model);
        var before = Snapshot(model);
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(model, data, link, "--full")));
        Assert.Contains("must not be, contain or lie inside --model", _err.ToString());
        AssertSame(before, Snapshot(model));
    }

    [Theory]
    [MemberData(nameof(OverlappingOutputs))]
    public void TrainRefusesAnOutputThatOverlapsTheDataset(string kind)
    {
        string data = TrainingRunTests.MakeDataset(Directory.CreateDirectory(Path.Combine(_dir, "datasets")).FullName);
        string model = MakeModelFolder();
        var before = Snapshot(data);
        string output = kind == "inside" ? Path.Combine(data, "runs") : OutputFor(kind, data);
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(model, data, output)));
        Assert.Contains("--data", _err.ToString());
        AssertSame(before, Snapshot(data));
    }

    [Theory]
    [MemberData(nameof(OverlappingOutputs))]
    public void MergeRefusesAnOutputThatOverlapsTheModel(string kind)
    {
        string model = MakeModelFolder();
        string lora = Path.Combine(_dir, LoraFile.DefaultName);
        File.WriteAllBytes(lora, [0]);
        var before = Snapshot(Path.GetDirectoryName(model)!);
        Assert.Equal(ExitCodes.BadInput, Cli().Run(["merge", "--model", model, "--lora", lora, "--out", OutputFor(kind, model)]));
        Assert.Contains($"--model '{Path.GetFullPath(model)}'", _err.ToString());
        AssertSame(before, Snapshot(Path.GetDirectoryName(model)!));
    }

    [Theory]
    [InlineData("--resolution", "100000", "--resolution 100000 is outside [8, 4096]")]
    [InlineData("--resolution", "9", "--resolution 9 is not a multiple of the model's VAE scale factor 2")]
    [InlineData("--guidance", "NaN", "guidance must be a finite number in [0, 100] (got NaN)")]
    [InlineData("--guidance", "Infinity", "guidance must be a finite number in [0, 100]")]
    [InlineData("--max-grad-norm", "NaN", "max-grad-norm must be a finite number >= 0")]
    [InlineData("--weight-decay", "-1", "weight-decay must be a finite number >= 0")]
    [InlineData("--noise-offset", "NaN", "noise-offset must be a finite number in [0, 1]")]
    [InlineData("--min-snr-gamma", "0", "min-snr-gamma must be a finite number > 0")]
    [InlineData("--validation-steps", "0", "validation-steps must be in [1, 1000]")]
    [InlineData("--validation-scheduler", "warp", "validation-scheduler 'warp' is not one of")]
    [InlineData("--resume", "no-such-checkpoint.safetensors", "--resume no-such-checkpoint.safetensors: no such checkpoint file")]
    public void BadOptionsAreRefusedNamingTheOptionAndLeaveNoOutputFolder(string option, string value, string message)
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string output = Path.Combine(_dir, "out");
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(MakeModelFolder(), data, output, option, value)));
        Assert.Contains(message, _err.ToString());
        Assert.False(Directory.Exists(output), $"{output} was created by a run that failed before its first step");
    }

    [Fact]
    public void BadOptionsLeaveAnExistingOutputFolderExactlyAsItWas()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string model = MakeModelFolder();
        string output = Path.Combine(_dir, "out");
        Assert.Equal(0, Cli().Run(Train(model, data, output, "--save-every", "1")));
        var before = Snapshot(output);
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(model, data, output, "--guidance", "NaN", "--resume", "latest")));
        AssertSame(before, Snapshot(output));
    }

    /// <summary>
    /// A failure that can only show once the output is being written (here: resuming a checkpoint made with another LoRA rank)
    /// puts an existing run folder back byte for byte: train_config.json, train.log, checkpoints.
    /// </summary>
    [Fact]
    public void AFailedResumeLeavesTheRunFolderExactlyAsItWas()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string model = MakeModelFolder();
        string output = Path.Combine(_dir, "out");
        Assert.Equal(0, Cli().Run(Train(model, data, output, "--save-every", "1")));
        var before = Snapshot(output);
        Assert.Contains("train.log", before.Keys);
        Assert.Contains("train_config.json", before.Keys);

        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(model, data, output, "--resume", "latest", "--lora-rank", "3", "--steps", "4")));
        Assert.Contains("LoRA rank = 2, this run has 3", _err.ToString());
        AssertSame(before, Snapshot(output));
    }

    [Fact]
    public void AFailedResumeInANewFolderRemovesIt()
    {
        string data = TrainingRunTests.MakeDataset(_dir);
        string model = MakeModelFolder();
        string first = Path.Combine(_dir, "first");
        Assert.Equal(0, Cli().Run(Train(model, data, first, "--save-every", "1")));
        string checkpoint = TrainingRun.LatestCheckpoint(first)!;
        string output = Path.Combine(_dir, "second");
        Assert.Equal(ExitCodes.BadInput, Cli().Run(Train(model, data, output, "--resume", checkpoint, "--lora-rank", "3")));
        Assert.False(Directory.Exists(output));
    }
}
