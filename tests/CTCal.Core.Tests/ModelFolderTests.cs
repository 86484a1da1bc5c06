using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

public sealed class ModelFolderTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string TinySd1 => Path.Combine(TestPaths.Fixtures, "tiny-sd1");

    private string Touch(string relative)
    {
        string path = Path.Combine(_dir, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "x");
        return path;
    }

    /// <summary>A complete layout of empty placeholder files (resolution only checks that files exist).</summary>
    private void MakeCompleteLayout(bool withWeights = true)
    {
        Touch("model_index.json");
        foreach (string c in new[] { "unet", "vae" })
        {
            Touch($"{c}/config.json");
            if (withWeights) Touch($"{c}/diffusion_pytorch_model.safetensors");
        }
        Touch("text_encoder/config.json");
        if (withWeights) Touch("text_encoder/model.safetensors");
        Touch("tokenizer/vocab.json");
        Touch("tokenizer/merges.txt");
        Touch("scheduler/scheduler_config.json");
    }

    [Fact]
    public void ResolvesTheTinySd1Fixture()
    {
        var folder = ModelFolder.Open(TinySd1);
        Assert.Equal(ModelComponents.All, folder.Available);
        Assert.Equal(Path.Combine(TinySd1, "unet", "config.json"), folder.Unet.ConfigPath);
        Assert.Equal(Path.Combine(TinySd1, "unet", "diffusion_pytorch_model.safetensors"), folder.Unet.WeightsPath);
        Assert.Equal(Path.Combine(TinySd1, "vae", "diffusion_pytorch_model.safetensors"), folder.Vae.WeightsPath);
        Assert.Equal(Path.Combine(TinySd1, "text_encoder", "model.safetensors"), folder.TextEncoder.WeightsPath);
        Assert.Equal(Path.Combine(TinySd1, "tokenizer", "vocab.json"), folder.Tokenizer.VocabPath);
        Assert.Equal(Path.Combine(TinySd1, "tokenizer", "merges.txt"), folder.Tokenizer.MergesPath);
        Assert.Equal(Path.Combine(TinySd1, "scheduler", "scheduler_config.json"), folder.SchedulerConfigPath);
        Assert.Equal(Path.Combine(TinySd1, "model_index.json"), folder.ModelIndexPath);
        Assert.Equal([32, 64], folder.LoadUNetConfig().BlockOutChannels);
        Assert.Equal(4, folder.LoadVaeConfig().LatentChannels);
        Assert.Equal(32, folder.LoadTextEncoderConfig().HiddenSize);
        Assert.Equal("StableDiffusionPipeline", folder.LoadModelIndex()!.ClassName);
    }

    /// <summary>An SD3 diffusers layout (placeholders): transformer, two CLIP encoders and tokenizers, optional T5.</summary>
    private void MakeSd3Layout(bool withT5)
    {
        File.WriteAllText(Path.Combine(_dir, "model_index.json"), """{ "_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "SD3Transformer2DModel"] }""");
        foreach (string c in new[] { "transformer", "vae" })
        {
            Touch($"{c}/config.json");
            Touch($"{c}/diffusion_pytorch_model.safetensors");
        }
        foreach (string c in withT5 ? new[] { "text_encoder", "text_encoder_2", "text_encoder_3" } : ["text_encoder", "text_encoder_2"])
        {
            Touch($"{c}/config.json");
            Touch($"{c}/model.safetensors");
        }
        foreach (string t in new[] { "tokenizer", "tokenizer_2" })
        {
            Touch($"{t}/vocab.json");
            Touch($"{t}/merges.txt");
        }
        Touch("scheduler/scheduler_config.json");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ResolvesAnSd3LayoutWithOrWithoutT5(bool withT5)
    {
        MakeSd3Layout(withT5);
        var folder = ModelFolder.Open(_dir, ModelComponents.Sd3);
        Assert.True(folder.IsSD3);
        var expected = ModelComponents.Sd3 | (withT5 ? ModelComponents.TextEncoder3 : 0);
        Assert.Equal(expected, folder.Available);
        Assert.Equal(Path.Combine(_dir, "transformer", "diffusion_pytorch_model.safetensors"), folder.Transformer.WeightsPath);
        Assert.Equal(Path.Combine(_dir, "text_encoder_2", "model.safetensors"), folder.TextEncoder2.WeightsPath);
        Assert.Equal(Path.Combine(_dir, "tokenizer_2", "merges.txt"), folder.Tokenizer2.MergesPath);
        Assert.Equal(withT5 ? Path.Combine(_dir, "text_encoder_3", "model.safetensors") : null, folder.TextEncoder3OrNull?.WeightsPath);
        Assert.Throws<ModelFolderException>(() => folder.Unet);
        Assert.False(ModelFolder.Open(TinySd1).IsSD3);
    }

    [Theory]
    [InlineData(ModelFolder.SD3OnnxPipelineClass, true)]    // an SD3 ONNX export (Optimum's class name)
    [InlineData("ORTStableDiffusionPipeline", false)]       // an SD 1.x/2.x ONNX export
    public void AnOnnxExportIsSd3ByItsModelIndexClass(string className, bool sd3)
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "model_index.json"), $$"""{"_class_name": "{{className}}", "_diffusers_version": "0.29.2"}""");
        Assert.Equal(sd3, ModelFolder.Open(_dir, ModelComponents.None).IsSD3);
    }

    [Fact]
    public void AnSd3FolderMissingItsSecondEncoderAndT5AskedForByNameListsThem()
    {
        MakeSd3Layout(withT5: false);
        Directory.Delete(Path.Combine(_dir, "text_encoder_2"), recursive: true);
        var ex = Assert.Throws<ModelFolderException>(() => ModelFolder.Open(_dir, ModelComponents.Sd3 | ModelComponents.TextEncoder3));
        Assert.Contains("text_encoder_2/config.json", ex.Message);
        Assert.Contains("text_encoder_2/model.safetensors", ex.Message);
        Assert.Contains("text_encoder_3/config.json", ex.Message);
        Assert.Equal(4, ex.Problems.Count);
        // an SD 1.x/2.x open of the same folder names the UNet and nothing of SD3's
        ex = Assert.Throws<ModelFolderException>(() => ModelFolder.Open(_dir));
        Assert.Equal(["missing unet/config.json"], ex.Problems.Where(p => p.Contains("unet/config", StringComparison.Ordinal)));
        Assert.DoesNotContain(ex.Problems, p => p.Contains("text_encoder_2", StringComparison.Ordinal));
    }

    [Fact]
    public void EmptyFolderListsEverythingMissing()
    {
        var ex = Assert.Throws<ModelFolderException>(() => ModelFolder.Open(_dir));
        Assert.Contains(_dir, ex.Message);
        foreach (string expected in new[]
        {
            "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
            "scheduler/scheduler_config.json",
        })
        {
            Assert.Contains(expected, ex.Message);
        }
        Assert.Equal(9, ex.Problems.Count);
    }

    [Fact]
    public void OneMissingFileIsNamed()
    {
        MakeCompleteLayout();
        File.Delete(Path.Combine(_dir, "tokenizer", "merges.txt"));
        var ex = Assert.Throws<ModelFolderException>(() => ModelFolder.Open(_dir));
        Assert.Equal(["missing tokenizer/merges.txt"], ex.Problems);
        Assert.Contains("tokenizer/merges.txt", ex.Message);
    }

    [Fact]
    public void OnlyRequiredComponentsMustExist()
    {
        Touch("unet/config.json");
        Touch("unet/diffusion_pytorch_model.safetensors");
        var folder = ModelFolder.Open(_dir, ModelComponents.Unet);
        Assert.Equal(ModelComponents.Unet, folder.Available);
        Assert.Null(folder.ModelIndexPath);
        Assert.NotNull(folder.Unet);
        var ex = Assert.Throws<ModelFolderException>(() => folder.Vae);
        Assert.Contains("vae", ex.Message);
    }

    [Fact]
    public void Fp16VariantIsUsedWhenItIsTheOnlyWeightsFile()
    {
        MakeCompleteLayout();
        File.Delete(Path.Combine(_dir, "unet", "diffusion_pytorch_model.safetensors"));
        string fp16 = Touch("unet/diffusion_pytorch_model.fp16.safetensors");
        var folder = ModelFolder.Open(_dir);
        Assert.Equal(fp16, folder.Unet.WeightsPath);
        Assert.Equal(Path.Combine(_dir, "vae", "diffusion_pytorch_model.safetensors"), folder.Vae.WeightsPath);
    }

    [Fact]
    public void RequestedVariantIsPreferredAndPlainIsTheFallback()
    {
        MakeCompleteLayout();
        string fp16 = Touch("unet/diffusion_pytorch_model.fp16.safetensors");
        Assert.Equal(Path.Combine(_dir, "unet", "diffusion_pytorch_model.safetensors"), ModelFolder.Open(_dir).Unet.WeightsPath);
        var folder = ModelFolder.Open(_dir, variant: "fp16");
        Assert.Equal(fp16, folder.Unet.WeightsPath);
        Assert.Equal(Path.Combine(_dir, "vae", "diffusion_pytorch_model.safetensors"), folder.Vae.WeightsPath);
        Assert.Throws<ArgumentException>(() => ModelFolder.Open(_dir, variant: "../x"));
    }

    [Theory]
    [InlineData("unet/diffusion_pytorch_model.bin")]
    [InlineData("unet/diffusion_pytorch_model.ckpt")]
    [InlineData("unet/diffusion_pytorch_model.pt")]
    [InlineData("unet/diffusion_pytorch_model.pth")]
    public void PickleOnlyWeightsAreRefusedWithReasonAndRemedy(string pickle)
    {
        MakeCompleteLayout();
        File.Delete(Path.Combine(_dir, "unet", "diffusion_pytorch_model.safetensors"));
        Touch(pickle);
        var ex = Assert.Throws<ModelFolderException>(() => ModelFolder.Open(_dir));
        Assert.Single(ex.Problems);
        Assert.Contains(Path.GetFileName(pickle), ex.Message);
        Assert.Contains("pickle", ex.Message);
        Assert.Contains("arbitrary code", ex.Message);
        Assert.Contains("safetensors", ex.Message);
    }

    [Fact]
    public void PickleBesideSafetensorsIsIgnored()
    {
        MakeCompleteLayout();
        Touch("text_encoder/pytorch_model.bin");
        Assert.Equal(Path.Combine(_dir, "text_encoder", "model.safetensors"), ModelFolder.Open(_dir).TextEncoder.WeightsPath);
    }

    [Theory]
    [InlineData("v1-5-pruned.ckpt")]
    [InlineData("model.pt")]
    public void PickleCheckpointGivenAsTheFolderIsRefused(string name)
    {
        string file = Touch(name);
        var ex = Assert.Throws<ModelFolderException>(() => ModelFolder.Open(file));
        Assert.Contains(name, ex.Message);
        Assert.Contains("arbitrary code", ex.Message);
        Assert.Contains("safetensors", ex.Message);
    }

    [Fact]
    public void MissingFolderIsNamed()
    {
        string missing = Path.Combine(_dir, "nope");
        var ex = Assert.Throws<ModelFolderException>(() => ModelFolder.Open(missing));
        Assert.Contains(missing, ex.Message);
        Assert.Contains("does not exist", ex.Message);
    }

    [Fact]
    public void EnsureSafetensorsAcceptsOnlySafetensors()
    {
        WeightFiles.EnsureSafetensors("a/b/model.safetensors");
        var pickle = Assert.Throws<ModelFolderException>(() => WeightFiles.EnsureSafetensors("a/b/model.ckpt"));
        Assert.Contains("model.ckpt", pickle.Message);
        Assert.Contains("arbitrary code", pickle.Message);
        var other = Assert.Throws<ModelFolderException>(() => WeightFiles.EnsureSafetensors("a/b/model.onnx"));
        Assert.Contains("model.onnx", other.Message);
    }

    [Fact]
    public void ConfigErrorsStillNameTheConfigFile()
    {
        MakeCompleteLayout();
        var folder = ModelFolder.Open(_dir);
        var ex = Assert.Throws<DiffusersConfigException>(() => folder.LoadUNetConfig());
        Assert.Contains(Path.Combine(_dir, "unet", "config.json"), ex.Message);
    }
}
