using System.CommandLine;
using System.Diagnostics;
using CTCal.Core.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;
using CTCal.Core.Safetensors;
using CTCal.Export.Fixtures;

namespace CTCal.Export.Cli;

/// <summary>
/// <c>ctcal-export bench</c>: exports a full-size model and prints the time taken and the process's peak resident memory
/// (VmHWM, reset before the export) against the bytes of the weights the export reads. The model is either generated
/// first (<see cref="RandomModelWriter"/>: the published configs of <see cref="ReferenceModels"/>, seeded random weights
/// streamed to disk) or an existing diffusers folder (<c>--model</c>, e.g. one written by <c>make-model</c>). By default
/// only the SD 1.5 UNet is generated and exported (3.4 GB fp32); <c>--parts all</c> times the whole pipeline. The
/// exporter's memory goal is a peak below 1.5x the weights read.
/// </summary>
internal static class BenchCommand
{
    /// <summary>The command and its options.</summary>
    public static Command Create()
    {
        var dir = new Option<string?>("--dir") { Description = "Work folder (default: a new folder under the system temp folder); needs about 2x the weights free." };
        var keep = new Option<bool>("--keep") { Description = "Keep the generated checkpoint and export." };
        var fp16 = new Option<bool>("--fp16") { Description = "Export with float16 weights." };
        var kind = new Option<string>("--kind") { Description = "Model to generate: sd15, sd21 or sd21-base.", DefaultValueFactory = _ => "sd15" };
        var parts = new Option<string>("--parts")
        {
            Description = "Parts to export: all, or a comma-separated list of text_encoder,unet,vae_decoder,vae_encoder (an SD3 --model: transformer, e.g. a make-model --kind sd3-medium folder).",
            DefaultValueFactory = _ => "unet",
        };
        var model = new Option<string?>("--model") { Description = "Export this existing diffusers folder instead of generating one (e.g. from make-model)." };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "CLIP BPE folder for the generated model's tokenizer/ (default: the repository's tests/data/fixtures/clip-tokenizer, found from the current folder up)." };
        var seed = new Option<ulong>("--seed") { Description = "Weight seed of the generated model.", DefaultValueFactory = _ => 1UL };
        var command = new Command("bench", "Export a full-size model (generated, or --model) and report time and peak memory vs the weights read.")
        {
            dir, keep, fp16, kind, parts, model, tokenizer, seed,
        };
        command.SetAction(parse => Run(parse.GetValue(dir), parse.GetValue(keep), parse.GetValue(fp16), parse.GetValue(kind)!, parse.GetValue(parts)!,
            parse.GetValue(model), parse.GetValue(tokenizer), parse.GetValue(seed)));
        return command;
    }

    private static int Run(string? dir, bool keep, bool fp16, string kind, string partsText, string? existing, string? tokenizer, ulong seed)
    {
        ExportComponents parts;
        ReferenceModel reference;
        try
        {
            parts = partsText.Trim() == "all" ? ExportComponents.All : ExportCommand.ParseComponents(partsText);
            reference = ReferenceModels.Get(kind);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message.Replace("--components", "--parts", StringComparison.Ordinal));
            return 2;
        }

        string work = dir ?? Path.Combine(Path.GetTempPath(), $"ctcal-export-bench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            string model;
            if (existing is not null)
            {
                model = Path.GetFullPath(existing);
            }
            else
            {
                var needed = new List<string>();
                if (parts.HasFlag(ExportComponents.Unet)) needed.Add("unet");
                if (parts.HasFlag(ExportComponents.VaeDecoder) || parts.HasFlag(ExportComponents.VaeEncoder)) needed.Add("vae");
                if (parts.HasFlag(ExportComponents.TextEncoder)) needed.Add("text_encoder");
                long generate = needed.Sum(c => RandomWeights.ByteCount(RandomModelWriter.Tensors(reference, c), SafetensorsDType.F32));
                long free = new DriveInfo(Path.GetPathRoot(Path.GetFullPath(work))!).AvailableFreeSpace;
                long need = generate * (fp16 ? 3 : 4) / 2 + (1L << 30);
                Console.WriteLine($"{reference.Kind} ({reference.Source}): generating {string.Join(", ", needed)}, {generate / 1e9:F3} GB fp32; work folder {work} ({free / 1e9:F1} GB free)");
                if (free < need)
                {
                    Console.Error.WriteLine($"not enough disk space: need about {need / 1e9:F1} GB");
                    return 3;
                }
                string? bpe = tokenizer ?? FindRepositoryTokenizer();
                if (bpe is null)
                {
                    Console.Error.WriteLine("--tokenizer: no CLIP BPE folder given and tests/data/fixtures/clip-tokenizer not found from the current folder up");
                    return 2;
                }
                var gen = Stopwatch.StartNew();
                model = RandomModelWriter.Write(reference, Path.Combine(work, reference.Kind), seed, bpe, SafetensorsDType.F32, needed, Console.WriteLine).Folder;
                Console.WriteLine($"generated in {gen.Elapsed.TotalSeconds:F1} s; VmHWM so far {ProcessMemory.Peak() / 1e6:F0} MB");
            }

            long weightBytes = WeightBytesRead(model, parts);
            ProcessMemory.ResetPeak();
            long baseline = ProcessMemory.Resident();
            var sw = Stopwatch.StartNew();
            string output = Path.Combine(work, "onnx");
            OnnxExporter.Export(new ExportOptions { ModelFolder = model, OutputFolder = output, Components = parts, Fp16 = fp16 });
            double seconds = sw.Elapsed.TotalSeconds;
            long peak = ProcessMemory.Peak();
            long written = Directory.EnumerateFiles(output, "model.onnx*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            double ratio = (double)peak / weightBytes;
            Console.WriteLine($"export ({partsText}{(fp16 ? ", fp16" : "")}) of {model}: {seconds:F1} s, {written / 1e9:F3} GB of ONNX written ({written / 1e6 / seconds:F0} MB/s)");
            Console.WriteLine($"peak RSS (VmHWM): {peak / 1e6:F0} MB = {ratio:F2} x weights read ({weightBytes / 1e6:F0} MB); RSS before export {baseline / 1e6:F0} MB");
            Console.WriteLine(ratio < 1.5 ? "memory goal met (< 1.5 x weights)" : "memory goal MISSED (>= 1.5 x weights)");
            return ratio < 1.5 ? 0 : 4;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ExportValidationException or ModelFolderException or DiffusersConfigException)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
        finally
        {
            if (!keep)
            {
                try { Directory.Delete(work, recursive: true); } catch (IOException) { }
            }
        }
    }

    // The safetensors files the selected parts read (the VAE file once for either VAE part).
    private static long WeightBytesRead(string model, ExportComponents parts)
    {
        var folder = ModelFolder.Open(model, ModelComponents.None);
        long total = 0;
        if (parts.HasFlag(ExportComponents.Unet)) total += new FileInfo(folder.Unet.WeightsPath).Length;
        if (parts.HasFlag(ExportComponents.VaeDecoder) || parts.HasFlag(ExportComponents.VaeEncoder)) total += new FileInfo(folder.Vae.WeightsPath).Length;
        if (parts.HasFlag(ExportComponents.TextEncoder)) total += new FileInfo(folder.TextEncoder.WeightsPath).Length;
        if (parts.HasFlag(ExportComponents.Transformer)) total += new FileInfo(folder.Transformer.WeightsPath).Length;
        return total;
    }

    private static string? FindRepositoryTokenizer()
    {
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d is not null; d = d.Parent)
        {
            string candidate = Path.Combine(d.FullName, "tests", "data", "fixtures", "clip-tokenizer");
            if (File.Exists(Path.Combine(candidate, "vocab.json"))) return candidate;
        }
        return null;
    }
}
