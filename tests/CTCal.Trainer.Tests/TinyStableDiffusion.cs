using CTCal.Core.Diffusers;
using CTCal.Core.Schedulers;
using CTCal.Core.Text;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using CTCal.Trainer.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>A tiny SD-1-style model built from configs written here (random weights, the real CLIP BPE tokenizer).</summary>
internal static class TinyStableDiffusion
{
    public const string UNetJson = """
        {"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
         "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "layers_per_block": 1, "cross_attention_dim": 32,
         "attention_head_dim": 4, "norm_num_groups": 8, "sample_size": 8, "in_channels": 4, "out_channels": 4}
        """;

    public const string VaeJson = """
        {"block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
         "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"], "latent_channels": 4, "layers_per_block": 1,
         "norm_num_groups": 16, "sample_size": 16, "scaling_factor": 0.18215}
        """;

    public const string TextJson = """
        {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
         "max_position_embeddings": 77, "hidden_act": "quick_gelu", "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
        """;

    public const string SchedulerJson = """
        {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
         "prediction_type": "epsilon", "steps_offset": 1, "set_alpha_to_one": false}
        """;

    private static readonly Lazy<ClipTokenizer> Tokenizer = new(() => ClipTokenizer.FromFolder(Path.Combine(TestPaths.Fixtures, "tiny-sd1", "tokenizer")));

    public static DiffusersTrainableModel Create(int seed = 0)
    {
        // Weights from a private generator: tests run in parallel and torch's global RNG is shared.
        using var generator = new Generator((ulong)seed + 1);
        var unet = new UNet2DConditionModel(UNetConfig.Parse(UNetJson));
        var text = new CLIPTextModel(ClipTextConfig.Parse(TextJson));
        var vae = new AutoencoderKL(VaeConfig.Parse(VaeJson));
        foreach (nn.Module m in new nn.Module[] { unet, text, vae }) DeterministicInit.Reset(m, generator);
        PretrainedModels.Freeze(text);
        PretrainedModels.Freeze(vae);
        return new DiffusersTrainableModel(unet, text, vae, Tokenizer.Value, SchedulerConfig.Parse(SchedulerJson));
    }
}
