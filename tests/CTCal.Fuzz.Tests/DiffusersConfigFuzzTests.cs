using System.Text.Json;
using CsCheck;
using CTCal.Core.Diffusers;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// UNetConfig, VaeConfig, ClipTextConfig and ModelIndex .Parse(json, file): valid generated configs are read back field
/// for field; mutated configs give a config or <see cref="DiffusersConfigException"/>, nothing else.
/// </summary>
public sealed class DiffusersConfigFuzzTests
{
    private static readonly Type[] Documented = [typeof(DiffusersConfigException)];

    /// <summary>Parsers by corpus-file prefix (unet.*.json, vae.*.json, clip.*.json, model_index.*.json).</summary>
    internal static readonly IReadOnlyDictionary<string, Func<string, object>> Parsers = new Dictionary<string, Func<string, object>>
    {
        ["unet"] = json => UNetConfig.Parse(json),
        ["vae"] = json => VaeConfig.Parse(json),
        ["clip"] = json => ClipTextConfig.Parse(json),
        ["model_index"] = json => ModelIndex.Parse(json),
    };

    private static readonly string[] Kinds = [.. Parsers.Keys];

    private static readonly Lazy<Dictionary<string, string[]>> Seeds = new(() =>
        Kinds.ToDictionary(k => k, k => Corpus.Files("diffusers-config", $"{k}.*.json")
            .Where(f => !Path.GetFileName(f).Contains(".crash-") && !Path.GetFileName(f).Contains(".bad-"))
            .Select(File.ReadAllText).ToArray()));

    private static int Gcd(int a, int b) => b == 0 ? a : Gcd(b, a % b);

    private static string ToJson(Dictionary<string, object?> fields) => JsonSerializer.Serialize(fields);

    // ---- valid generators ----

    internal sealed record UNetCase(string Json, int[] Channels, string[] Down, string[] Up, int[] Heads, int[] Transformer,
        int Layers, int Cross, int Groups, double Eps, int Sample);

    private static readonly Gen<UNetCase> ValidUNet =
        from n in Gen.Int[1, 4]
        from groups in Gen.OneOf(1, 2, 4, 8, 32)
        from headsList in Gen.Bool
        from heads in Gen.Int[1, 8].Array[n]
        from mult in Gen.Int[1, 4].Array[n]
        from down in Gen.OneOf(UNetConfig.SupportedDownBlocks).Array[n]
        from up in Gen.OneOf(UNetConfig.SupportedUpBlocks).Array[n]
        from headsKey in Gen.OneOf("attention_head_dim", "num_attention_heads")
        from transformer in Gen.Int[1, 3].Array[n]
        from transformerList in Gen.Bool
        from layers in Gen.Int[1, 3]
        from cross in Gen.Int[1, 2048]
        from eps in Gen.Double[1e-8, 1e-3]
        from sample in Gen.Int[1, 256]
        from extra in Gen.Bool
        select MakeUNet(n, groups, headsList ? heads : Enumerable.Repeat(heads[0], n).ToArray(), headsList, mult, down, up, headsKey,
            transformerList ? transformer : Enumerable.Repeat(transformer[0], n).ToArray(), transformerList, layers, cross, eps, sample, extra);

    private static UNetCase MakeUNet(int n, int groups, int[] heads, bool headsList, int[] mult, string[] down, string[] up, string headsKey,
        int[] transformer, bool transformerList, int layers, int cross, double eps, int sample, bool extra)
    {
        int[] channels = Enumerable.Range(0, n).Select(i => groups * heads[i] / Gcd(groups, heads[i]) * mult[i]).ToArray();
        var fields = new Dictionary<string, object?>
        {
            ["_class_name"] = "UNet2DConditionModel",
            ["block_out_channels"] = channels,
            ["down_block_types"] = down,
            ["up_block_types"] = up,
            [headsKey] = headsList ? heads : heads[0],
            ["transformer_layers_per_block"] = transformerList ? transformer : transformer[0],
            ["layers_per_block"] = layers,
            ["cross_attention_dim"] = cross,
            ["norm_num_groups"] = groups,
            ["norm_eps"] = eps,
            ["sample_size"] = sample,
        };
        if (extra)
        {
            fields["class_embed_type"] = null;
            fields["only_cross_attention"] = false;
            fields["dual_cross_attention"] = false;
            fields["unknown_future_field"] = new object[] { 1, "x", null! };
        }
        return new UNetCase(ToJson(fields), channels, down, up, heads, transformer, layers, cross, groups, eps, sample);
    }

    internal sealed record VaeCase(string Json, int[] Channels, int Groups, int Layers, double Scaling, int Latent);

