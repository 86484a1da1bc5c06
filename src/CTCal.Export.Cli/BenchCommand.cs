using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Export.Graphs;

namespace CTCal.Export.Cli;

/// <summary>
/// <c>ctcal-export bench</c>: writes an SD 1.5-size UNet (the real SD 1.5 unet config, random fp32 weights streamed to a
/// ~3.4 GB safetensors file), exports it, and prints the time taken and the process's peak resident memory (VmHWM)
/// against the weights size. The exporter's memory goal is a peak below 1.5x the weights.
/// </summary>
internal static class BenchCommand
{
    private const string Sd15UnetConfig = """
    {
      "_class_name": "UNet2DConditionModel",
      "act_fn": "silu",
      "attention_head_dim": 8,
      "block_out_channels": [320, 640, 1280, 1280],
      "center_input_sample": false,
      "cross_attention_dim": 768,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "downsample_padding": 1,
      "flip_sin_to_cos": true,
      "freq_shift": 0,
      "in_channels": 4,
      "layers_per_block": 2,
      "mid_block_scale_factor": 1,
      "norm_eps": 1e-05,
      "norm_num_groups": 32,
      "out_channels": 4,
      "sample_size": 64,
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    }
    """;

    public static Command Create()
    {
        var dir = new Option<string?>("--dir") { Description = "Work folder (default: a new folder under the system temp folder); needs about 7 GB free." };
        var keep = new Option<bool>("--keep") { Description = "Keep the generated checkpoint and export." };
        var fp16 = new Option<bool>("--fp16") { Description = "Export with float16 weights." };
        var command = new Command("bench", "Export a generated SD 1.5-size UNet and report time and peak memory vs weights size.") { dir, keep, fp16 };
        command.SetAction(parse => Run(parse.GetValue(dir), parse.GetValue(keep), parse.GetValue(fp16)));
        return command;
    }

    private static int Run(string? dir, bool keep, bool fp16)
    {
        string work = dir ?? Path.Combine(Path.GetTempPath(), $"ctcal-export-bench-{Guid.NewGuid():N}");
        string model = Path.Combine(work, "sd15");
        Directory.CreateDirectory(Path.Combine(model, "unet"));
        try
        {
            string configPath = Path.Combine(model, "unet", "config.json");
            File.WriteAllText(configPath, Sd15UnetConfig);
            var graph = UNetGraph.Build(UNetConfig.Load(configPath), fp16Weights: false);
            long weightBytes = graph.Weights.Sum(w => w.Shape.Aggregate(1L, (a, b) => a * b)) * 4;
            long free = new DriveInfo(Path.GetPathRoot(Path.GetFullPath(work))!).AvailableFreeSpace;
            long needed = weightBytes * (fp16 ? 3 : 4) / 2 + (1L << 30);
            Console.WriteLine($"SD 1.5 UNet: {graph.Weights.Count} tensors, {weightBytes / 1e9:F3} GB fp32; {graph.Nodes.Count} nodes; work folder {work} ({free / 1e9:F1} GB free)");
            if (free < needed)
            {
                Console.Error.WriteLine($"not enough disk space: need about {needed / 1e9:F1} GB");
                return 3;
            }

            var sw = Stopwatch.StartNew();
            string weightsPath = Path.Combine(model, "unet", "diffusion_pytorch_model.safetensors");
            WriteRandomWeights(weightsPath, graph.Weights);
            Console.WriteLine($"generated {new FileInfo(weightsPath).Length / 1e9:F3} GB of random weights in {sw.Elapsed.TotalSeconds:F1} s; VmHWM so far {ReadVmHwm() / 1e6:F0} MB");

            ResetVmHwm();
            long baseline = ReadVmRss();
            sw.Restart();
            string output = Path.Combine(work, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, Components = ExportComponents.Unet, Fp16 = fp16 });
            double seconds = sw.Elapsed.TotalSeconds;
            long peak = ReadVmHwm();
            long written = Directory.EnumerateFiles(Path.Combine(output, "unet")).Sum(f => new FileInfo(f).Length);
            double ratio = (double)peak / weightBytes;
            Console.WriteLine($"export (unet{(fp16 ? ", fp16" : "")}): {seconds:F1} s, {written / 1e9:F3} GB written ({written / 1e6 / seconds:F0} MB/s)");
            Console.WriteLine($"peak RSS (VmHWM): {peak / 1e6:F0} MB = {ratio:F2} x weights ({weightBytes / 1e6:F0} MB); RSS before export {baseline / 1e6:F0} MB");
            Console.WriteLine(ratio < 1.5 ? "memory goal met (< 1.5 x weights)" : "memory goal MISSED (>= 1.5 x weights)");
            return ratio < 1.5 ? 0 : 4;
        }
        finally
        {
            if (!keep)
            {
                try { Directory.Delete(work, recursive: true); } catch (IOException) { }
            }
        }
    }

    // Streams uniform(-a, a) values (a = 1/sqrt(fan_in); norms around 1) through a 1 MiB buffer, xorshift generator.
    private static void WriteRandomWeights(string path, IEnumerable<Onnx.WeightRequirement> required)
    {
        ulong state = 0x9E3779B97F4A7C15UL;
        var buffer = new float[1 << 18];
        var entries = required.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r => new SafetensorsWriteEntry(r.Name, SafetensorsDType.F32, r.Shape, stream =>
        {
            long count = r.Shape.Aggregate(1L, (a, b) => a * b);
            float bound = r.Shape.Length >= 2 ? 1f / MathF.Sqrt(count / r.Shape[0]) : 0.05f;
            float offset = r.Name.Contains("norm", StringComparison.Ordinal) && r.Name.EndsWith(".weight", StringComparison.Ordinal) ? 1f : 0f;
            for (long done = 0; done < count; done += buffer.Length)
            {
                int n = (int)Math.Min(buffer.Length, count - done);
                for (int i = 0; i < n; i++)
                {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    buffer[i] = offset + bound * ((state >> 40) * (2f / (1 << 24)) - 1f);
                }
                stream.Write(MemoryMarshal.AsBytes(buffer.AsSpan(0, n)));
            }
        })).ToList();
        SafetensorsWriter.Write(path, entries);
    }

    // Linux: /proc/self/status; 0 elsewhere.
    private static long ReadStatus(string key)
    {
        if (!File.Exists("/proc/self/status")) return 0;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith(key + ":", StringComparison.Ordinal)) continue;
            string[] parts = line[(key.Length + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }

    private static long ReadVmHwm() => ReadStatus("VmHWM");

    private static long ReadVmRss() => ReadStatus("VmRSS");

    // Writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so the peak covers the export alone.
    private static void ResetVmHwm()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // peak then includes weight generation, which streams and stays small
        }
    }
}
