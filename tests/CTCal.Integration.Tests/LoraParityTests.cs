using System.Globalization;
using System.Text.Json;
using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
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
        var entries = new List<SafetensorsWriteEntry>();
        var updates = new List<(nn.Module Model, string Module, Tensor A, Tensor B)>();
        foreach (var (model, prefix, targets) in new (nn.Module, string, string[])[] { (unet, "unet", UNetTargets), (clip, "text_encoder", TextTargets) })
        {
            var weights = model.state_dict();
            foreach (string module in targets)
            {
                Assert.True(weights.ContainsKey(module + ".weight"), $"{P.Configs.Name}: no '{module}.weight' to adapt");
                long[] w = weights[module + ".weight"].shape;   // [out, in] or [out, in, k, k]
                long[] aShape = w.Length == 4 ? [Rank, w[1], w[2], w[3]] : [Rank, w[1]];
                long[] bShape = w.Length == 4 ? [w[0], Rank, 1, 1] : [w[0], Rank];
                var a = randn(aShape, generator: g).mul(1.0 / Math.Sqrt(aShape.Skip(1).Aggregate(1L, (x, y) => x * y)));
                var b = randn(bShape, generator: g).mul(0.2);
                entries.Add(SafetensorsWriteEntry.FromFloat32($"{prefix}.{module}.lora_A.weight", aShape, Compare.Floats(a)));
                entries.Add(SafetensorsWriteEntry.FromFloat32($"{prefix}.{module}.lora_B.weight", bShape, Compare.Floats(b)));
                updates.Add((model, module, a, b));
            }
        }
        string lora = Path.Combine(root, "pytorch_lora_weights.safetensors");
        SafetensorsWriter.Write(lora, entries, new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["lora_adapter_metadata"] = JsonSerializer.Serialize(new { r = Rank, lora_alpha = Alpha }),
            ["ctcal.lora_rank"] = Rank.ToString(CultureInfo.InvariantCulture),
            ["ctcal.lora_alpha"] = Alpha.ToString("R", CultureInfo.InvariantCulture),
        });

        // Fold W += scale * alpha / rank * B @ A (conv kernels flattened to [out, in*k*k]) into the TorchSharp weights.
        using (no_grad())
        {
            foreach (var (model, module, a, b) in updates)
            {
                var weight = model.state_dict()[module + ".weight"];
                var delta = b.reshape(b.shape[0], Rank).matmul(a.reshape(Rank, -1)).reshape(weight.shape); // [out, in(, k, k)]
                weight.add_(delta.mul(Scale * Alpha / Rank));
            }
        }

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
