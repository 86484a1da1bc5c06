using System.Text.Json.Nodes;
using CTCal.Core.Diffusers;
using CTCal.Tests;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>
/// TorchSharp UNet, CLIP text encoder and VAE with seeded random weights, saved as a diffusers pipeline folder
/// (config.json + safetensors per component, tokenizer, scheduler, model_index.json). Owns the models and the folder.
/// </summary>
public sealed class TinyPipeline : IDisposable
{
    public TinyPipeline(TinyConfigs configs, int seed, string root)
    {
        Configs = configs;
        Root = root;
        Folder = Path.Combine(root, "model");
        UNet = new UNet2DConditionModel(UNetConfig.Parse(configs.UNet, "unet/config.json"));
        TextEncoder = new CLIPTextModel(ClipTextConfig.Parse(configs.TextEncoder, "text_encoder/config.json"));
        Vae = new AutoencoderKL(VaeConfig.Parse(configs.Vae, "vae/config.json"));
        RandomWeights.Fill(UNet, seed);
        RandomWeights.Fill(TextEncoder, seed + 1);
        RandomWeights.Fill(Vae, seed + 2);
        UNet.eval();
        TextEncoder.eval();
        Vae.eval();
        WriteFolder();
    }

    public TinyConfigs Configs { get; }

    /// <summary>Temporary root folder (the model folder and any export output live under it); deleted on dispose.</summary>
    public string Root { get; }

    /// <summary>The diffusers pipeline folder.</summary>
    public string Folder { get; }

    public UNet2DConditionModel UNet { get; }
    public CLIPTextModel TextEncoder { get; }
    public AutoencoderKL Vae { get; }

    private void WriteFolder()
    {
        Write("unet/config.json", Configs.UNet);
        Write("text_encoder/config.json", Configs.TextEncoder);
        Write("vae/config.json", Configs.Vae);
        DiffusersWeights.Save(UNet, Path.Combine(Folder, "unet", "diffusion_pytorch_model.safetensors"));
        DiffusersWeights.Save(TextEncoder, Path.Combine(Folder, "text_encoder", "model.safetensors"));
        DiffusersWeights.Save(Vae, Path.Combine(Folder, "vae", "diffusion_pytorch_model.safetensors"));

        string fixture = Path.Combine(TestPaths.Fixtures, "tiny-sd1");
        Directory.CreateDirectory(Path.Combine(Folder, "tokenizer"));
        foreach (string file in Directory.EnumerateFiles(Path.Combine(fixture, "tokenizer")))
            File.Copy(file, Path.Combine(Folder, "tokenizer", Path.GetFileName(file)));
        Directory.CreateDirectory(Path.Combine(Folder, "scheduler"));
        File.Copy(Path.Combine(fixture, "scheduler", "scheduler_config.json"), Path.Combine(Folder, "scheduler", "scheduler_config.json"));

        var index = new JsonObject
        {
            ["_class_name"] = "StableDiffusionPipeline",
            ["_diffusers_version"] = "0.27.2",
            ["requires_safety_checker"] = false,
            ["scheduler"] = new JsonArray("diffusers", "PNDMScheduler"),
            ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
            ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
            ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
            ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
        };
        Write("model_index.json", index.ToJsonString());
    }

    private void Write(string relative, string text)
    {
        string path = Path.Combine(Folder, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    public void Dispose()
    {
        UNet.Dispose();
        TextEncoder.Dispose();
        Vae.Dispose();
        try { Directory.Delete(Root, true); } catch (IOException) { }
    }
}

/// <summary>Seeded random weights large enough that attention and the time embedding visibly shape the outputs.</summary>
public static class RandomWeights
{
    /// <summary>
    /// Matrices and kernels ~ N(0, (gain / sqrt(fan_in))^2) with gain 1.5 (attention logits of order 1-2, not near-uniform
    /// softmax), biases ~ N(0, 0.1^2), norm scales (1-D) ~ 1 + N(0, 0.1^2), embeddings ~ N(0, 0.5^2). Buffers (SD3's
    /// position table) keep their values.
    /// </summary>
    public static void Fill(nn.Module module, int seed, double gain = 1.5)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var generator = new Generator((ulong)seed);
        foreach (var (name, p) in module.named_parameters())
        {
            bool norm = name.Contains("norm", StringComparison.Ordinal) && p.dim() == 1; // not SD3's adaLN linears (norm1.linear.weight)
            Tensor value;
            if (norm && name.EndsWith(".weight", StringComparison.Ordinal))
                value = randn(p.shape, generator: generator).mul(0.1).add(1.0);
            else if (name.Contains("embedding", StringComparison.Ordinal) && p.dim() == 2 && !name.Contains("time_embedding", StringComparison.Ordinal))
                value = randn(p.shape, generator: generator).mul(0.5);
            else if (p.dim() >= 2)
                value = randn(p.shape, generator: generator).mul(gain / Math.Sqrt(p.numel() / p.shape[0]));
            else
                value = randn(p.shape, generator: generator).mul(0.1);
            p.copy_(value);
        }
    }
}