    private static readonly Gen<VaeCase> ValidVae =
        from n in Gen.Int[1, 4]
        from groups in Gen.OneOf(1, 2, 8, 32)
        from mult in Gen.Int[1, 8].Array[n]
        from layers in Gen.Int[1, 3]
        from scaling in Gen.Double[1e-4, 10]
        from latent in Gen.Int[1, 16]
        from explicitTypes in Gen.Bool
        select MakeVae(n, groups, mult, layers, scaling, latent, explicitTypes);

    private static VaeCase MakeVae(int n, int groups, int[] mult, int layers, double scaling, int latent, bool explicitTypes)
    {
        int[] channels = mult.Select(m => m * groups).ToArray();
        var fields = new Dictionary<string, object?>
        {
            ["block_out_channels"] = channels,
            ["norm_num_groups"] = groups,
            ["layers_per_block"] = layers,
            ["scaling_factor"] = scaling,
            ["latent_channels"] = latent,
        };
        if (explicitTypes)
        {
            fields["down_block_types"] = Enumerable.Repeat("DownEncoderBlock2D", n).ToArray();
            fields["up_block_types"] = Enumerable.Repeat("UpDecoderBlock2D", n).ToArray();
        }
        return new VaeCase(ToJson(fields), channels, groups, layers, scaling, latent);
    }

    internal sealed record ClipCase(string Json, int Hidden, int Heads, int Layers, string Act, int Vocab, int Eos, double Eps);

    private static readonly Gen<ClipCase> ValidClip =
        from heads in Gen.Int[1, 16]
        from width in Gen.Int[1, 64]
        from layers in Gen.Int[1, 24]
        from act in Gen.OneOf("quick_gelu", "gelu")
        from vocab in Gen.Int[1, 100_000]
        from eos in Gen.Int[0, 100_000]
        from eps in Gen.Double[1e-12, 1e-3]
        select new ClipCase(ToJson(new Dictionary<string, object?>
        {
            ["hidden_size"] = heads * width, ["intermediate_size"] = 4 * heads * width, ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads, ["hidden_act"] = act, ["vocab_size"] = vocab, ["eos_token_id"] = eos,
            ["layer_norm_eps"] = eps, ["architectures"] = new[] { "CLIPTextModel" },
        }), heads * width, heads, layers, act, vocab, eos, eps);

    private static readonly Gen<string> ComponentName = Gen.OneOf(
        Gen.String[Gen.Char["abcdefghijklmnopqrstuvwxyz_"], 1, 12].Where(s => !s.StartsWith('_')),
        Gen.OneOf("unet", "vae", "text_encoder", "tokenizer", "scheduler", "safety_checker", "ünïcödé", "名前"));

    internal sealed record ModelIndexCase(string Json, string ClassName, Dictionary<string, (string?, string?)> Components, string[] Others);

    private static readonly Gen<ModelIndexCase> ValidModelIndex =
        from className in Gen.String[Gen.Char.AlphaNumeric, 1, 30]
        from components in Gen.Dictionary(ComponentName,
            Gen.Select(Gen.OneOf(Gen.Const((string?)null), Gen.String.Select(s => (string?)s)), Gen.OneOf(Gen.Const((string?)null), Gen.String.Select(s => (string?)s))))[0, 6]
        from others in Gen.Dictionary(Gen.String[Gen.Char["abc"], 1, 5].Select(s => "_" + s), Gen.Int)[0, 3]
        select MakeModelIndex(className, components, others);

    private static ModelIndexCase MakeModelIndex(string className, Dictionary<string, (string?, string?)> components, Dictionary<string, int> others)
    {
        var fields = new Dictionary<string, object?> { ["_class_name"] = className, ["_diffusers_version"] = "0.27.2" };
        foreach (var (k, (lib, cls)) in components) fields[k] = new[] { lib, cls };
        foreach (var (k, v) in others) fields[k] = v;
        return new ModelIndexCase(ToJson(fields), className, components, [.. others.Keys]);
    }

