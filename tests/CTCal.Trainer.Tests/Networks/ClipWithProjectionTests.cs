using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

public sealed class ClipWithProjectionTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-clip-proj");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A CLIP-G-like config (gelu, eos pooling at the first 99), projection width differing from the hidden width.</summary>
    internal static ClipTextConfig TinyClip(int hidden = 16, int projection = 12, int layers = 3, string act = "gelu") => ClipTextConfig.Parse($$"""
    {
      "architectures": ["CLIPTextModelWithProjection"],
      "vocab_size": 100, "hidden_size": {{hidden}}, "intermediate_size": 40, "num_hidden_layers": {{layers}}, "num_attention_heads": 2,
      "max_position_embeddings": 77, "hidden_act": "{{act}}", "layer_norm_eps": 1e-5,
      "bos_token_id": 98, "eos_token_id": 99, "pad_token_id": 0, "projection_dim": {{projection}}
    }
    """, "tiny-clip-g/text_encoder_2/config.json");

    private static SafetensorsWriteEntry Entry(string name, Tensor t) =>
        SafetensorsWriteEntry.FromFloat32(name, t.shape, t.detach().cpu().contiguous().data<float>().ToArray());

    /// <summary>
    /// The tiny-sd1 text encoder's weights plus a text_projection, written under transformers' names and loaded strictly:
    /// last_hidden_state is the fixture's, final_layer_norm of hidden_states[-1] is too (so the tuple is pre-norm), and
    /// text_embeds is the fixture's pooled output through the projection.
    /// </summary>
    [Fact]
    public void SharesTheTinySd1FixtureHiddenStatesAndProjectsThePooledOutput()
    {
        using var scope = NewDisposeScope();
        string folder = ModelTestConfigs.TinySd1;
        var config = ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json"));
        var weights = FixtureTensors.Read(Path.Combine(folder, "text_encoder", "model.safetensors"));
        manual_seed(2);
        var projection = randn(config.ProjectionDim, config.HiddenSize).mul(0.2);
        string file = Path.Combine(_dir, "text_encoder", "model.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(file)!);
        SafetensorsWriter.Write(file, weights.Select(kv => Entry(kv.Key, kv.Value)).Append(Entry("text_projection.weight", projection)).ToList());

        using var model = new CLIPTextModelWithProjection(config);
        using var plain = new CLIPTextModel(config);
        Assert.Equal(plain.state_dict().Keys.Append("text_projection.weight").Order(StringComparer.Ordinal), model.state_dict().Keys.Order(StringComparer.Ordinal));
        DiffusersWeights.Load(model, Path.Combine(_dir, "text_encoder"), CLIPTextModelWithProjection.IgnorableKeys);
        DiffusersWeights.Load(plain, Path.Combine(folder, "text_encoder"), CLIPTextModel.IgnorableKeys);

        var io = FixtureTensors.Read(Path.Combine(folder, "text_encoder_io.safetensors"));
        using var _ = no_grad();
        var (embeds, last, hidden) = model.forward(io["input_ids"]);
        Assert.True(FixtureTensors.MaxAbsDiff(last, io["last_hidden_state"]) <= 1e-4, "last_hidden_state");
        Assert.True(FixtureTensors.MaxAbsDiff(last, plain.forward(io["input_ids"]).LastHiddenState) == 0);
        Assert.Equal(config.NumHiddenLayers + 1, hidden.Length);
        var normed = nn.functional.layer_norm(hidden[^1], [config.HiddenSize], weights["text_model.final_layer_norm.weight"],
            weights["text_model.final_layer_norm.bias"], config.LayerNormEps);
        Assert.True(FixtureTensors.MaxAbsDiff(normed, io["last_hidden_state"]) <= 1e-4, "final_layer_norm(hidden_states[-1])");
        Assert.True(FixtureTensors.MaxAbsDiff(hidden[^1], last) > 1e-2, "hidden_states[-1] carries no final_layer_norm");
        Assert.Equal(new long[] { io["input_ids"].shape[0], config.ProjectionDim }, embeds.shape);
        Assert.True(FixtureTensors.MaxAbsDiff(embeds, io["pooled_output"].matmul(projection.t())) <= 1e-4, "text_embeds");
    }

    [Fact]
    public void HiddenStatesStartWithTheEmbeddingsAndFollowTheLayers()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        var config = TinyClip();
        using var model = new CLIPTextModelWithProjection(config);
        var ids = tensor(new long[,] { { 98, 5, 7, 99, 0 }, { 98, 12, 99, 0, 0 } });
        using var _ = no_grad();
        var (embeds, last, hidden) = model.forward(ids);
        Assert.Equal(4, hidden.Length);
        Assert.All(hidden, h => Assert.Equal(new long[] { 2, 5, 16 }, h.shape));
        var sd = model.state_dict();
        var embedded = sd["text_model.embeddings.token_embedding.weight"].index_select(0, ids.flatten()).view(2, 5, 16)
            .add(sd["text_model.embeddings.position_embedding.weight"][..5]);
        Assert.True(FixtureTensors.MaxAbsDiff(hidden[0], embedded) < 1e-6, "hidden_states[0] = embeddings");
        for (int i = 1; i < hidden.Length; i++) Assert.True(FixtureTensors.MaxAbsDiff(hidden[i], hidden[i - 1]) > 1e-3, $"layer {i}");
        // Pooled at the first eos (99), then projected without bias.
        var pooled = last[tensor(new long[] { 0, 1 }), tensor(new long[] { 3, 2 })];
        Assert.True(FixtureTensors.MaxAbsDiff(embeds, pooled.matmul(sd["text_projection.weight"].t())) < 1e-6);
        Assert.DoesNotContain("text_projection.bias", sd.Keys);
    }

    [Fact]
    public void AModelBuiltInADisposeScopeOutlivesIt()
    {
        CLIPTextModelWithProjection model;
        using (NewDisposeScope()) model = new CLIPTextModelWithProjection(TinyClip());
        using (model)
        using (NewDisposeScope())
        using (no_grad())
        {
            Assert.All(model.parameters(), p => Assert.False(p.IsInvalid));
            Assert.Equal(new long[] { 1, 12 }, model.forward(tensor(new long[,] { { 98, 99 } })).TextEmbeds.shape);
        }
    }

    [Fact]
    public void WeightsRoundTripAndAMissingProjectionIsNamed()
    {
        using var scope = NewDisposeScope();
        manual_seed(12);
        var config = TinyClip();
        using var first = new CLIPTextModelWithProjection(config);
        DiffusersWeights.Save(first, Path.Combine(_dir, "text_encoder_2", "model.safetensors"));
        var ids = tensor(new long[,] { { 98, 40, 99, 0 } });
        using var _ = no_grad();
        var (e1, l1, h1) = first.forward(ids);
        manual_seed(13);
        using var second = new CLIPTextModelWithProjection(config);
        DiffusersWeights.Load(second, Path.Combine(_dir, "text_encoder_2"));
        var (e2, l2, h2) = second.forward(ids);
        Assert.True(FixtureTensors.MaxAbsDiff(e1, e2) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(l1, l2) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(h1[^2], h2[^2]) == 0);

        // A plain CLIPTextModel file (no projection) is refused, naming the key.
        using var plain = new CLIPTextModel(config);
        DiffusersWeights.Save(plain, Path.Combine(_dir, "plain.safetensors"));
        var error = Assert.Throws<StateDictMismatchException>(() => DiffusersWeights.Load(second, Path.Combine(_dir, "plain.safetensors")));
        Assert.Equal(new[] { "text_projection.weight" }, error.Missing);
        Assert.Contains("text_projection.weight", error.Message);
    }
}
