using CTCal.Core.Diffusers;
using CTCal.Export;
using CTCal.Trainer.Networks;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>float16-stored weights and a single timestep for the whole batch, against TorchSharp.</summary>
public abstract partial class ExportParityTests<TExport>
{
    [Fact]
    public void Fp16_export_matches_torch_with_weights_rounded_to_float16()
    {
        using var scope = NewDisposeScope();
        string output = Path.Combine(P.Root, $"fp16-{Guid.NewGuid():N}");
        OnnxExporter.Export(new ExportOptions { ModelFolder = P.Folder, OutputFolder = output, Components = ExportComponents.Unet, Fp16 = true });

        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(P.Folder, "unet", "config.json")));
        DiffusersWeights.Load(unet, Path.Combine(P.Folder, "unet"));
        unet.eval();
        using (no_grad())
            foreach (var (_, p) in unet.named_parameters()) p.copy_(p.to(ScalarType.Float16).to(ScalarType.Float32)); // round-to-nearest-even

        var g = new Generator(41);
        var sample = randn(new long[] { 2, 4, P.Configs.LatentHeight, P.Configs.LatentWidth }, generator: g);
        var context = randn(new long[] { 2, 7, unet.Config.CrossAttentionDim }, generator: g);
        Tensor expected, full;
        using (no_grad())
        {
            expected = unet.forward(sample, tensor(new[] { 100f, 600f }), context);
            full = P.UNet.forward(sample, tensor(new[] { 100f, 600f }), context);
        }
        using var ort = new Ort(Path.Combine(output, "unet", "model.onnx"));
        var (data, shape) = ort.Run(("sample", Compare.Floats(sample), sample.shape), ("timestep", new[] { 100f, 600f }, [2]),
            ("encoder_hidden_states", Compare.Floats(context), context.shape))["out_sample"];
        log.WriteLine($"fp16 storage moves the output by up to {Compare.MaxAbsDiff(data, Compare.Floats(full)):E2} from the fp32 model");
        Compare.Agree("unet out_sample, fp16 weights", data, shape, expected, log);
    }

    [Fact]
    public void Unet_broadcasts_a_single_timestep_over_the_batch()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(43);
        var sample = randn(new long[] { 2, 4, P.Configs.LatentHeight, P.Configs.LatentWidth }, generator: g);
        var context = randn(new long[] { 2, 5, P.UNet.Config.CrossAttentionDim }, generator: g);
        Tensor expected;
        using (no_grad()) expected = P.UNet.forward(sample, tensor(321f), context); // scalar timestep

        using var ort = new Ort(Onnx("unet"));
        var (data, shape) = ort.Run(("sample", Compare.Floats(sample), sample.shape), ("timestep", new[] { 321f }, [1]),
            ("encoder_hidden_states", Compare.Floats(context), context.shape))["out_sample"];
        Compare.Agree("unet out_sample, timestep [1]", data, shape, expected, log);
    }
}
