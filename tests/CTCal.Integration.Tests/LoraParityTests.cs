using CTCal.Core.Diffusers;
using CTCal.Export;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>A peft-named LoRA merged at export gives what TorchSharp gives with the same update folded into its weights by hand.</summary>
public abstract partial class ExportParityTests<TExport>
{
    private const int Rank = 4;
    private const float Alpha = 8f, Scale = 0.7f;

    /// <summary>UNet targets: cross-attention q/k, self-attention out, proj_in (1x1 conv in SD1, linear in SD2), GEGLU, a 3x3 resnet conv.</summary>
    private static readonly string[] UNetTargets =
    [
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
        "mid_block.attentions.0.transformer_blocks.0.attn1.to_out.0",
        "up_blocks.1.attentions.0.proj_in",
        "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj",
        "down_blocks.0.resnets.0.conv1",
    ];

    private static readonly string[] TextTargets = ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.mlp.fc1"];

    [Fact]
    public void Lora_merged_at_export_matches_torch_with_the_update_folded_in()
    {
        using var scope = NewDisposeScope();
        string root = Path.Combine(P.Root, $"lora-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);

        // Fresh copies of the saved weights (also a Save -> Load round trip), then the LoRA written in peft naming.
        using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(P.Folder, "unet", "config.json")));
        DiffusersWeights.Load(unet, Path.Combine(P.Folder, "unet"));
        using var clip = new CLIPTextModel(ClipTextConfig.Load(Path.Combine(P.Folder, "text_encoder", "config.json")));
        DiffusersWeights.Load(clip, Path.Combine(P.Folder, "text_encoder"));
        unet.eval();
        clip.eval();
        var g = new Generator(31);
        string lora = Path.Combine(root, "pytorch_lora_weights.safetensors");
        var updates = RandomLora.Write(lora, [(unet, "unet", UNetTargets), (clip, "text_encoder", TextTargets)], Rank, Alpha, g,
            ctcalMetadata: true, where: $"{P.Configs.Name}: ");
        RandomLora.Fold(updates, Rank, Alpha, Scale);

        string output = Path.Combine(root, "onnx");
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = P.Folder, OutputFolder = output, Components = ExportComponents.Unet | ExportComponents.TextEncoder,
            Loras = [new LoraSpec(lora, Scale)],
        });

        var sample = randn(new long[] { 2, 4, P.Configs.LatentHeight, P.Configs.LatentWidth }, generator: g);
        var context = randn(new long[] { 2, 7, unet.Config.CrossAttentionDim }, generator: g);
        var timesteps = tensor(new[] { 30f, 800f });
        int eos = clip.Config.EosTokenId;
        int[] ids = [clip.Config.BosTokenId, 40, 41, 42, eos, eos, 7, 8, 9, 10, 11, eos, eos, eos];
        var idTensor = tensor(ids.Select(i => (long)i).ToArray(), new long[] { 2, 7 });
        Tensor expected, baseline, last, pooled, baseLast;
        using (no_grad())
        {
            expected = unet.forward(sample, timesteps, context);
            baseline = P.UNet.forward(sample, timesteps, context);
            (last, pooled) = clip.forward(idTensor);
            baseLast = P.TextEncoder.forward(idTensor).LastHiddenState;
        }

        using (var ort = new Ort(Path.Combine(output, "unet", "model.onnx")))
        {
            var (data, shape) = ort.Run(("sample", Compare.Floats(sample), sample.shape), ("timestep", new[] { 30f, 800f }, [2]),
                ("encoder_hidden_states", Compare.Floats(context), context.shape))["out_sample"];
            double effect = Compare.MaxAbsDiff(data, Compare.Floats(baseline));
            log.WriteLine($"LoRA changes the UNet output by up to {effect:F4}");
            Assert.True(effect > 1e-2, $"the LoRA changed the exported UNet's output by only {effect}");
            Compare.Agree("unet out_sample with LoRA", data, shape, expected, log);
        }
        using (var ort = new Ort(Path.Combine(output, "text_encoder", "model.onnx")))
        {
            var outputs = ort.Run(("input_ids", ids, [2, 7]));
            double effect = Compare.MaxAbsDiff(outputs["last_hidden_state"].Data, Compare.Floats(baseLast));
            Assert.True(effect > 1e-2, $"the LoRA changed the exported text encoder's output by only {effect}");
            Compare.Agree("text_encoder last_hidden_state with LoRA", outputs["last_hidden_state"].Data, outputs["last_hidden_state"].Shape, last, log);
            Compare.Agree("text_encoder pooler_output with LoRA", outputs["pooler_output"].Data, outputs["pooler_output"].Shape, pooled, log);
        }
    }
}
