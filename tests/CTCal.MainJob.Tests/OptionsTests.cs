using CTCal.Contracts;
using CTCal.Tests;
using Spectre.Console;
using Xunit;

namespace CTCal.MainJob.Tests;

public sealed class OptionsTests
{
    [Fact]
    public void NoArgumentsGiveTheDefaultRecipe()
    {
        var o = MainJobCli.ParseOptions();
        Assert.Equal(new MainJobRecipe() with { Seeds = o.Recipe.Seeds }, o.Recipe);
        Assert.Equal([1L, 2L, 3L], o.Recipe.Seeds);
        Assert.False(o.Quick);
        Assert.Equal(Path.GetFullPath("runs/renders"), o.OutputFolder);
        Assert.Equal(1, o.Threads);
        Assert.Empty(o.TrainerOverrides);
        Assert.Null(o.BaseModel);
        Assert.Equal(3, o.Recipe.Seeds.Count);
        Assert.Null(o.Recipe.PromptsPerCategory); // every evaluation prompt
    }

    [Fact]
    public void QuickStartsFromTheQuickRecipeAndOptionsOverrideSingleValues()
    {
        var o = MainJobCli.ParseOptions("--quick", "--steps", "7", "--lr", "3e-4", "--ctcal-weight", "0.3", "--seeds", "4,9", "--prompts", "2", "--image-seeds", "3", "--out", "x/y");
        Assert.True(o.Quick);
        Assert.Equal(Path.GetFullPath("x/y"), o.OutputFolder);
        Assert.Equal(7, o.Recipe.Steps);
        Assert.Equal(3e-4, o.Recipe.LearningRate);
        Assert.Equal(0.3, o.Recipe.CtcalWeight);
        Assert.Equal([4L, 9L], o.Recipe.Seeds);
        Assert.Equal(2, o.Recipe.PromptsPerCategory);
        Assert.Equal(3, o.Recipe.ImageSeeds);
        Assert.Equal(MainJobRecipe.Quick.SamplingSteps, o.Recipe.SamplingSteps);
        Assert.Equal(MainJobRecipe.Quick.BatchSize, o.Recipe.BatchSize);
        Assert.Equal(Path.GetFullPath("runs/renders-quick"), MainJobCli.ParseOptions("--quick").OutputFolder);
    }

    [Fact]
    public void SeedsAcceptACount()
    {
        Assert.Equal([1L, 2L, 3L, 4L], MainJobCli.ParseOptions("--seeds", "4").Recipe.Seeds);
        Assert.Equal([5L], MainJobCli.ParseOptions("--seeds", "5,").Recipe.Seeds);
    }

    [Fact]
    public void CtcalOptionsAndTrailingArgumentsPassThroughToTheTrainer()
    {
        var o = MainJobCli.ParseOptions("--teacher-t", "50", "--layers", "all", "--full", "--lora-rank", "8", "--tau", "0.1", "--", "--distance", "l1");
        Assert.Equal(["--teacher-t 50", "--layers all", "--full", "--lora-rank 8", "--tau 0.1", "--distance l1"], o.TrainerOverrides.Select(s => s.ToString()));
        var job = FineTuneJobJson.With(new FineTuneJob(), o.TrainerOverrides);
        Assert.Equal((50, true, 8, 0.1, "l1"), (job.TeacherT, job.Full, job.LoraRank, job.Tau, job.Distance));
        Assert.Equal(["all"], job.Layers);
    }

