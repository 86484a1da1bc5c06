using Xunit;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

public sealed class DiffusersWeightsTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-weights");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static UNet2DConditionModel TinyUNet() =>
        new(UNetConfig.Load(Path.Combine(ModelTestConfigs.TinySd1, "unet", "config.json")));

    [Fact]
    public void LoadSaveLoadGivesIdenticalTensorsAndTheSameNames()
    {
        using var scope = NewDisposeScope();
        string source = Path.Combine(ModelTestConfigs.TinySd1, "unet", "diffusion_pytorch_model.safetensors");
        using var first = TinyUNet();
        DiffusersWeights.Load(first, Path.Combine(ModelTestConfigs.TinySd1, "unet"));
        string saved = Path.Combine(_dir, "unet", "diffusion_pytorch_model.safetensors");
        DiffusersWeights.Save(first, saved, new Dictionary<string, string> { ["format"] = "pt" });

        using (var a = SafetensorsFile.Open(source))
        using (var b = SafetensorsFile.Open(saved))
        {
            Assert.Equal(a.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), b.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal));
            foreach (var t in a.Tensors)
            {
                Assert.Equal(t.Shape, b.GetInfo(t.Name).Shape);
                Assert.True(a.GetBytes(t.Name).SequenceEqual(b.GetBytes(t.Name)), t.Name);
            }
            Assert.Equal("pt", b.Metadata["format"]);
        }
        Assert.Empty(Directory.GetFiles(Path.Combine(_dir, "unet"), "*.tmp")); // written via temp + rename

        using var second = TinyUNet();
        DiffusersWeights.Load(second, Path.Combine(_dir, "unet"));
        var expected = first.state_dict();
        foreach (var (name, value) in second.state_dict())
            Assert.True(value.eq(expected[name]).all().item<bool>(), name);
    }

    [Theory]
    [InlineData(ScalarType.Float16, "F16")]
    [InlineData(ScalarType.BFloat16, "BF16")]
    public void HalfPrecisionVariantsLoadIntoFp32Models(ScalarType dtype, string header)
    {
        using var scope = NewDisposeScope();
        using var reference = TinyUNet();
        DiffusersWeights.Load(reference, Path.Combine(ModelTestConfigs.TinySd1, "unet"));
        reference.to(dtype);
        string folder = Path.Combine(_dir, "unet");
        string file = Path.Combine(folder, "diffusion_pytorch_model.fp16.safetensors");
        DiffusersWeights.Save(reference, file);
        using (var f = SafetensorsFile.Open(file)) Assert.All(f.Tensors, t => Assert.Equal(header, t.DType.ToHeaderName()));

        Assert.Equal(file, DiffusersWeights.ResolveWeightsFile(folder)); // the only file: the .fp16 variant is used
        using var model = TinyUNet();
        DiffusersWeights.Load(model, folder);
        var halves = reference.state_dict();
        foreach (var (name, value) in model.state_dict())
        {
            Assert.Equal(ScalarType.Float32, value.dtype);
            Assert.True(value.eq(halves[name].to(ScalarType.Float32)).all().item<bool>(), name);
        }
    }

    [Fact]
    public void VariantPreferenceFollowsTheRequest()
    {
        string folder = Path.Combine(_dir, "text_encoder");
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "model.safetensors"), "");
        File.WriteAllText(Path.Combine(folder, "model.fp16.safetensors"), "");
        Assert.EndsWith("model.safetensors", DiffusersWeights.ResolveWeightsFile(folder));
        Assert.EndsWith("model.fp16.safetensors", DiffusersWeights.ResolveWeightsFile(folder, "fp16"));
    }

    [Fact]
    public void StrictCheckListsMissingUnexpectedAndMisshapenKeysAndLeavesTheModelUntouched()
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        var config = ModelTestConfigs.GeluClip();
        using var clip = new CLIPTextModel(config);
        var state = clip.state_dict();
        var entries = new List<SafetensorsWriteEntry>();
        foreach (var (name, value) in state)
        {
            if (name == "text_model.encoder.layers.1.mlp.fc2.bias") continue; // missing
            long[] shape = name == "text_model.final_layer_norm.weight" ? [17] : value.shape; // wrong shape
            entries.Add(SafetensorsWriteEntry.FromFloat32(name, shape, new float[shape.Aggregate(1L, (a, b) => a * b)]));
        }
        entries.Add(SafetensorsWriteEntry.FromFloat32("text_model.encoder.layers.2.mlp.fc1.weight", [2, 2], new float[4])); // unexpected
        string file = Path.Combine(_dir, "model.safetensors");
        SafetensorsWriter.Write(file, entries);

        var before = state["text_model.embeddings.token_embedding.weight"].clone();
        var e = Assert.Throws<StateDictMismatchException>(() => DiffusersWeights.Load(clip, file));
        Assert.Equal(["text_model.encoder.layers.1.mlp.fc2.bias"], e.Missing);
        Assert.Equal(["text_model.encoder.layers.2.mlp.fc1.weight"], e.Unexpected);
        Assert.Single(e.ShapeMismatches);
        Assert.Contains("text_model.encoder.layers.1.mlp.fc2.bias", e.Message);
        Assert.Contains("text_model.encoder.layers.2.mlp.fc1.weight", e.Message);
        Assert.Contains("text_model.final_layer_norm.weight: file [17], model [16]", e.Message);
        Assert.Contains(file, e.Message);
        Assert.True(clip.state_dict()["text_model.embeddings.token_embedding.weight"].eq(before).all().item<bool>());
    }

    [Fact]
    public void ClipPositionIdsBufferFromOlderCheckpointsIsSkippedOnlyWhenIgnorable()
    {
        using var scope = NewDisposeScope();
        using var clip = new CLIPTextModel(ModelTestConfigs.GeluClip());
        var entries = clip.state_dict().Select(kv => SafetensorsWriteEntry.FromFloat32(kv.Key, kv.Value.shape, kv.Value.data<float>().ToArray())).ToList();
        entries.Add(SafetensorsWriteEntry.FromBytes("text_model.embeddings.position_ids", SafetensorsDType.I64, [1, 12], new byte[96]));
        string file = Path.Combine(_dir, "model.safetensors");
        SafetensorsWriter.Write(file, entries);
        Assert.Throws<StateDictMismatchException>(() => DiffusersWeights.Load(clip, file));
        DiffusersWeights.Load(clip, file, CLIPTextModel.IgnorableKeys);
    }

    [Fact]
    public void ShardedCheckpointsLoadThroughTheirIndex()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var clip = new CLIPTextModel(ModelTestConfigs.GeluClip());
        var state = clip.state_dict().ToList();
        var map = new Dictionary<string, string>();
        for (int shard = 0; shard < 2; shard++)
        {
            string name = $"model-0000{shard + 1}-of-00002.safetensors";
            var part = state.Where((_, i) => i % 2 == shard).ToList();
            SafetensorsWriter.Write(Path.Combine(_dir, name),
                part.Select(kv => SafetensorsWriteEntry.FromFloat32(kv.Key, kv.Value.shape, kv.Value.data<float>().ToArray())).ToList());
            foreach (var kv in part) map[kv.Key] = name;
        }
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"),
            System.Text.Json.JsonSerializer.Serialize(new { metadata = new { }, weight_map = map }));
        using var other = new CLIPTextModel(ModelTestConfigs.GeluClip());
        DiffusersWeights.Load(other, _dir);
        foreach (var (name, value) in other.state_dict())
            Assert.True(value.eq(clip.state_dict()[name]).all().item<bool>(), name);

        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"), """{"weight_map": {"a": "../outside.safetensors"}}""");
        Assert.Throws<UnsafePathException>(() => DiffusersWeights.Load(other, _dir));
    }

    [Theory]
    [InlineData("diffusion_pytorch_model.bin")]
    [InlineData("model.ckpt")]
    [InlineData("weights.pt")]
    [InlineData("weights.pth")]
    public void PickleCheckpointsAreRefusedWithTheReasonAndTheAlternative(string name)
    {
        string file = Path.Combine(_dir, name);
        File.WriteAllBytes(file, [0x80, 0x02]); // a pickle protocol header: must never be parsed
        using var unet = TinyUNet();
        var direct = Assert.Throws<ModelFolderException>(() => DiffusersWeights.Load(unet, file));
        Assert.Contains("execute arbitrary code", direct.Message);
        Assert.Contains("safetensors", direct.Message);
        Assert.Contains(name, direct.Message);
        var folder = Assert.Throws<ModelFolderException>(() => DiffusersWeights.Load(unet, _dir));
        Assert.Contains("execute arbitrary code", folder.Message);
    }

    [Fact]
    public void PretrainedModelsLoadTheTinyPipelineFolderWithFrozenParts()
    {
        using var scope = NewDisposeScope();
        var folder = ModelFolder.Open(ModelTestConfigs.TinySd1);
        var device = DeviceSelector.Select("auto");
        using var unet = PretrainedModels.LoadUNet(folder.Unet, device);
        using var vae = PretrainedModels.LoadVae(folder.Vae, device, DeviceSelector.FrozenDType(device));
        using var text = PretrainedModels.LoadTextEncoder(folder.TextEncoder, device, DeviceSelector.FrozenDType(device));
        Assert.All(unet.parameters(), p => Assert.True(p.requires_grad));
        Assert.All(vae.parameters(), p => Assert.False(p.requires_grad));
        Assert.All(text.parameters(), p => Assert.False(p.requires_grad));
        Assert.False(text.training);
        var io = FixtureTensors.Read(Path.Combine(ModelTestConfigs.TinySd1, "text_encoder_io.safetensors"));
        using var _ = no_grad();
        Assert.True(FixtureTensors.MaxAbsDiff(text.forward(io["input_ids"]).LastHiddenState, io["last_hidden_state"]) <= 1e-4);
    }

    [Fact]
    public void DeviceSelectorNamesWhatIsWrong()
    {
        Assert.Equal(DeviceType.CPU, DeviceSelector.Select("cpu").type);
        Assert.Equal(cuda.is_available() ? DeviceType.CUDA : DeviceType.CPU, DeviceSelector.Select(null).type);
        Assert.Contains("tpu", Assert.Throws<ArgumentException>(() => DeviceSelector.Select("tpu")).Message);
        if (!cuda.is_available()) Assert.Contains("not available", Assert.Throws<ArgumentException>(() => DeviceSelector.Select("cuda:0")).Message);
        Assert.Equal(ScalarType.Float32, DeviceSelector.FrozenDType(CPU));
        Assert.Equal(ScalarType.BFloat16, DeviceSelector.FrozenDType(CPU, "bf16"));
        Assert.Throws<ArgumentException>(() => DeviceSelector.FrozenDType(CPU, "fp16"));
    }
}
