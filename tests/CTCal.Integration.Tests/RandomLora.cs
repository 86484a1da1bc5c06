using System.Globalization;
using System.Text.Json;
using CTCal.Core.Safetensors;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Integration.Tests;

/// <summary>One adapted module of a <see cref="RandomLora"/>: its model, module path and factors A [r, in(, k, k)], B [out, r(, 1, 1)].</summary>
internal sealed record LoraUpdate(nn.Module Model, string Module, Tensor A, Tensor B);

/// <summary>
/// Random LoRA files for the export-merge parity tests: factors drawn from a generator for the target modules of each
/// component, written in peft naming, and folded into the TorchSharp weights the same way the exporter merges them.
/// </summary>
internal static class RandomLora
{
    /// <summary>
    /// Writes a LoRA of <paramref name="rank"/> and <paramref name="alpha"/> over <paramref name="parts"/> (model, key prefix,
    /// module paths) to <paramref name="path"/>; <paramref name="ctcalMetadata"/> adds CTCal's own rank/alpha keys beside
    /// the peft config. The factors are drawn from <paramref name="generator"/> in part and module order.
    /// </summary>
    public static IReadOnlyList<LoraUpdate> Write(string path, IEnumerable<(nn.Module Model, string Prefix, string[] Targets)> parts,
        int rank, float alpha, Generator generator, bool ctcalMetadata, string where = "")
    {
        var entries = new List<SafetensorsWriteEntry>();
        var updates = new List<LoraUpdate>();
        foreach (var (model, prefix, targets) in parts)
        {
            var weights = model.state_dict();
            foreach (string module in targets)
            {
                Assert.True(weights.ContainsKey(module + ".weight"), $"{where}no '{module}.weight' to adapt");
                long[] w = weights[module + ".weight"].shape;   // [out, in] or [out, in, k, k]
                long[] aShape = w.Length == 4 ? [rank, w[1], w[2], w[3]] : [rank, w[1]];
                long[] bShape = w.Length == 4 ? [w[0], rank, 1, 1] : [w[0], rank];
                var a = randn(aShape, generator: generator).mul(1.0 / Math.Sqrt(aShape.Skip(1).Aggregate(1L, (x, y) => x * y)));
                var b = randn(bShape, generator: generator).mul(0.2);
                entries.Add(SafetensorsWriteEntry.FromFloat32($"{prefix}.{module}.lora_A.weight", aShape, Compare.Floats(a)));
                entries.Add(SafetensorsWriteEntry.FromFloat32($"{prefix}.{module}.lora_B.weight", bShape, Compare.Floats(b)));
                updates.Add(new LoraUpdate(model, module, a, b));
            }
        }

        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["lora_adapter_metadata"] = JsonSerializer.Serialize(new { r = rank, lora_alpha = alpha }),
        };
        if (ctcalMetadata)
        {
            metadata["ctcal.lora_rank"] = rank.ToString(CultureInfo.InvariantCulture);
            metadata["ctcal.lora_alpha"] = alpha.ToString("R", CultureInfo.InvariantCulture);
        }
        SafetensorsWriter.Write(path, entries, metadata);
        return updates;
    }

    /// <summary>Folds W += scale * alpha / rank * B @ A (conv kernels flattened to [out, in*k*k]) into the TorchSharp weights.</summary>
    public static void Fold(IEnumerable<LoraUpdate> updates, int rank, float alpha, float scale)
    {
        using (no_grad())
        {
            foreach (var (model, module, a, b) in updates)
            {
                var weight = model.state_dict()[module + ".weight"];
                var delta = b.reshape(b.shape[0], rank).matmul(a.reshape(rank, -1)).reshape(weight.shape); // [out, in(, k, k)]
                weight.add_(delta.mul(scale * alpha / rank));
            }
        }
    }
}
