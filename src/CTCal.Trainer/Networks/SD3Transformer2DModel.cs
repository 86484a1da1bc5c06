using CTCal.Core.Diffusers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace CTCal.Trainer.Networks;

// diffusers.models.transformers.transformer_sd3.SD3Transformer2DModel (diffusers 0.29.2).
/// <summary>
/// The Stable Diffusion 3 MMDiT: <c>pos_embed</c> (patchify + cropped sin-cos positions), <c>time_text_embed</c>
/// (timestep + pooled text), <c>context_embedder</c> (text states to the block width), <c>transformer_blocks</c>
/// (<see cref="JointTransformerBlock"/>, the last one context_pre_only), <c>norm_out</c>, <c>proj_out</c>, unpatchify.
/// Parameter and buffer names equal diffusers' state-dict keys.
/// </summary>
/// <remarks>
/// The timestep is in the flow-matching scheduler's units, sigma x 1000 (a float in [0, 1000]), exactly as diffusers'
/// pipeline passes it. Joint attention is captured per call by passing an <see cref="AttentionCapture"/> naming
/// <c>transformer_blocks.{i}.attn</c> paths (<see cref="JointAttentionPaths"/>); each map is the image-query x text-key
/// block [B, heads, (H/p)*(W/p), text tokens] of the softmax over all keys, not renormalised. One forward at a time per
/// instance.
/// </remarks>
public sealed class SD3Transformer2DModel : Module<Tensor, Tensor, Tensor, Tensor, Tensor>
{
#pragma warning disable IDE1006 // PyTorch state-dict names
    private readonly PatchEmbed pos_embed;
    private readonly CombinedTimestepTextProjEmbeddings time_text_embed;
    private readonly Linear context_embedder;
    private readonly ModuleList<JointTransformerBlock> transformer_blocks;
    private readonly AdaLayerNormContinuous norm_out;
    private readonly Linear proj_out;
#pragma warning restore IDE1006

    private readonly AttentionCaptureSlot _slot = new();
    private readonly HashSet<string> _attentionPaths;

