using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Export;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>
/// A diffusers-style SD3 LoRA (peft keys <c>transformer.*</c>, <c>text_encoder.*</c>, <c>text_encoder_2.*</c>) merged at export gives what
/// TorchSharp gives with the same update folded into its weights by hand.
/// </summary>
public sealed class SD3LoraExportTests(SD3Export export, Xunit.Abstractions.ITestOutputHelper log) : IClassFixture<SD3Export>
{
    private const int Rank = 2;
    private const float Alpha = 4f, Scale = 0.6f;

    /// <summary>Transformer targets: image and text attention projections, both adaLN linears, a feed-forward, the text and output projections, the patchify conv.</summary>
    private static readonly string[] TransformerTargets =
    [
        "transformer_blocks.0.attn.to_q",
        "transformer_blocks.1.attn.add_v_proj",
        "transformer_blocks.0.attn.to_add_out",
        "transformer_blocks.2.attn.add_q_proj", // the last block's, unused (diffusers' SD3 LoRA training targets it): accepted, no effect
        "transformer_blocks.2.norm1.linear",
        "transformer_blocks.2.norm1_context.linear",
        "transformer_blocks.1.ff_context.net.0.proj",
        "context_embedder",
        "proj_out",
        "pos_embed.proj",
    ];

    private static readonly string[] TextTargets = ["text_model.encoder.layers.1.self_attn.k_proj", "text_model.encoder.layers.2.mlp.fc2"];

    private static readonly string[] Text2Targets = ["text_model.encoder.layers.0.self_attn.v_proj", "text_projection"];

    [Fact]
    public void SD3_lora_merged_at_export_matches_torch_with_the_update_folded_in()
    {
        using var scope = NewDisposeScope();
        var P = export.Pipeline;
        string root = Path.Combine(P.Root, $"lora-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);

        using var transformer = SD3Transformer2DModel.FromFolder(Path.Combine(P.Folder, "transformer"));
        using var clip = new CLIPTextModelWithProjection(ClipTextConfig.Load(Path.Combine(P.Folder, "text_encoder", "config.json")));
        DiffusersWeights.Load(clip, Path.Combine(P.Folder, "text_encoder"));
        using var clip2 = new CLIPTextModelWithProjection(ClipTextConfig.Load(Path.Combine(P.Folder, "text_encoder_2", "config.json")));
        DiffusersWeights.Load(clip2, Path.Combine(P.Folder, "text_encoder_2"));
        transformer.eval();
        clip.eval();
        clip2.eval();
        var g = new Generator(53);
        string lora = Path.Combine(root, "pytorch_lora_weights.safetensors");
        var updates = RandomLora.Write(lora, [(transformer, "transformer", TransformerTargets), (clip, "text_encoder", TextTargets), (clip2, "text_encoder_2", Text2Targets)],
            Rank, Alpha, g, ctcalMetadata: false);
        RandomLora.Fold(updates, Rank, Alpha, Scale); // the patchify kernel flattened to [out, in*p*p]

        string output = Path.Combine(root, "onnx");
        OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = P.Folder, OutputFolder = output, Components = ExportComponents.Transformer | ExportComponents.TextEncoder | ExportComponents.TextEncoder2,
            Loras = [new LoraSpec(lora, Scale)],
        });

        var c = transformer.Config;
        var latents = randn(new long[] { 2, c.InChannels, 8, 10 }, generator: g);
        var context = randn(new long[] { 2, 5, c.JointAttentionDim }, generator: g);
        var pooled = randn(new long[] { 2, c.PooledProjectionDim }, generator: g);
        float[] t = [900f, 40f];
        int eos = clip.Config.EosTokenId;
        int[] ids = [clip.Config.BosTokenId, 40, 41, 42, eos, eos, 7, 8, 9, 10, 11, eos, eos, eos];
        var idTensor = tensor(ids.Select(i => (long)i).ToArray(), new long[] { 2, 7 });
        Tensor expected, baseline, embeds, baseEmbeds;
        Tensor[] hidden;
        using (no_grad())
        {
            expected = transformer.forward(latents, context, pooled, tensor(t));
            baseline = P.Transformer.forward(latents, context, pooled, tensor(t));
            (embeds, _, hidden) = clip.forward(idTensor);
            baseEmbeds = P.TextEncoder.forward(idTensor).TextEmbeds;
        }

