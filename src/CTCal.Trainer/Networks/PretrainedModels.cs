using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Networks;

/// <summary>
/// Builds the SD models from a diffusers folder's components (config + safetensors). The caller owns and disposes the
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

    /// <summary>The VAE, frozen (eval mode, no gradients), in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public static AutoencoderKL LoadVae(ComponentFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new AutoencoderKL(VaeConfig.Load(files.ConfigPath)), files.WeightsPath, null, device, dtype);

    /// <summary>The text encoder, frozen (eval mode, no gradients), in <paramref name="dtype"/> on <paramref name="device"/>.</summary>
    public static CLIPTextModel LoadTextEncoder(ComponentFiles files, Device? device = null, ScalarType dtype = ScalarType.Float32) =>
        Frozen(new CLIPTextModel(ClipTextConfig.Load(files.ConfigPath)), files.WeightsPath, CLIPTextModel.IgnorableKeys, device, dtype);

    /// <summary>Stops gradients and switches to eval mode.</summary>
    public static T Freeze<T>(T module) where T : nn.Module
    {
        foreach (var p in module.parameters()) p.requires_grad_(false);
        module.eval();
        return module;
    }

    private static T Frozen<T>(T module, string weights, IEnumerable<string>? ignorable, Device? device, ScalarType dtype) where T : nn.Module
    {
        try
        {
            DiffusersWeights.Load(module, weights, ignorable);
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
