using CTCal.Trainer.Networks;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests.Networks;

public sealed class SD3PromptEncoderTests
{
    [Fact]
    public void AssemblyConcatenatesFeaturesPadsWithZerosAndAppendsT5OnTheSequenceAxis()
    {
        using var scope = NewDisposeScope();
        var l = arange(2 * 3 * 2, dtype: ScalarType.Float32).add(1).view(2, 3, 2);    // [B=2, S=3, dL=2]
        var g = arange(2 * 3 * 3, dtype: ScalarType.Float32).add(100).view(2, 3, 3);  // [2, 3, dG=3]
        var t5 = randn(2, 4, 8);                                                          // [2, S5=4, D=8]
        var joint = SD3PromptEncoder.Assemble(l, g, t5);
        Assert.Equal(new long[] { 2, 7, 8 }, joint.shape);
        Assert.True(FixtureTensors.MaxAbsDiff(joint[.., ..3, ..2], l) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(joint[.., ..3, 2..5], g) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(joint[.., ..3, 5..], zeros(2, 3, 3)) == 0);
        Assert.True(FixtureTensors.MaxAbsDiff(joint[.., 3.., ..], t5) == 0);
        Assert.Throws<ArgumentException>(() => SD3PromptEncoder.Assemble(l, g, randn(2, 4, 4)));
    }

    private static (CLIPTextModelWithProjection L, CLIPTextModelWithProjection G) TinyClips()
    {
        manual_seed(21);
        var l = new CLIPTextModelWithProjection(ClipWithProjectionTests.TinyClip(hidden: 8, projection: 6, layers: 3, act: "quick_gelu"));
        var g = new CLIPTextModelWithProjection(ClipWithProjectionTests.TinyClip(hidden: 12, projection: 10, layers: 4));
        return (l, g);
    }

    private static Tensor ClipIds()
    {
        var ids = zeros(2, 77, dtype: ScalarType.Int64);
        ids[0, 0] = tensor(98L); ids[0, 1] = tensor(17L); ids[0, 2] = tensor(99L);
        ids[1, 0] = tensor(98L); ids[1, 1] = tensor(4L); ids[1, 2] = tensor(50L); ids[1, 3] = tensor(99L);
        return ids;
    }

    [Fact]
    public void WithoutT5ThePromptEndsInZerosOfTheClipLengthAndThePooledVectorConcatenatesBothProjections()
    {
        using var scope = NewDisposeScope();
        var (clipL, clipG) = TinyClips();
        using (clipL)
        using (clipG)
        {
            var encoder = new SD3PromptEncoder(clipL, clipG, t5: null, jointAttentionDim: 32);
            Assert.False(encoder.HasT5);
            Assert.Equal(16, encoder.PooledDim);
            var ids = ClipIds();
            var idsG = ids.clone();
            idsG[1, 2] = tensor(60L);
            using var _ = no_grad();
            var (prompt, pooled) = encoder.Encode(ids, idsG, t5Ids: null);
            Assert.Equal(new long[] { 2, 77 + 77, 32 }, prompt.shape);   // tokenizer_max_length zeros, as the pipeline
            Assert.Equal(new long[] { 2, 16 }, pooled.shape);
            var (embedsL, _, hiddenL) = clipL.forward(ids);
            var (embedsG, _, hiddenG) = clipG.forward(idsG);
            Assert.True(FixtureTensors.MaxAbsDiff(prompt[.., ..77, ..8], hiddenL[^2]) == 0, "CLIP-L penultimate");
            Assert.True(FixtureTensors.MaxAbsDiff(prompt[.., ..77, 8..20], hiddenG[^2]) == 0, "CLIP-G penultimate");
            Assert.True(FixtureTensors.MaxAbsDiff(prompt[.., ..77, 20..], zeros(2, 77, 12)) == 0, "feature padding");
            Assert.True(FixtureTensors.MaxAbsDiff(prompt[.., 77.., ..], zeros(2, 77, 32)) == 0, "T5-absent zeros");
            Assert.True(FixtureTensors.MaxAbsDiff(pooled, cat([embedsL, embedsG], -1)) == 0);

            // clip_skip n takes hidden_states[-(n + 2)].
            var (skipped, _) = encoder.Encode(ids, idsG, null, clipSkip: 1);
            Assert.True(FixtureTensors.MaxAbsDiff(skipped[.., ..77, ..8], hiddenL[^3]) == 0);
            Assert.True(FixtureTensors.MaxAbsDiff(skipped[.., ..77, 8..20], hiddenG[^3]) == 0);
            Assert.Throws<ArgumentOutOfRangeException>(() => encoder.Encode(ids, idsG, null, clipSkip: 3)); // CLIP-L has 3 layers
        }
    }

    [Fact]
    public void WithT5ItsStatesFollowTheClipTokens()
    {
        using var scope = NewDisposeScope();
        var (clipL, clipG) = TinyClips();
        using var t5 = new T5EncoderModel(T5EncoderTests.TinyConfig(dModel: 32));
        using (clipL)
        using (clipG)
        {
            var encoder = new SD3PromptEncoder(clipL, clipG, t5, jointAttentionDim: 32);
            var ids = ClipIds();
            var t5Ids = tensor(new long[,] { { 5, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0 }, { 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0 } });
            using var _ = no_grad();
            var (prompt, pooled) = encoder.Encode(ids, ids, t5Ids);
            Assert.Equal(new long[] { 2, 77 + 11, 32 }, prompt.shape);
            Assert.Equal(new long[] { 2, 16 }, pooled.shape);
            Assert.True(FixtureTensors.MaxAbsDiff(prompt[.., 77.., ..], t5.forward(t5Ids)) == 0);
            Assert.True(FixtureTensors.MaxAbsDiff(prompt[.., ..77, 20..], zeros(2, 77, 12)) == 0);
            Assert.Throws<ArgumentNullException>(() => encoder.Encode(ids, ids, null));
            Assert.Throws<ArgumentException>(() => new SD3PromptEncoder(clipL, clipG, t5, jointAttentionDim: 48));  // T5 d_model != joint dim
            Assert.Throws<ArgumentException>(() => new SD3PromptEncoder(clipL, clipG, null, jointAttentionDim: 16)); // 8 + 12 > 16
        }
    }
}