        using (var ort = new Ort(Path.Combine(output, "transformer", "model.onnx")))
        {
            var (data, shape) = ort.Run(("hidden_states", Compare.Floats(latents), latents.shape), ("encoder_hidden_states", Compare.Floats(context), context.shape),
                ("pooled_projections", Compare.Floats(pooled), pooled.shape), ("timestep", t, [2]))["out_hidden_states"];
            double effect = Compare.MaxAbsDiff(data, Compare.Floats(baseline));
            log.WriteLine($"LoRA changes the transformer output by up to {effect:F4}");
            Assert.True(effect > 1e-2, $"the LoRA changed the exported transformer's output by only {effect}");
            Compare.Agree("transformer out_hidden_states with LoRA", data, shape, expected, log);
        }
        using (var ort = new Ort(Path.Combine(output, "text_encoder_2", "model.onnx")))
        {
            int eos2 = clip2.Config.EosTokenId;
            int[] ids2 = [clip2.Config.BosTokenId, 40, 41, 42, eos2, 5, 6, clip2.Config.BosTokenId, 7, 8, 9, 10, 11, eos2];
            var id2Tensor = tensor(ids2.Select(i => (long)i).ToArray(), new long[] { 2, 7 });
            Tensor embeds2, base2;
            using (no_grad())
            {
                embeds2 = clip2.forward(id2Tensor).TextEmbeds;
                base2 = P.TextEncoder2.forward(id2Tensor).TextEmbeds;
            }
            var outputs = ort.Run(("input_ids", ids2, [2, 7]));
            double effect = Compare.MaxAbsDiff(outputs["text_embeds"].Data, Compare.Floats(base2));
            Assert.True(effect > 1e-2, $"the LoRA changed the exported text_encoder_2's text_embeds by only {effect}");
            Compare.Agree("text_encoder_2 text_embeds with LoRA", outputs["text_embeds"].Data, outputs["text_embeds"].Shape, embeds2, log);
        }
        using (var ort = new Ort(Path.Combine(output, "text_encoder", "model.onnx")))
        {
            var outputs = ort.Run(("input_ids", ids, [2, 7]));
            double effect = Compare.MaxAbsDiff(outputs["text_embeds"].Data, Compare.Floats(baseEmbeds));
            Assert.True(effect > 1e-2, $"the LoRA changed the exported text encoder's text_embeds by only {effect}");
            Compare.Agree("text_encoder text_embeds with LoRA", outputs["text_embeds"].Data, outputs["text_embeds"].Shape, embeds, log);
            string penultimate = $"hidden_states.{hidden.Length - 2}";
            Compare.Agree($"text_encoder {penultimate} with LoRA", outputs[penultimate].Data, outputs[penultimate].Shape, hidden[^2], log);
        }
    }

    [Fact]
    public void SD3_export_refuses_a_unet_lora_naming_it()
    {
        var P = export.Pipeline;
        string root = Path.Combine(P.Root, $"lora-unet-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
        string lora = Path.Combine(root, "unet_lora.safetensors");
        SafetensorsWriter.Write(lora,
        [
            SafetensorsWriteEntry.FromFloat32("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", [1, 12], new float[12]),
            SafetensorsWriteEntry.FromFloat32("unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight", [12, 1], new float[12]),
        ]);
        var e = Assert.Throws<ExportValidationException>(() => OnnxExporter.Export(new ExportOptions
        {
            ModelFolder = P.Folder, OutputFolder = Path.Combine(root, "onnx"), Loras = [new LoraSpec(lora)],
        }));
        Assert.Contains(e.Problems, p => p.Contains("adapts UNet modules", StringComparison.Ordinal) && p.Contains("SD3 model", StringComparison.Ordinal));
        Assert.False(Directory.Exists(Path.Combine(root, "onnx")));
    }
}