    [Theory]
    [InlineData("--steps 0", "--steps must be positive")]
    [InlineData("--lr -1", "--lr must be a positive number")]
    [InlineData("--seeds 1,1", "repeated seed")]
    [InlineData("--seeds a", "--seeds: 'a' is not an integer")]
    [InlineData("--threads 0", "--threads must be positive")]
    [InlineData("--prompts 0", "--prompts must be positive")]
    [InlineData("--guidance 0.5", "--guidance must be >= 1")]
    [InlineData("-- --method vanilla", "--method is set by the job itself")]
    [InlineData("-- --lr 1", "--lr is set by the job itself")]
    [InlineData("--bogus", "unrecognised argument(s): --bogus")]
    [InlineData("--steps 3 extra", "unrecognised argument(s): extra")]
    [InlineData("-- --lora-rank many", "--lora-rank must be an integer, got 'many'")]
    [InlineData("-- --stepz 3", "unknown option '--stepz'")]
    public void BadValuesNameTheOption(string args, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => MainJobCli.ParseOptions(args.Split(' ')));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public async Task ExitCodesAreTwoForBadUsageAndOneForAMissingBase()
    {
        var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Ansi = AnsiSupport.No });
        console.Profile.Width = 4000;
        Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["renders", "--steps", "0"], console, CancellationToken.None));
        Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["--parallel", "0"], console, CancellationToken.None));
        Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["--no-such-option"], console, CancellationToken.None));
        Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["sweep", "--lr", "x"], console, CancellationToken.None));

        string dir = TestPaths.NewTempDir("ctcal-main-opts");
        try
        {
            string missing = Path.Combine(dir, "no-base");
            int code = await MainJobCli.RunAsync(["--quick", "--base", missing, "--out", Path.Combine(dir, "out")], console, CancellationToken.None);
            Assert.Equal(ExitCodes.Failure, code);
            Assert.Contains($"base model folder {missing} not found", output.ToString().Replace(Environment.NewLine, "", StringComparison.Ordinal));
            output.GetStringBuilder().Clear();
            code = await MainJobCli.RunAsync(["renders", "--quick", "--base", missing, "--out", Path.Combine(dir, "out2")], console, CancellationToken.None);
            Assert.Equal(ExitCodes.Failure, code);
            Assert.Contains($"base model folder {missing} not found", output.ToString().Replace(Environment.NewLine, "", StringComparison.Ordinal));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task PrecisionRefusesFewerThanTwoModelsAndFoldersWithoutAManifestBeforeWritingAnything()
    {
        var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Ansi = AnsiSupport.No });
        console.Profile.Width = 4000;
        string dir = TestPaths.NewTempDir("ctcal-main-precision");
        try
        {
            string plain = Path.Combine(dir, "plain");
            Directory.CreateDirectory(plain);
            string manifest = Path.Combine(dir, "exported");
            Directory.CreateDirectory(manifest);
            File.WriteAllText(Path.Combine(manifest, "ctcal_manifest.json"), """{"format":"ctcal-onnx","formatVersion":2,"precision":"fp16","fp16":true}""");
            string outFolder = Path.Combine(dir, "out");

            Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["precision", "--model", manifest, "--out", outFolder], console, CancellationToken.None));
            Assert.Contains("--model: give at least two ONNX folders to compare, got 1", output.ToString());
            Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["precision", "--model", manifest, "--model", plain, "--out", outFolder], console, CancellationToken.None));
            Assert.Contains($"--model '{plain}' is not an exported ONNX folder (no ctcal_manifest.json)", output.ToString().Replace(Environment.NewLine, "", StringComparison.Ordinal));
            Assert.Equal(ExitCodes.BadUsage, await MainJobCli.RunAsync(["precision", "--model", manifest, "--model", manifest, "--out", outFolder], console, CancellationToken.None));
            Assert.Contains("folder names must differ", output.ToString());
            Assert.False(Directory.Exists(outFolder));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void BothMethodsGetTheSameTrainerJobButTheMethodAndAlignmentWeights()
    {
        var recipe = new MainJobRecipe { CtcalWeight = 0.4 };
        var jobs = FineTuneStage.MainJobs(recipe);
        Assert.Equal(["vanilla-s1", "ctcal-s1", "vanilla-s2", "ctcal-s2", "vanilla-s3", "ctcal-s3"], jobs.Select(j => j.ModelId));
        FineTuneJobSetting[] layersAll = [new("layers", new[] { "all" })];
        var vanilla = FineTuneStage.TrainerJob(jobs[0], recipe, 1, layersAll, "/base", "/data", "/runs/a");
        var ctcal = FineTuneStage.TrainerJob(jobs[1], recipe, 1, layersAll, "/base", "/data", "/runs/a");
        Assert.Equal("vanilla", vanilla.Method);
        Assert.Equal("ctcal", ctcal.Method);
        Assert.Equal(vanilla with { Method = "ctcal", PixelWeight = 0.4, SemanticWeight = 0.2, BalanceWeight = 0.04000000000000001 }, ctcal);
        Assert.Equal((FineTuneJob.Defaults.PixelWeight, FineTuneJob.Defaults.SemanticWeight, FineTuneJob.Defaults.BalanceWeight),
            (vanilla.PixelWeight, vanilla.SemanticWeight, vanilla.BalanceWeight));
        Assert.Equal((recipe.LearningRate, recipe.BatchSize, recipe.Resolution, 1L, recipe.Warmup, 1, 0, recipe.Steps),
            (ctcal.Lr, ctcal.BatchSize, ctcal.Resolution, ctcal.Seed, ctcal.Warmup, ctcal.Threads, ctcal.SaveEvery, ctcal.Steps));
        Assert.Equal(["all"], ctcal.Layers);
        Assert.Empty(ctcal.Problems());

        // An explicit balance weight wins over the scaled one; the reconstruction weight is not an alignment term and stays.
        var explicitBalance = FineTuneStage.TrainerJob(jobs[1], recipe, 1, [new("balance-weight", 0.3)], "/base", "/data", "/runs/a");
        Assert.Equal((0.3, 0.4, FineTuneJob.Defaults.ReconstructionWeight), (explicitBalance.BalanceWeight, explicitBalance.PixelWeight, explicitBalance.ReconstructionWeight));
    }

    [Fact]
    public void BaseRecipeGivesTheWorldSeedAndTheTrainingOptions()
    {
        Assert.Equal(["--steps", "400", "--batch-size", "16", "--lr", "1e-3"],
            BaseRecipeInfo.TrainingOptions("ctcal-train base vae --data data --out base --steps 400 --batch-size 16 --lr 1e-3 --threads 1"));
        Assert.Equal(["--steps", "10", "--ema-decay", "0.99"],
            BaseRecipeInfo.TrainingOptions("ctcal-train base unet --data d --vae base --out base --steps 10 --resume latest --save-every 250 --ema-decay 0.99"));

        string dir = TestPaths.NewTempDir("ctcal-main-recipe");
        try
        {
            Assert.Equal(BaseRecipeInfo.Default, BaseRecipeInfo.Read(dir));
            File.WriteAllText(Path.Combine(dir, BaseRecipeInfo.FileName),
                """{"command": "ctcal-train base unet --data x --vae b --out b --steps 99", "dataset": {"seed": 7}, "config": {"image_size": 48}, "vae": {"command": "ctcal-train base vae --steps 5"}}""");
            var info = BaseRecipeInfo.Read(dir);
            Assert.Equal(7UL, info.WorldSeed);
            Assert.Equal(48, info.ImageSize);
            Assert.Equal(["--steps", "99"], info.UnetArguments);
            Assert.Equal(["--steps", "5"], info.VaeArguments);

            File.WriteAllText(Path.Combine(dir, BaseRecipeInfo.FileName),
                """{"chain": ["ctcal-train base dataset --out data --count 20 --seed 1", "ctcal-train base vae --data data --out base --steps 4", "ctcal-train base unet --data data --vae base --out base --steps 80 --stop-at 30", "ctcal-train base unet --data data --vae base --out base --steps 50 --resume base/checkpoints/step-0000030.safetensors"], "command": "ctcal-train base unet --steps 50"}""");
            var chained = BaseRecipeInfo.Read(dir);
            Assert.Equal(["--steps", "4"], chained.VaeArguments);
            Assert.Equal(["--steps", "80", "--stop-at", "30"], chained.UnetArguments);
            var continuation = Assert.Single(chained.UnetContinuations!);
            Assert.Equal(["--steps", "50"], continuation);

            File.WriteAllText(Path.Combine(dir, BaseRecipeInfo.FileName), """{"chain": "ctcal-train base unet"}""");
            Assert.Contains("chain", Assert.Throws<InvalidDataException>(() => BaseRecipeInfo.Read(dir)).Message);

            File.WriteAllText(Path.Combine(dir, BaseRecipeInfo.FileName), """{"world_seed": "x"}""");
            var e = Assert.Throws<InvalidDataException>(() => BaseRecipeInfo.Read(dir));
            Assert.Contains("world_seed", e.Message);
            Assert.Contains(BaseRecipeInfo.FileName, e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ABaseOfTheOtherFamilyIsRefusedNamingTheOptionThatFitsIt()
    {
        string sd1 = Path.Combine(TestPaths.RepoRoot, "assets", "base-model");
        BaseModelStage.Validate(sd1);
        var e = Assert.Throws<InvalidDataException>(() => BaseModelStage.Validate(sd1, "sd3"));
        Assert.Contains(sd1, e.Message);
        Assert.Contains("--family sd1", e.Message);
    }

    [Fact]
    public void AnIncompleteSd3BaseNamesItsMissingParts()
    {
        string dir = TestPaths.NewTempDir("ctcal-main-base-sd3");
        try
        {
            File.WriteAllText(Path.Combine(dir, "model_index.json"), "{\"_class_name\": \"StableDiffusion3Pipeline\"}");
            var e = Assert.Throws<FileNotFoundException>(() => BaseModelStage.Validate(dir, "sd3"));
            Assert.Contains(dir, e.Message);
            foreach (string part in new[] { "transformer/config.json", "text_encoder_2/config.json", "tokenizer_2/vocab.json" })
            {
                Assert.Contains(part, e.Message);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void AnIncompleteBaseFolderNamesTheMissingFile()
    {
        string dir = TestPaths.NewTempDir("ctcal-main-base");
        try
        {
            File.WriteAllText(Path.Combine(dir, "model_index.json"), "{}");
            var bad = Assert.Throws<InvalidDataException>(() => BaseModelStage.Validate(dir));
            Assert.Contains("_class_name", bad.Message);
            File.WriteAllText(Path.Combine(dir, "model_index.json"), "{\"_class_name\": \"StableDiffusionPipeline\"}");
            var e = Assert.Throws<FileNotFoundException>(() => BaseModelStage.Validate(dir));
            Assert.Contains(dir, e.Message);
            Assert.Contains("unet/diffusion_pytorch_model.safetensors", e.Message);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