    [Fact]
    public void Valid_unet_configs_read_back_field_for_field()
    {
        ValidUNet.Run(c =>
        {
            var config = FuzzBounds.Check(() => UNetConfig.Parse(c.Json), c.Json, []).Value!;
            Assert.Equal(c.Channels, config.BlockOutChannels);
            Assert.Equal(c.Down, config.DownBlockTypes);
            Assert.Equal(c.Up, config.UpBlockTypes);
            Assert.Equal(c.Heads, config.NumAttentionHeads);
            Assert.Equal(c.Transformer, config.TransformerLayersPerBlock);
            Assert.Equal(c.Layers, config.LayersPerBlock);
            Assert.Equal(c.Cross, config.CrossAttentionDim);
            Assert.Equal(c.Groups, config.NormNumGroups);
            Assert.Equal(c.Eps, config.NormEps);
            Assert.Equal(c.Sample, config.SampleSize);
            Assert.Equal(c.Channels[0] * 4, config.TimeEmbeddingDim);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Valid_vae_configs_read_back_field_for_field()
    {
        ValidVae.Run(c =>
        {
            var config = FuzzBounds.Check(() => VaeConfig.Parse(c.Json), c.Json, []).Value!;
            Assert.Equal(c.Channels, config.BlockOutChannels);
            Assert.Equal(c.Groups, config.NormNumGroups);
            Assert.Equal(c.Layers, config.LayersPerBlock);
            Assert.Equal(c.Scaling, config.ScalingFactor);
            Assert.Equal(c.Latent, config.LatentChannels);
            Assert.Equal(1 << (c.Channels.Length - 1), config.DownscaleFactor);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Valid_clip_text_configs_read_back_field_for_field()
    {
        ValidClip.Run(c =>
        {
            var config = FuzzBounds.Check(() => ClipTextConfig.Parse(c.Json), c.Json, []).Value!;
            Assert.Equal((c.Hidden, c.Heads, c.Layers, c.Act, c.Vocab, c.Eos, c.Eps),
                (config.HiddenSize, config.NumAttentionHeads, config.NumHiddenLayers, config.HiddenAct, config.VocabSize, config.EosTokenId, config.LayerNormEps));
            Assert.Equal(c.Hidden / c.Heads, config.HeadDim);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Valid_model_indexes_read_back_components_and_other_fields()
    {
        ValidModelIndex.Run(c =>
        {
            var index = FuzzBounds.Check(() => ModelIndex.Parse(c.Json), c.Json, []).Value!;
            Assert.Equal(c.ClassName, index.ClassName);
            Assert.Equal("0.27.2", index.DiffusersVersion);
            Assert.Equal(c.Components.Count, index.Components.Count);
            foreach (var (name, (lib, cls)) in c.Components)
            {
                Assert.Equal(new ModelIndexComponent(lib, cls), index.Components[name]);
                Assert.Equal(lib is not null || cls is not null, index.HasComponent(name));
            }
            Assert.Equal(c.Others.Order(StringComparer.Ordinal), index.OtherFields.Keys.Order(StringComparer.Ordinal));
        }, iter: FuzzBounds.Iterations);
    }

    private static Gen<string> ValidJsonOf(string kind) => kind switch
    {
        "unet" => ValidUNet.Select(c => c.Json),
        "vae" => ValidVae.Select(c => c.Json),
        "clip" => ValidClip.Select(c => c.Json),
        _ => ValidModelIndex.Select(c => c.Json),
    };

    public static TheoryData<string> KindData() => new(Kinds);

    [Theory]
    [MemberData(nameof(KindData))]
    public void Mutated_configs_parse_or_throw_DiffusersConfigException(string kind)
    {
        var seeds = Seeds.Value[kind];
        var source = Gen.OneOf(Gen.Int[0, seeds.Length - 1].Select(i => seeds[i]), ValidJsonOf(kind));
        Gen.Select(source, JsonMutator.Mutations()).Run((json, mutations) =>
        {
            string mutated = JsonMutator.Apply(json, mutations);
            FuzzBounds.Check(() => Parsers[kind](mutated), $"{kind}: {FuzzBounds.Describe(mutated)} ({string.Join(", ", mutations)})", Documented);
        }, iter: FuzzBounds.Iterations);
    }

    [Theory]
    [MemberData(nameof(KindData))]
    public void Random_text_parses_or_throws_DiffusersConfigException(string kind)
    {
        var text = Gen.OneOf(Gen.String, Gen.String[Gen.Char["{}[]\":,0123456789.eE-+ntrufalse\\u"], 0, 200]);
        text.Run(json => { FuzzBounds.Check(() => Parsers[kind](json), $"{kind}: {FuzzBounds.Describe(json)}", Documented); },
            iter: FuzzBounds.Scaled(0.25));
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("diffusers-config", "*.json"))
        {
            string name = Path.GetFileName(file);
            string kind = name[..name.IndexOf('.')];
            if (!Parsers.ContainsKey(kind)) continue; // scheduler.* files belong to SchedulerConfigFuzzTests
            bool expectValid = !name.Contains(".crash-") && !name.Contains(".bad-");
            var outcome = FuzzBounds.Check(() => Parsers[kind](File.ReadAllText(file)), file, Documented);
            Assert.True(outcome.Succeeded == expectValid, $"{file}: {outcome.Error?.Message ?? "parsed"}");
        }
    }
}
