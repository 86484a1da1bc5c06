using System.Text.Json.Nodes;
using CTCal.Core.Models;
using CTCal.Export;
using CTCal.Export.Onnx;
using CTCal.Tests;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>A <see cref="TinySD3Pipeline"/> exported once (every part of it this exporter writes) for one test class.</summary>
public abstract class ExportedSD3Pipeline : IDisposable
{
    protected ExportedSD3Pipeline(int seed, string name, bool withT5)
    {
        Pipeline = new TinySD3Pipeline(seed, TestPaths.NewTempDir(name), withT5: withT5);
        OnnxFolder = Path.Combine(Pipeline.Root, "onnx");
        OnnxExporter.Export(new ExportOptions { ModelFolder = Pipeline.Folder, OutputFolder = OnnxFolder });
    }

    public TinySD3Pipeline Pipeline { get; }

    public string OnnxFolder { get; }

    public void Dispose()
    {
        Pipeline.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>The tiny SD3 pipeline without T5, exported.</summary>
public sealed class SD3Export() : ExportedSD3Pipeline(seed: 31, "ctcal-integration-sd3", withT5: false);

/// <summary>
/// TorchSharp SD3 parts -> diffusers StableDiffusion3Pipeline folder -> OnnxExporter -> ONNX Runtime gives the TorchSharp
/// outputs within 1e-4 (fp32) for the transformer, both CLIP text encoders with projection and the 16-channel VAE.
/// </summary>
public sealed class SD3ExportParityTests(SD3Export export, Xunit.Abstractions.ITestOutputHelper log) : IClassFixture<SD3Export>
{
    private TinySD3Pipeline P => export.Pipeline;

    private string Onnx(string part) => Path.Combine(export.OnnxFolder, part, "model.onnx");

    [Theory]
    [InlineData(2, 10, 6, 1000f, 20f)]   // 5 x 3 patches: an off-centre crop of the 8 x 8 position table
    [InlineData(2, 16, 16, 500.5f, 3f)]  // 8 x 8 patches: the whole table
    [InlineData(1, 4, 12, 250f, 250f)]   // 2 x 6 patches, batch 1
    public void SD3_transformer_out_hidden_states_match_torch(int batch, int height, int width, float t0, float t1)
    {
        using var scope = NewDisposeScope();
        var g = new Generator(41);
        var config = P.Transformer.Config;
        var latents = randn(new long[] { batch, config.InChannels, height, width }, generator: g);
        var context = randn(new long[] { batch, 7, config.JointAttentionDim }, generator: g);
        var pooled = randn(new long[] { batch, config.PooledProjectionDim }, generator: g);
        float[] t = batch == 1 ? [t0] : [t0, t1];
        Tensor expected, otherTime, otherPooled;
        using (no_grad())
        {
            expected = P.Transformer.forward(latents, context, pooled, tensor(t));
            otherTime = P.Transformer.forward(latents, context, pooled, tensor(t.Select(v => v + 137f).ToArray()));
            otherPooled = P.Transformer.forward(latents, context, randn(new long[] { batch, config.PooledProjectionDim }, generator: g), tensor(t));
        }
        // both conditioning paths visibly shape the output, so the comparison tests them
        Assert.True(Compare.MaxAbsDiff(Compare.Floats(expected), Compare.Floats(otherTime)) > 1e-2, "timestep has no visible effect");
        Assert.True(Compare.MaxAbsDiff(Compare.Floats(expected), Compare.Floats(otherPooled)) > 1e-2, "pooled_projections have no visible effect");

        using var ort = new Ort(Onnx("transformer"));
        var (data, shape) = ort.Run(
            ("hidden_states", Compare.Floats(latents), latents.shape),
            ("encoder_hidden_states", Compare.Floats(context), context.shape),
            ("pooled_projections", Compare.Floats(pooled), pooled.shape),
            ("timestep", t, [t.Length]))["out_hidden_states"];
        Compare.Agree($"transformer out_hidden_states {height}x{width}", data, shape, expected, log);
    }

    [Theory]
    [InlineData("text_encoder")]
    [InlineData("text_encoder_2")]
    public void SD3_text_encoder_text_embeds_and_hidden_states_match_torch(string part)
    {
        using var scope = NewDisposeScope();
        var model = part == "text_encoder" ? P.TextEncoder : P.TextEncoder2;
        var c = model.Config;
        int bos = c.BosTokenId, eos = c.EosTokenId, pad = c.PadTokenId;
        // row 0: ids above eos after it (argmax and first-eos pooling pick different positions); row 1: padding after eos
        int[] ids =
        [
            bos, 900, 17, 3, eos, 990, 4, eos, pad, pad, pad, pad,
            bos, 5, 6, 7, 8, 9, eos, pad, pad, pad, pad, pad,
        ];
        var input = tensor(ids.Select(i => (long)i).ToArray(), new long[] { 2, 12 });
        Tensor embeds, last;
        Tensor[] hidden;
        using (no_grad()) (embeds, last, hidden) = model.forward(input);
        Assert.Equal(c.NumHiddenLayers + 1, hidden.Length);

        using var ort = new Ort(Onnx(part));
        var outputs = ort.Run(("input_ids", ids, [2, 12]));
        Assert.Equal(c.NumHiddenLayers + 3, outputs.Count); // text_embeds, last_hidden_state, hidden_states.0..N
        Compare.Agree($"{part} text_embeds", outputs["text_embeds"].Data, outputs["text_embeds"].Shape, embeds, log);
        Compare.Agree($"{part} last_hidden_state", outputs["last_hidden_state"].Data, outputs["last_hidden_state"].Shape, last, log);
        for (int i = 0; i < hidden.Length; i++)
            Compare.Agree($"{part} hidden_states.{i}", outputs[$"hidden_states.{i}"].Data, outputs[$"hidden_states.{i}"].Shape, hidden[i], log);
    }

    [Fact]
    public void SD3_vae_decoder_matches_torch_without_post_quant_conv()
    {
        using var scope = NewDisposeScope();
        var latents = randn(new long[] { 2, 16, 4, 6 }, generator: new Generator(43));
        Tensor expected;
        using (no_grad()) expected = P.Vae.Decode(latents);
        using var ort = new Ort(Onnx("vae_decoder"));
        var (data, shape) = ort.Run(("latent_sample", Compare.Floats(latents), latents.shape))["sample"];
        Compare.Agree("vae_decoder sample", data, shape, expected, log);
    }

    [Fact]
    public void SD3_vae_encoder_mean_and_logvar_match_torch_without_quant_conv()
    {
        using var scope = NewDisposeScope();
        var image = rand(new long[] { 2, 3, 8, 12 }, generator: new Generator(44)).mul(2).sub(1);
        Tensor mean, logvar;
        using (no_grad()) (mean, logvar) = P.Vae.Encode(image);
        Assert.True(logvar.abs().max().item<float>() < 20f, "log-variance reached the clamp; the comparison would not test the raw output");
        using var ort = new Ort(Onnx("vae_encoder"));
        var (data, shape) = ort.Run(("sample", Compare.Floats(image), image.shape))["latent_parameters"];
        Assert.Equal(new long[] { 2, 32, 4, 6 }, shape);
        var chunks = tensor(data, shape).chunk(2, 1); // [B, 16, h, w] mean, [B, 16, h, w] log-variance
        Compare.Agree("vae_encoder mean", Compare.Floats(chunks[0]), chunks[0].shape, mean, log);
        Compare.Agree("vae_encoder logvar", Compare.Floats(chunks[1]), chunks[1].shape, logvar, log);
    }

    /// <summary>
    /// Every tensor of each TorchSharp module's state dict (diffusers / transformers names) is an initializer of its graph
    /// with the same shape, and the graph has no other: nothing in a checkpoint is left out, nothing is invented. The one
    /// exception is the last (context_pre_only) block's add_q_proj, which diffusers creates but whose text queries nothing
    /// uses: the graph, like the TorchSharp port, does not compute them.
    /// </summary>
    [Fact]
    public void SD3_graph_initializers_are_exactly_the_state_dict_keys()
    {
        static Dictionary<string, string> Shapes(IEnumerable<(string Name, long[] Shape)> tensors) =>
            tensors.ToDictionary(t => t.Name, t => string.Join(",", t.Shape), StringComparer.Ordinal);
        void Same(string part, TorchSharp.torch.nn.Module module, IEnumerable<string> ignorable)
        {
            var expected = Shapes(module.state_dict().Where(kv => !ignorable.Contains(kv.Key)).Select(kv => (kv.Key, kv.Value.shape)));
            var actual = Shapes(OnnxModelSummary.Read(Onnx(part)).Initializers
                .Where(kv => !kv.Key.StartsWith("const_", StringComparison.Ordinal)).Select(kv => (kv.Key, kv.Value)));
            Assert.Equal(expected.OrderBy(kv => kv.Key, StringComparer.Ordinal), actual.OrderBy(kv => kv.Key, StringComparer.Ordinal));
        }
        int last = P.Transformer.Config.NumLayers - 1;
        Same("transformer", P.Transformer, [$"transformer_blocks.{last}.attn.add_q_proj.weight", $"transformer_blocks.{last}.attn.add_q_proj.bias"]);
        Same("text_encoder", P.TextEncoder, CTCal.Trainer.Networks.CLIPTextModelWithProjection.IgnorableKeys);
        Same("text_encoder_2", P.TextEncoder2, CTCal.Trainer.Networks.CLIPTextModelWithProjection.IgnorableKeys);
        // the VAE's two graphs together hold the whole AutoencoderKL (no quant convs in this config)
        var vae = P.Vae.state_dict().Keys.Order(StringComparer.Ordinal).ToList();
        var graphs = new[] { "vae_encoder", "vae_decoder" }.SelectMany(part => OnnxModelSummary.Read(Onnx(part)).Initializers.Keys)
            .Where(k => !k.StartsWith("const_", StringComparison.Ordinal)).Distinct().Order(StringComparer.Ordinal).ToList();
        Assert.Equal(vae, graphs);
        Assert.DoesNotContain(graphs, k => k.Contains("quant_conv", StringComparison.Ordinal));
    }

    [Fact]
    public void SD3_folder_has_optimums_layout_and_the_manifest_records_the_vae_factors()
    {
        string o = export.OnnxFolder;
        foreach (string part in new[] { "transformer", "text_encoder", "text_encoder_2", "vae_decoder", "vae_encoder" })
        {
            Assert.True(File.Exists(Path.Combine(o, part, "model.onnx")), part);
            Assert.True(File.Exists(Path.Combine(o, part, "config.json")), part);
        }
        Assert.False(Directory.Exists(Path.Combine(o, "unet")));
        Assert.False(Directory.Exists(Path.Combine(o, "text_encoder_3")));
        Assert.True(File.Exists(Path.Combine(o, "tokenizer", "vocab.json")));
        Assert.True(File.Exists(Path.Combine(o, "tokenizer_2", "merges.txt")));
        Assert.True(File.Exists(Path.Combine(o, "scheduler", "scheduler_config.json")));

        var index = JsonNode.Parse(File.ReadAllText(Path.Combine(o, "model_index.json")))!.AsObject();
        Assert.Equal("ORTStableDiffusion3Pipeline", (string?)index["_class_name"]);
        Assert.Equal("FlowMatchEulerDiscreteScheduler", (string?)index["scheduler"]![1]);
        Assert.Equal("CLIPTokenizer", (string?)index["tokenizer_2"]![1]);
        Assert.False(index.ContainsKey("tokenizer_3"));
        foreach (string part in new[] { "transformer", "text_encoder", "text_encoder_2", "vae_decoder", "vae_encoder" })
            Assert.Equal("OnnxRuntimeModel", (string?)index[part]![1]);

        var manifest = OnnxModelManifest.TryRead(o)!;
        Assert.Equal(ModelFamily.Sd3, manifest.Family);
        Assert.Equal(16, manifest.Width); // transformer sample_size 8 x VAE factor 2
        Assert.Equal(1.5305, manifest.VaeScalingFactor);
        Assert.Equal(0.0609, manifest.VaeShiftFactor);
        Assert.Null(manifest.PredictionType);
        Assert.Equal("base", manifest.Method);
    }
}
