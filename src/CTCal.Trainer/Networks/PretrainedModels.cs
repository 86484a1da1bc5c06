using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// Builds the SD models from a diffusers folder's components (config + safetensors), or from a config and a
/// <see cref="TensorSource"/> (e.g. a single-file checkpoint's component). The caller owns and disposes the
/// returned modules.
/// </summary>
public static class PretrainedModels
{
    /// <summary>The UNet in fp32 on <paramref name="device"/>, in training mode with gradients on (the trainable part).</summary>
    public static UNet2DConditionModel LoadUNet(ComponentFiles files, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        var unet = new UNet2DConditionModel(UNetConfig.Load(files.ConfigPath));
        try
        {
            DiffusersWeights.Load(unet, files.WeightsPath);
            if (device is not null && device.type != DeviceType.CPU) unet.to(device);
            return unet;
        }
        catch
        {
            unet.Dispose();
            throw;
        }
    }

    /// <summary>The SD3 transformer (<c>transformer/</c>) in fp32 on <paramref name="device"/>, trainable, like <see cref="LoadUNet(ComponentFiles, Device?)"/>.</summary>
    public static SD3Transformer2DModel LoadSD3Transformer(ComponentFiles files, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        var model = new SD3Transformer2DModel(SD3TransformerConfig.Load(files.ConfigPath));
        try
        {
            DiffusersWeights.Load(model, files.WeightsPath);
            if (device is not null && device.type != DeviceType.CPU) model.to(device);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The VAE, frozen (eval mode, no gradients), in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public static AutoencoderKL LoadVae(ComponentFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new AutoencoderKL(VaeConfig.Load(files.ConfigPath)), files.WeightsPath, null, device, dtype);

    /// <summary>The text encoder, frozen (eval mode, no gradients), in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public static CLIPTextModel LoadTextEncoder(ComponentFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new CLIPTextModel(ClipTextConfig.Load(files.ConfigPath)), files.WeightsPath, CLIPTextModel.IgnorableKeys, device, dtype);

    /// <summary>An SD3 (or SDXL) CLIP text encoder with projection (<c>text_encoder</c>, <c>text_encoder_2</c>), frozen.</summary>
    public static CLIPTextModelWithProjection LoadTextEncoderWithProjection(ComponentFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new CLIPTextModelWithProjection(ClipTextConfig.Load(files.ConfigPath)), files.WeightsPath, CLIPTextModelWithProjection.IgnorableKeys, device, dtype);

    /// <summary>
    /// SD3's T5 encoder (<c>text_encoder_3</c>, usually a sharded <c>model.safetensors.index.json</c>), frozen; the tied
    /// <c>encoder.embed_tokens.weight</c> may be present and is skipped (see <see cref="T5EncoderModel"/>).
    /// </summary>
    public static T5EncoderModel LoadT5Encoder(ComponentFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new T5EncoderModel(T5Config.Load(files.ConfigPath)), files.WeightsPath, T5EncoderModel.IgnorableKeys, device, dtype);

    /// <summary>The UNet of <paramref name="config"/> with the weights of <paramref name="weights"/> (any layout), fp32, trainable.</summary>
    public static UNet2DConditionModel LoadUNet(UNetConfig config, TensorSource weights, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var unet = new UNet2DConditionModel(config);
        try
        {
            DiffusersWeights.Load(unet, weights);
            if (device is not null && device.type != DeviceType.CPU) unet.to(device);
            return unet;
        }
        catch
        {
            unet.Dispose();
            throw;
        }
    }

    /// <summary>The VAE of <paramref name="config"/> with the weights of <paramref name="weights"/>, frozen.</summary>
    public static AutoencoderKL LoadVae(VaeConfig config, TensorSource weights, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new AutoencoderKL(config), m => DiffusersWeights.Load(m, weights), device, dtype);

    /// <summary>The text encoder of <paramref name="config"/> with the weights of <paramref name="weights"/>, frozen.</summary>
    public static CLIPTextModel LoadTextEncoder(ClipTextConfig config, TensorSource weights, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new CLIPTextModel(config), m => DiffusersWeights.Load(m, weights, CLIPTextModel.IgnorableKeys), device, dtype);

    /// <summary>Stops gradients and switches to eval mode.</summary>
    public static T Freeze<T>(T module) where T : nn.Module
    {
        foreach (var p in module.parameters()) p.requires_grad_(false);
        module.eval();
        return module;
    }

    private static T Frozen<T>(T module, string weights, IEnumerable<string>? ignorable, Device? device, ScalarType dtype) where T : nn.Module =>
        Frozen(module, m => DiffusersWeights.Load(m, weights, ignorable), device, dtype);

    private static T Frozen<T>(T module, Action<T> load, Device? device, ScalarType dtype) where T : nn.Module
    {
        try
        {
            load(module);
            if (dtype != ScalarType.Float32) module.to(dtype);
            if (device is not null && device.type != DeviceType.CPU) module.to(device);
            return Freeze(module);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }
}
