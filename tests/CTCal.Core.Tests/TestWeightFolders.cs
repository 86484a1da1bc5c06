using System.Text.Json.Nodes;
using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Core.Weights;

namespace CTCal.Tests;

/// <summary>
/// Makes weight layouts from a tiny diffusers folder for tests: the same model in another dtype, as a variant file, as
/// sharded weights with an index, or as an original-format single-file checkpoint (through Core's key map).
/// Linked into the test projects that reference CTCal.Core.
/// </summary>
internal static class TestWeightFolders
{
    public static string TinySd1 => Path.Combine(TestPaths.Fixtures, "tiny-sd1");

    public static string TinySd2 => Path.Combine(TestPaths.Fixtures, "tiny-sd2-style");

    public static readonly string[] Components = [CheckpointKeyMap.UNet, CheckpointKeyMap.Vae, CheckpointKeyMap.TextEncoder];

    public static string Stem(string component) => component == CheckpointKeyMap.TextEncoder ? "model" : "diffusion_pytorch_model";

    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="destination"/> with every float tensor stored as
    /// <paramref name="dtype"/>, in <c>{stem}[.variant].safetensors</c>, or split over <paramref name="shards"/> files with a
    /// <c>.safetensors.index.json</c> when it is above 1.
    /// </summary>
    public static string Copy(string source, string destination, SafetensorsDType dtype = SafetensorsDType.F32, string? variant = null, int shards = 1)
    {
        foreach (string dir in Directory.EnumerateDirectories(source))
        {
            string name = Path.GetFileName(dir);
            Directory.CreateDirectory(Path.Combine(destination, name));
            foreach (string file in Directory.EnumerateFiles(dir).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal)))
                File.Copy(file, Path.Combine(destination, name, Path.GetFileName(file)));
        }
        foreach (string file in Directory.EnumerateFiles(source, "model_index.json")) File.Copy(file, Path.Combine(destination, "model_index.json"));
        foreach (string component in Components)
        {
            using var weights = TensorSource.OpenComponent(Path.Combine(source, component));
            var entries = weights.Tensors.OrderBy(t => t.Name, StringComparer.Ordinal).Select(t => t.DType.IsFloatingPoint()
                ? SafetensorsWriteEntry.FromFloat32As(t.Name, dtype, t.Shape, weights.ReadAsFloat32(t.Name))
                : SafetensorsWriteEntry.FromBytes(t.Name, t.DType, t.Shape, Bytes(weights, t.Name))).ToList();
            string file = variant is null ? $"{Stem(component)}.safetensors" : $"{Stem(component)}.{variant}.safetensors";
            string folder = Path.Combine(destination, component);
            if (shards <= 1)
            {
                SafetensorsWriter.Write(Path.Combine(folder, file), entries);
                continue;
            }
            var map = new JsonObject();
            int per = (entries.Count + shards - 1) / shards;
            for (int s = 0; s < shards; s++)
            {
                string shard = $"{Path.GetFileNameWithoutExtension(file)}-{s + 1:D5}-of-{shards:D5}.safetensors";
                var part = entries.Skip(s * per).Take(per).ToList();
                SafetensorsWriter.Write(Path.Combine(folder, shard), part);
                foreach (var e in part) map[e.Name] = shard;
            }
            File.WriteAllText(Path.Combine(folder, file + ".index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        }
        return destination;
    }

    public static byte[] Bytes(TensorSource source, string name)
    {
        using var stream = new MemoryStream();
        source.CopyBytesTo(name, stream);
        return stream.ToArray();
    }

    /// <summary>The key map of a diffusers folder's configs.</summary>
    public static CheckpointKeyMap KeyMap(string folder, string family) => CheckpointKeyMap.Build(family,
        UNetConfig.Load(Path.Combine(folder, "unet", "config.json")), VaeConfig.Load(Path.Combine(folder, "vae", "config.json")),
        ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json")));

    /// <summary>
    /// Writes <paramref name="folder"/> as an original single file at <paramref name="path"/>: the three components through the
    /// key map, plus what real checkpoints carry besides (schedule buffers; for SD 2.x OpenCLIP's last resblock,
    /// text_projection and logit_scale), plus <paramref name="extra"/>.
    /// </summary>
    public static string WriteSingleFile(string folder, string path, string family, Func<CheckpointKeyMap, IReadOnlyDictionary<string, TensorSource>, IEnumerable<SafetensorsWriteEntry>>? extra = null)
    {
        var map = KeyMap(folder, family);
        var sources = Components.ToDictionary(c => c, c => TensorSource.OpenComponent(Path.Combine(folder, c)));
        try
        {
            var more = new List<SafetensorsWriteEntry>
            {
                SafetensorsWriteEntry.FromFloat32("alphas_cumprod", [4], [1f, 0.9f, 0.5f, 0.1f]),
                SafetensorsWriteEntry.FromFloat32("betas", [4], [0.1f, 0.2f, 0.3f, 0.4f]),
            };
            if (family == ModelFamily.Sd2)
            {
                var text = ClipTextConfig.Load(Path.Combine(folder, "text_encoder", "config.json"));
                int h = text.HiddenSize, last = text.NumHiddenLayers;
                string o = $"cond_stage_model.model.transformer.resblocks.{last}.";
                more.Add(SafetensorsWriteEntry.FromFloat32(o + "ln_1.weight", [h], Enumerable.Repeat(7f, h).ToArray()));
                more.Add(SafetensorsWriteEntry.FromFloat32(o + "attn.in_proj_weight", [3 * h, h], new float[3 * h * h]));
                more.Add(SafetensorsWriteEntry.FromFloat32("cond_stage_model.model.text_projection", [h, h], new float[h * h]));
                more.Add(SafetensorsWriteEntry.FromFloat32("cond_stage_model.model.logit_scale", [], [4.6f]));
            }
            if (extra is not null) more.AddRange(extra(map, sources));
            SingleFileWriter.Write(path, map, sources, more);
        }
        finally
        {
            foreach (var s in sources.Values) s.Dispose();
        }
        return path;
    }

    /// <summary>An EMA copy of the UNet (LitEma keys) whose values are the UNet's plus <paramref name="offset"/>.</summary>
    public static IEnumerable<SafetensorsWriteEntry> EmaCopy(CheckpointKeyMap map, IReadOnlyDictionary<string, TensorSource> sources, float offset)
    {
        var unet = sources[CheckpointKeyMap.UNet];
        foreach (var t in unet.Tensors)
        {
            var (key, _) = map.ToOriginal(CheckpointKeyMap.UNet, t.Name)!.Value;
            float[] values = unet.ReadAsFloat32(t.Name).Select(v => v + offset).ToArray();
            yield return SafetensorsWriteEntry.FromFloat32As(SingleFileCheckpoint.EmaKey(key), t.DType, t.Shape, values);
        }
        yield return SafetensorsWriteEntry.FromFloat32("model_ema.decay", [], [0.9999f]);
        yield return SafetensorsWriteEntry.FromBytes("model_ema.num_updates", SafetensorsDType.I64, [], new byte[8]);
    }
}
