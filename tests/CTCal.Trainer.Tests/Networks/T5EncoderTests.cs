using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

public sealed class T5EncoderTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-t5");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Two blocks; inner width heads * d_kv = 6 differs from d_model = 8, as it may in T5.</summary>
    internal static T5Config TinyConfig(int dModel = 8) => T5Config.Parse($$"""
    {
      "architectures": ["T5EncoderModel"], "model_type": "t5",
      "vocab_size": 40, "d_model": {{dModel}}, "d_kv": 3, "d_ff": 12, "num_layers": 2, "num_heads": 2,
      "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
      "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-6, "dropout_rate": 0.1
    }
    """, "tiny-t5/text_encoder_3/config.json");

    /// <summary>
    /// Bucket indices from transformers' formula, worked by hand. n = num_buckets / 2 (the half for key after query is
    /// offset by n), e = n / 2 exact buckets, then e + floor(log(|r| / e) / log(max_distance / e) * (n - e)) capped at n - 1.
    /// 32 buckets / 128 (SD3's T5-XXL): n = 16, e = 8. 8 buckets / 16: n = 4, e = 2.
    /// </summary>
    [Theory]
    [InlineData(32, 128, 0, 0)]
    [InlineData(32, 128, -3, 3)]      // key before query: first half, exact
    [InlineData(32, 128, 3, 19)]      // key after query: 16 + 3
    [InlineData(32, 128, -7, 7)]
    [InlineData(32, 128, -8, 8)]      // 8 + floor(log(1) ...) = 8
    [InlineData(32, 128, 8, 24)]
    [InlineData(32, 128, -20, 10)]    // log(2.5)/log(16)*8 = 2.64 -> 8 + 2
    [InlineData(32, 128, 20, 26)]
    [InlineData(32, 128, -30, 11)]    // log(3.75)/log(16)*8 = 3.81
    [InlineData(32, 128, -60, 13)]    // log(7.5)/log(16)*8 = 5.81
    [InlineData(32, 128, 45, 28)]     // 16 + 8 + floor(log(5.625)/log(16)*8 = 4.98)
    [InlineData(32, 128, -100, 15)]   // log(12.5)/log(16)*8 = 7.29
    [InlineData(32, 128, -127, 15)]   // 7.98
    [InlineData(32, 128, -500, 15)]   // beyond max_distance: 8 + 11 capped at 15
    [InlineData(32, 128, 500, 31)]
    [InlineData(32, 128, 1000, 31)]
    [InlineData(8, 16, -1, 1)]
    [InlineData(8, 16, 1, 5)]
    [InlineData(8, 16, 3, 6)]         // 4 + 2 + floor(log(1.5)/log(8)*2 = 0.39)
    [InlineData(8, 16, -5, 2)]        // log(2.5)/log(8)*2 = 0.88
    [InlineData(8, 16, -10, 3)]       // log(5)/log(8)*2 = 1.55
    [InlineData(8, 16, -100, 3)]      // beyond max_distance: capped at 3
    [InlineData(8, 16, 100, 7)]
    public void RelativePositionBucketsFollowThePublishedFormula(int numBuckets, int maxDistance, long relative, long expected)
    {
        using var scope = NewDisposeScope();
        var bucket = T5Attention.RelativePositionBucket(tensor(new[] { relative }), numBuckets, maxDistance);
        Assert.Equal(ScalarType.Int64, bucket.dtype);
        Assert.Equal(expected, bucket[0].item<long>());
        Assert.Equal(expected, ByFormula(numBuckets, maxDistance, relative));
    }

    /// <summary>The formula in double precision, for the hand-worked values above (none sits on a rounding boundary).</summary>
    private static long ByFormula(int numBuckets, int maxDistance, long relative)
    {
        int n = numBuckets / 2, e = n / 2;
        long offset = relative > 0 ? n : 0, d = Math.Abs(relative);
        if (d < e) return offset + d;
        long large = e + (long)Math.Floor(Math.Log((double)d / e) / Math.Log((double)maxDistance / e) * (n - e));
        return offset + Math.Min(large, n - 1);
    }

    [Fact]
    public void PositionBiasLooksUpTheTableByKeyMinusQuery()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var config = TinyConfig();
        using var model = new T5EncoderModel(config);
        var table = model.state_dict()["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]; // [8, 2]
        Assert.Equal(new long[] { 8, 2 }, table.shape);
        var attention = (T5Attention)model.named_modules().Single(m => m.name == "encoder.block.0.layer.0.SelfAttention").module;
        const int t = 12;
        var bias = attention.PositionBias(t, CPU);
        Assert.Equal(new long[] { 1, 2, t, t }, bias.shape);
        for (int i = 0; i < t; i++)
            for (int j = 0; j < t; j++)
                for (int h = 0; h < 2; h++)
                    Assert.Equal(table[ByFormula(8, 16, j - i), h].item<float>(), bias[0, h, i, j].item<float>());
    }

    [Fact]
    public void RmsNormScalesByTheRootMeanSquareWithoutCentering()
    {
        using var scope = NewDisposeScope();
        using var norm = new T5LayerNorm(5, 1e-6);
        var w = new float[] { 0.5f, -1f, 2f, 1.5f, 0.25f };
        using (no_grad()) norm.parameters().Single().copy_(tensor(w));
        Assert.Equal("weight", norm.named_parameters().Single().name);
        // Offset rows: a mean-subtracting LayerNorm would give very different values.
        var x = new float[,] { { 3f, 4f, 5f, 6f, 7f }, { -1f, 0f, 2f, 0.5f, 10f } };
        var y = norm.forward(tensor(x));
        for (int r = 0; r < 2; r++)
        {
            double meanSquare = 0;
            for (int c = 0; c < 5; c++) meanSquare += x[r, c] * (double)x[r, c] / 5;
            for (int c = 0; c < 5; c++)
                Assert.Equal(w[c] * x[r, c] / Math.Sqrt(meanSquare + 1e-6), y[r, c].item<float>(), 5);
        }
        // Half-precision weights: the variance stays fp32, the result comes back in the weight's dtype.
        norm.to(ScalarType.BFloat16);
        var yHalf = norm.forward(tensor(x).to(ScalarType.BFloat16));
        Assert.Equal(ScalarType.BFloat16, yHalf.dtype);
        Assert.True(FixtureTensors.MaxAbsDiff(yHalf, y) < 0.05);
    }

    /// <summary>A model built inside a dispose scope outlives it (its own parameters included).</summary>
    [Fact]
    public void AModelBuiltInADisposeScopeOutlivesIt()
    {
        T5EncoderModel model;
        using (NewDisposeScope()) model = new T5EncoderModel(TinyConfig());
        using (model)
        using (NewDisposeScope())
        using (no_grad())
        {
            Assert.All(model.parameters(), p => Assert.False(p.IsInvalid));
            Assert.Equal(new long[] { 1, 2, 8 }, model.forward(tensor(new long[,] { { 4, 1 } })).shape);
        }
    }

    [Fact]
    public void GeluNewIsTheTanhApproximation()
    {
        using var scope = NewDisposeScope();
        var xs = new[] { -3.0f, -1.0f, 0.0f, 0.5f, 1.0f, 2.5f };
        var y = T5DenseGatedActDense.GeluNew(tensor(xs));
        for (int i = 0; i < xs.Length; i++)
        {
            double x = xs[i];
            double expected = 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
            Assert.Equal(expected, y[i].item<float>(), 5);
        }
        // Not the exact erf GELU: at x = 1 they differ by about 1.5e-4 (0.841192 vs 0.841345).
        Assert.Equal(0.841192, y[4].item<float>(), 5);
    }

    [Fact]
    public void StateDictNamesAreTransformersNames()
    {
        using var model = new T5EncoderModel(TinyConfig());
        var expected = new List<string> { "shared.weight", "encoder.final_layer_norm.weight", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" };
        for (int i = 0; i < 2; i++)
        {
            foreach (string p in new[] { "q", "k", "v", "o" }) expected.Add($"encoder.block.{i}.layer.0.SelfAttention.{p}.weight");
            expected.Add($"encoder.block.{i}.layer.0.layer_norm.weight");
            foreach (string p in new[] { "wi_0", "wi_1", "wo" }) expected.Add($"encoder.block.{i}.layer.1.DenseReluDense.{p}.weight");
            expected.Add($"encoder.block.{i}.layer.1.layer_norm.weight");
        }
        Assert.Equal(expected.Order(StringComparer.Ordinal), model.state_dict().Keys.Order(StringComparer.Ordinal));
        var sd = model.state_dict();
        Assert.Equal(new long[] { 6, 8 }, sd["encoder.block.1.layer.0.SelfAttention.q.weight"].shape);   // [heads * d_kv, d_model]
        Assert.Equal(new long[] { 8, 6 }, sd["encoder.block.1.layer.0.SelfAttention.o.weight"].shape);
        Assert.Equal(new long[] { 12, 8 }, sd["encoder.block.0.layer.1.DenseReluDense.wi_1.weight"].shape);
        Assert.Equal(new long[] { 8, 12 }, sd["encoder.block.0.layer.1.DenseReluDense.wo.weight"].shape);
        Assert.Equal(new long[] { 40, 8 }, sd["shared.weight"].shape);
    }

    /// <summary>
    /// The encoder against a direct transcription of transformers' T5 encoder in double precision from the state dict:
    /// pre-norm residual blocks, unscaled q·kᵀ plus block 0's bias in every block, gated gelu_new, final RMS norm.
    /// </summary>
    [Fact]
    public void ForwardMatchesADirectTranscriptionOfTheEncoder()
    {
        using var scope = NewDisposeScope();
        manual_seed(5);
        var config = TinyConfig();
        using var model = new T5EncoderModel(config);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith("layer_norm.weight", StringComparison.Ordinal)) p.uniform_(0.5, 1.5); // not the identity
        var ids = tensor(new long[,] { { 5, 9, 1, 0, 0, 0, 0 }, { 38, 2, 2, 17, 4, 1, 0 } });
        using var _ = no_grad();
        var actual = model.forward(ids);
        Assert.Equal(new long[] { 2, 7, 8 }, actual.shape);

        var sd = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float64));
        Tensor Rms(Tensor x, string w) => x.div(x.pow(2).mean([-1L], keepdim: true).add(1e-6).sqrt()).mul(sd[w]);
        Tensor Lin(Tensor x, string w) => x.matmul(sd[w].t());
        long t = ids.shape[1];
        var rel = arange(t).unsqueeze(0).sub(arange(t).unsqueeze(1));                             // [T, T] key - query
        var buckets = rel.cpu().data<long>().Select(r => ByFormula(8, 16, r)).ToArray();
        var bias = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
            .index_select(0, tensor(buckets)).view(t, t, 2).permute(2, 0, 1);                     // [heads, T, T]
        var h = sd["shared.weight"].index_select(0, ids.flatten()).view(2, t, 8);
        for (int i = 0; i < 2; i++)
        {
            string p = $"encoder.block.{i}.layer.";
            var n = Rms(h, p + "0.layer_norm.weight");
            var q = Lin(n, p + "0.SelfAttention.q.weight").view(2, t, 2, 3).transpose(1, 2);        // [B, heads, T, 3]
            var k = Lin(n, p + "0.SelfAttention.k.weight").view(2, t, 2, 3).transpose(1, 2);
            var v = Lin(n, p + "0.SelfAttention.v.weight").view(2, t, 2, 3).transpose(1, 2);
            var a = q.matmul(k.transpose(2, 3)).add(bias).softmax(-1).matmul(v).transpose(1, 2).reshape(2, t, 6);
            h = h.add(Lin(a, p + "0.SelfAttention.o.weight"));
            n = Rms(h, p + "1.layer_norm.weight");
            var g = T5DenseGatedActDense.GeluNew(Lin(n, p + "1.DenseReluDense.wi_0.weight")).mul(Lin(n, p + "1.DenseReluDense.wi_1.weight"));
            h = h.add(Lin(g, p + "1.DenseReluDense.wo.weight"));
        }
        var expected = Rms(h, "encoder.final_layer_norm.weight");
        Assert.True(FixtureTensors.MaxAbsDiff(actual, expected) < 1e-5, $"max diff {FixtureTensors.MaxAbsDiff(actual, expected)}");
    }

    [Fact]
    public void WeightsRoundTripUnderTransformersNamesAndLoadStrictly()
    {
        using var scope = NewDisposeScope();
        manual_seed(8);
        var config = TinyConfig();
        using var first = new T5EncoderModel(config);
        string file = Path.Combine(_dir, "text_encoder_3", "model.safetensors");
        DiffusersWeights.Save(first, file);
        var ids = tensor(new long[,] { { 3, 1, 0, 0 } });
        using var _ = no_grad();
        var expected = first.forward(ids);

        manual_seed(9);
        using var second = new T5EncoderModel(config);
        Assert.True(FixtureTensors.MaxAbsDiff(second.forward(ids), expected) > 1e-3);
        DiffusersWeights.Load(second, Path.Combine(_dir, "text_encoder_3"), T5EncoderModel.IgnorableKeys);
        Assert.True(FixtureTensors.MaxAbsDiff(second.forward(ids), expected) == 0);

        // transformers' files may also carry the tied encoder.embed_tokens.weight: skipped.
        var sd = first.state_dict();
        var entries = sd.Select(kv => Entry(kv.Key, kv.Value)).Append(Entry("encoder.embed_tokens.weight", sd["shared.weight"])).ToList();
        string tied = Path.Combine(_dir, "tied.safetensors");
        SafetensorsWriter.Write(tied, entries);
        using var third = new T5EncoderModel(config);
        DiffusersWeights.Load(third, tied, T5EncoderModel.IgnorableKeys);
        Assert.True(FixtureTensors.MaxAbsDiff(third.forward(ids), expected) == 0);

        // A missing tensor is named.
        string missing = Path.Combine(_dir, "missing.safetensors");
        SafetensorsWriter.Write(missing, entries.Where(e => e.Name != "encoder.block.1.layer.1.DenseReluDense.wi_1.weight").ToList());
        var error = Assert.Throws<StateDictMismatchException>(() => DiffusersWeights.Load(third, missing, T5EncoderModel.IgnorableKeys));
        Assert.Equal(new[] { "encoder.block.1.layer.1.DenseReluDense.wi_1.weight" }, error.Missing);
        Assert.Contains("encoder.block.1.layer.1.DenseReluDense.wi_1.weight", error.Message);
    }

    /// <summary>transformers' fp16 guard: a feed-forward output that overflows to inf is clamped, so the final norm stays finite.</summary>
    [Fact]
    public void Fp16OverflowIsClampedAsInTransformers()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        using var model = new T5EncoderModel(T5Config.Parse("""
        { "vocab_size": 40, "d_model": 8, "d_kv": 4, "d_ff": 12, "num_layers": 1, "num_heads": 2, "feed_forward_proj": "gated-gelu" }
        """));
        model.to(ScalarType.Float16);
        using var _ = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            if (name == "encoder.block.0.layer.1.DenseReluDense.wo.weight") p.fill_(30000.0);
            if (name.Contains("DenseReluDense.wi", StringComparison.Ordinal)) p.fill_(1.0);
        }
        var output = model.forward(tensor(new long[,] { { 3, 5, 1 } }));
        Assert.Equal(ScalarType.Float16, output.dtype);
        Assert.False(output.isnan().any().item<bool>());
        Assert.False(output.isinf().any().item<bool>());
    }

    private static SafetensorsWriteEntry Entry(string name, Tensor t) =>
        SafetensorsWriteEntry.FromFloat32(name, t.shape, t.detach().cpu().contiguous().data<float>().ToArray());

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void HalfPrecisionRunsAndStaysCloseToFp32(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var model = new T5EncoderModel(TinyConfig());
        var ids = tensor(new long[,] { { 7, 3, 1 } });
        using var _ = no_grad();
        var full = model.forward(ids);
        model.to(dtype);
        var half = model.forward(ids);
        Assert.Equal(dtype, half.dtype);
        Assert.True(FixtureTensors.MaxAbsDiff(half, full) < 0.1);
    }
}