    public SD3Transformer2DModel(SD3TransformerConfig config) : base(nameof(SD3Transformer2DModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        Config = config;
        int dim = config.InnerDim;
        pos_embed = new PatchEmbed(config.SampleSize, config.PatchSize, config.InChannels, dim, config.PosEmbedMaxSize);
        time_text_embed = new CombinedTimestepTextProjEmbeddings(dim, config.PooledProjectionDim);
        context_embedder = Linear(config.JointAttentionDim, config.CaptionProjectionDim);
        transformer_blocks = new ModuleList<JointTransformerBlock>(Enumerable.Range(0, config.NumLayers)
            .Select(i => new JointTransformerBlock(dim, config.NumAttentionHeads, config.AttentionHeadDim, contextPreOnly: i == config.NumLayers - 1))
            .ToArray());
        norm_out = new AdaLayerNormContinuous(dim, dim);
        proj_out = Linear(dim, config.PatchSize * config.PatchSize * config.OutChannels);
        RegisterComponents();

        // Give every joint attention its module path and this model's capture slot.
        var paths = _slot.BindAll(this);
        _attentionPaths = new HashSet<string>(paths, StringComparer.Ordinal);
        JointAttentionPaths = paths.Select(p => new CrossAttentionLayer(p, config.PatchSize, config.NumAttentionHeads)).ToList();
    }

    /// <summary>
    /// Builds the model from a diffusers component folder (<c>transformer/</c>): <c>config.json</c> and the strictly loaded
    /// <c>diffusion_pytorch_model[.variant].safetensors</c> (or its sharded index), fp32 on the CPU; see
    /// <see cref="PretrainedModels.LoadSD3Transformer"/> for a device.
    /// </summary>
    /// <param name="variant">Weights variant (<c>fp16</c>), as <see cref="DiffusersWeights.ResolveWeightsFile"/> resolves it.</param>
    public static SD3Transformer2DModel FromFolder(string transformerFolder, string? variant = null)
    {
        ArgumentNullException.ThrowIfNull(transformerFolder);
        var files = new CTCal.Core.Models.ComponentFiles("transformer", Path.Combine(transformerFolder, "config.json"),
            DiffusersWeights.ResolveWeightsFile(transformerFolder, variant));
        return PretrainedModels.LoadSD3Transformer(files);
    }

    public SD3TransformerConfig Config { get; }

    /// <summary>
    /// Every joint attention layer (<c>transformer_blocks.{i}.attn</c>), in forward order, with its map downscale factor
    /// (latent side / map side = the patch size) and head count. The maps are [B, heads, (H/p)*(W/p), text tokens].
    /// </summary>
    public IReadOnlyList<CrossAttentionLayer> JointAttentionPaths { get; }

    /// <summary>Module paths that a capture may name.</summary>
    public IReadOnlyCollection<string> AttentionPaths => _attentionPaths;

    /// <summary>Predicts the flow-matching velocity without capturing attention.</summary>
    public override Tensor forward(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor pooledProjections, Tensor timestep) =>
        forward(hiddenStates, encoderHiddenStates, pooledProjections, timestep, null);

    /// <summary>Predicts the flow-matching velocity; records the joint-attention maps of the layers <paramref name="capture"/> names.</summary>
    /// <param name="hiddenStates">[B, in_channels, H, W] noisy latents; H and W multiples of the patch size.</param>
    /// <param name="encoderHiddenStates">[B, L, joint_attention_dim] text states (CLIP-L/G + T5).</param>
    /// <param name="pooledProjections">[B, pooled_projection_dim] pooled CLIP embeddings.</param>
    /// <param name="timestep">Scalar or [B] float timesteps, sigma x 1000.</param>
    /// <param name="capture">Layers to record, or null for the fused attention path everywhere.</param>
    /// <returns>[B, out_channels, H, W]; it and the captured maps belong to the caller's dispose scope.</returns>
    public Tensor forward(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor pooledProjections, Tensor timestep, AttentionCapture? capture)
    {
        ArgumentNullException.ThrowIfNull(hiddenStates);
        ArgumentNullException.ThrowIfNull(encoderHiddenStates);
        ArgumentNullException.ThrowIfNull(pooledProjections);
        ArgumentNullException.ThrowIfNull(timestep);
        CheckInputs(hiddenStates, encoderHiddenStates, pooledProjections);
        return _slot.Forward(nameof(SD3Transformer2DModel), capture, _attentionPaths,
            () => Run(hiddenStates, encoderHiddenStates, pooledProjections, timestep));
    }

    private void CheckInputs(Tensor hiddenStates, Tensor encoderHiddenStates, Tensor pooledProjections)
    {
        static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
        int p = Config.PatchSize;
        if (hiddenStates.dim() != 4 || hiddenStates.shape[1] != Config.InChannels)
            throw new ArgumentException($"hidden_states must be [B, {Config.InChannels}, H, W], got {Shape(hiddenStates)}", nameof(hiddenStates));
        if (hiddenStates.shape[2] % p != 0 || hiddenStates.shape[3] % p != 0)
            throw new ArgumentException($"hidden_states height and width must be multiples of the patch size {p}, got {Shape(hiddenStates)}", nameof(hiddenStates));
        long b = hiddenStates.shape[0];
        if (encoderHiddenStates.dim() != 3 || encoderHiddenStates.shape[0] != b || encoderHiddenStates.shape[2] != Config.JointAttentionDim)
            throw new ArgumentException($"encoder_hidden_states must be [{b}, L, {Config.JointAttentionDim}], got {Shape(encoderHiddenStates)}", nameof(encoderHiddenStates));
        if (pooledProjections.dim() != 2 || pooledProjections.shape[0] != b || pooledProjections.shape[1] != Config.PooledProjectionDim)
            throw new ArgumentException($"pooled_projections must be [{b}, {Config.PooledProjectionDim}], got {Shape(pooledProjections)}", nameof(pooledProjections));
    }

    private Tensor Run(Tensor x, Tensor context, Tensor pooled, Tensor timestep)
    {
        long batch = x.shape[0], height = x.shape[2], width = x.shape[3];
        int p = Config.PatchSize, outC = Config.OutChannels;

        // Timesteps: a scalar or [B], broadcast to the batch.
        var t = timestep.dim() == 0 ? timestep.reshape(1) : timestep;
        if (t.dim() != 1 || (t.shape[0] != 1 && t.shape[0] != batch))
            throw new ArgumentException($"timestep must be a scalar or [{batch}], got [{string.Join(", ", timestep.shape)}]", nameof(timestep));
        t = t.to(x.device).expand(batch); // [B]

        var h = pos_embed.forward(x);                      // [B, N = (H/p)*(W/p), dim]
        var temb = time_text_embed.forward(t, pooled);     // [B, dim]
        Tensor? c = context_embedder.forward(context);     // [B, L, dim]
        foreach (var block in transformer_blocks)
        {
            var (image, text) = block.forward(h, c!, temb);
            h = image;
            c = text;                                       // null after the last (context_pre_only) block
        }
        h = norm_out.forward(h, temb);                      // [B, N, dim]
        h = proj_out.forward(h);                            // [B, N, p*p*outC]

        // Unpatchify: token (i, j) holds a p x p patch of every output channel, laid out (p, q, c).
        long hp = height / p, wp = width / p;
        h = h.reshape(batch, hp, wp, p, p, outC);           // [B, H/p, W/p, p, q, C]
        h = h.permute(0, 5, 1, 3, 2, 4);                    // [B, C, H/p, p, W/p, q]
        return h.reshape(batch, outC, hp * p, wp * p);      // [B, C, H, W]
    }
}
