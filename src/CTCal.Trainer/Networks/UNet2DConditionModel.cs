using CTCal.Core.Diffusers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.unets.unet_2d_condition.UNet2DConditionModel, restricted to what SD 1.x/2.x configs use.
/// <summary>
/// The denoising UNet: time embedding, <c>conv_in</c>, <c>down_blocks</c>, <c>mid_block</c>, <c>up_blocks</c> with skip
/// concatenation, <c>conv_norm_out</c>, <c>conv_out</c>. Parameter names equal diffusers' state-dict keys.
/// </summary>
/// <remarks>
/// Cross-attention maps are captured per call by passing an <see cref="AttentionCapture"/> to
/// <see cref="forward(Tensor, Tensor, Tensor, AttentionCapture?)"/>. One forward at a time per model instance (the
/// capture is handed to the attention layers for the duration of the call).
/// </remarks>
public sealed class UNet2DConditionModel : Module<Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly TimestepEmbedding time_embedding;
    private readonly Conv2d conv_in;
    private readonly ModuleList<UNetDownBlock> down_blocks;
    private readonly UNetMidBlock2DCrossAttn mid_block;
    private readonly ModuleList<UNetUpBlock> up_blocks;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;
#pragma warning restore IDE1006

    private readonly AttentionCaptureSlot _slot = new();
    private readonly GradientCheckpointing _checkpointing;
    private readonly HashSet<string> _attentionPaths;

    public UNet2DConditionModel(UNetConfig config) : base(nameof(UNet2DConditionModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        int[] channels = config.BlockOutChannels;
        int n = channels.Length;
        int temb = config.TimeEmbeddingDim;
        _checkpointing = new GradientCheckpointing(_slot);
        var s = new UNetBlockSettings(temb, config.NormNumGroups, config.NormEps, config.CrossAttentionDim,
            config.UseLinearProjection, config.UpcastAttention, _checkpointing);

        time_embedding = new TimestepEmbedding(channels[0], temb);
        conv_in = Conv2d(config.InChannels, channels[0], config.ConvInKernel, padding: (config.ConvInKernel - 1) / 2);

        var down = new List<UNetDownBlock>();
        int output = channels[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = channels[i];
            down.Add(new UNetDownBlock(config.LayersPerBlock, input, output, config.DownBlockTypes[i] == "CrossAttnDownBlock2D",
                config.NumAttentionHeads[i], config.TransformerLayersPerBlock[i], addDownsample: i < n - 1, config.DownsamplePadding, s));
        }
        down_blocks = new ModuleList<UNetDownBlock>(down.ToArray());

        mid_block = new UNetMidBlock2DCrossAttn(channels[^1], config.MidBlockHeads, config.TransformerLayersPerBlock[^1],
            config.MidBlockScaleFactor, s);

        var up = new List<UNetUpBlock>();
        output = channels[^1];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = channels[n - 1 - i];
            int input = channels[Math.Max(n - 2 - i, 0)];
            up.Add(new UNetUpBlock(config.LayersPerBlock + 1, input, prev, output, config.UpBlockTypes[i] == "CrossAttnUpBlock2D",
                config.UpBlockHeads(i), config.UpBlockTransformerLayers(i), addUpsample: i < n - 1, s));
        }
        up_blocks = new ModuleList<UNetUpBlock>(up.ToArray());

        conv_norm_out = Layers.GroupNorm(config.NormNumGroups, channels[0], config.NormEps);
        conv_out = Conv2d(channels[0], config.OutChannels, config.ConvOutKernel, padding: (config.ConvOutKernel - 1) / 2);
        RegisterComponents();

        // Give every attention layer its module path and this model's capture slot.
        _attentionPaths = new HashSet<string>(_slot.BindAll(this), StringComparer.Ordinal);
        CrossAttentionPaths = BuildCrossAttentionPaths(config);
    }

    public UNetConfig Config { get; }

    /// <summary>
    /// Gradient checkpointing (off by default): while autograd records, every resnet and transformer block keeps only its
    /// inputs and runs again in backward (see <see cref="Networks.GradientCheckpointing"/>). Gradients and captured maps are
    /// the same as without; forward passes under no_grad are unaffected.
    /// </summary>
    public bool GradientCheckpointing
    {
        get => _checkpointing.Enabled;
        set => _checkpointing.Enabled = value;
    }

    /// <summary>Blocks recomputed in backward passes so far under <see cref="GradientCheckpointing"/>.</summary>
    internal long CheckpointRecomputations => _checkpointing.Recomputations;

    /// <summary>Every cross-attention (attn2) layer, in forward order, with its map downscale factor (latent size / map size).</summary>
    public IReadOnlyList<CrossAttentionLayer> CrossAttentionPaths { get; }

    /// <summary>Module paths of every attention layer (attn1 and attn2) that a capture may name.</summary>
    public IReadOnlyCollection<string> AttentionPaths => _attentionPaths;

    /// <summary>Predicts the noise without capturing attention.</summary>
    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates) =>
        forward(sample, timestep, encoderHiddenStates, null);

    /// <summary>Predicts the noise; records the probability maps of the layers <paramref name="capture"/> names.</summary>
    /// <param name="sample">[B, in_channels, H, W] noisy latents.</param>
    /// <param name="timestep">Scalar or [B] timesteps (integer or float).</param>
    /// <param name="encoderHiddenStates">[B, tokens, cross_attention_dim] text states.</param>
    /// <param name="capture">Layers to record, or null for the fused attention path everywhere.</param>
    /// <returns>[B, out_channels, H, W]; it and the captured maps belong to the caller's dispose scope.</returns>
    public Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates, AttentionCapture? capture)
    {
        if (sample.dim() != 4) throw new ArgumentException($"sample must be [B, C, H, W], got [{string.Join(", ", sample.shape)}]", nameof(sample));
        if (encoderHiddenStates.dim() != 3 || encoderHiddenStates.shape[2] != Config.CrossAttentionDim)
            throw new ArgumentException($"encoder_hidden_states must be [B, tokens, {Config.CrossAttentionDim}], got [{string.Join(", ", encoderHiddenStates.shape)}]",
                nameof(encoderHiddenStates));
        return _slot.Forward(nameof(UNet2DConditionModel), capture, _attentionPaths, () =>
        {
            _checkpointing.ReleaseReturned();
            return Run(sample, timestep, encoderHiddenStates);
        });
    }

    private Tensor Run(Tensor sample, Tensor timestep, Tensor context)
    {
        long batch = sample.shape[0];
        // 0. center input if necessary
        if (Config.CenterInputSample) sample = sample.mul(2).sub(1);

        // 1. time: broadcast to the batch, sinusoidal features, MLP
        var t = timestep.dim() == 0 ? timestep.reshape(1) : timestep;
        if (t.dim() != 1) throw new ArgumentException($"timestep must be a scalar or [B], got [{string.Join(", ", timestep.shape)}]", nameof(timestep));
        t = t.to(sample.device).expand(batch);
        var tEmb = Timesteps.Embed(t, Config.BlockOutChannels[0], Config.FlipSinToCos, Config.FreqShift).to(time_embedding.DType); // [B, C0]
        var emb = time_embedding.forward(tEmb);                                                                                  // [B, temb]

        // 2. pre-process
        var h = conv_in.forward(sample);

        // 3. down
        var skips = new List<Tensor> { h };
        foreach (var block in down_blocks)
        {
            var (hidden, blockSkips) = block.forward(h, emb, context);
            h = hidden;
            skips.AddRange(blockSkips);
        }

        // 4. mid
        h = mid_block.forward(h, emb, context);

        // 5. up: each block takes the last `layers` skips; its upsampler targets the size of the next skip
        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            var blockSkips = skips.GetRange(skips.Count - block.Layers, block.Layers).ToArray();
            skips.RemoveRange(skips.Count - block.Layers, block.Layers);
            long[]? size = i < up_blocks.Count - 1 ? [skips[^1].shape[2], skips[^1].shape[3]] : null;
            h = block.Forward(h, blockSkips, emb, context, size);
        }

        // 6. post-process
        h = functional.silu(conv_norm_out.forward(h));
        return conv_out.forward(h);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _checkpointing.Dispose();
        base.Dispose(disposing);
    }

    private static List<CrossAttentionLayer> BuildCrossAttentionPaths(UNetConfig config)
    {
        var layers = new List<CrossAttentionLayer>();
        int n = config.BlockOutChannels.Length;
        void AddAttentions(string prefix, int attentions, int transformerLayers, int downscale, int heads)
        {
            for (int a = 0; a < attentions; a++)
                for (int l = 0; l < transformerLayers; l++)
                    layers.Add(new CrossAttentionLayer($"{prefix}.attentions.{a}.transformer_blocks.{l}.attn2", downscale, heads));
        }
        for (int i = 0; i < n; i++)
            if (config.DownBlockTypes[i] == "CrossAttnDownBlock2D")
                AddAttentions($"down_blocks.{i}", config.LayersPerBlock, config.TransformerLayersPerBlock[i], 1 << i, config.NumAttentionHeads[i]);
        AddAttentions("mid_block", 1, config.TransformerLayersPerBlock[^1], 1 << (n - 1), config.MidBlockHeads);
        for (int i = 0; i < n; i++)
            if (config.UpBlockTypes[i] == "CrossAttnUpBlock2D")
                AddAttentions($"up_blocks.{i}", config.LayersPerBlock + 1, config.UpBlockTransformerLayers(i), 1 << (n - 1 - i), config.UpBlockHeads(i));
        return layers;
    }
}
