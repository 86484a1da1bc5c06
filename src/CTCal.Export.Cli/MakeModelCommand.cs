using System.CommandLine;
using System.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Core.Safetensors;
using CTCal.Export.Fixtures;

namespace CTCal.Export.Cli;

/// <summary>
/// <c>ctcal-export make-model</c>: writes a full-size diffusers folder (SD 1.5, SD 2.1-768-v or SD 2.1-base, the published
/// configs of <see cref="ReferenceModels"/>) with seeded random weights, for benchmarks and opt-in tests
/// (<see cref="RandomModelWriter"/>); <c>sd3-medium</c> writes only the SD3-medium transformer (<c>transformer/</c>).
/// </summary>
internal static class MakeModelCommand
{
    /// <summary>The command and its options.</summary>
    public static Command Create()
    {
        var kind = new Option<string>("--kind") { Description = "sd15, sd21 (768, v-prediction), sd21-base (512, epsilon) or sd3-medium (the SD3-medium transformer only).", Required = true };
        var output = new Option<string>("--out") { Description = "Folder to create (must not exist or be empty).", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Weight seed; the same seed gives byte-identical weights.", DefaultValueFactory = _ => 1UL };
        var dtype = new Option<string>("--dtype") { Description = "fp32 or fp16 weights.", DefaultValueFactory = _ => "fp32" };
        var tokenizer = new Option<string>("--tokenizer")
        {
            Description = "Folder with the CLIP BPE vocab.json and merges.txt to copy into tokenizer/ (e.g. tests/data/fixtures/clip-tokenizer, or any SD model's tokenizer/); " +
                "required except for sd3-medium.",
        };
        var components = new Option<string>("--components") { Description = "Comma-separated: unet,vae,text_encoder.", DefaultValueFactory = _ => "unet,vae,text_encoder" };
        var command = new Command("make-model", "Write a full-size SD 1.5/2.1 diffusers folder, or the SD3-medium transformer, with seeded random weights (for benchmarks and tests).")
        {
            kind, output, seed, dtype, tokenizer, components,
        };
        command.SetAction(parse => Run(parse.GetValue(kind)!, parse.GetValue(output)!, parse.GetValue(seed), parse.GetValue(dtype)!,
            parse.GetValue(tokenizer), parse.GetValue(components)!));
        return command;
    }

    /// <summary>Parses fp32/fp16.</summary>
    /// <exception cref="ArgumentException">anything else, naming the option.</exception>
    public static SafetensorsDType ParseDtype(string text) => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "f32" or "float32" => SafetensorsDType.F32,
        "fp16" or "f16" or "float16" => SafetensorsDType.F16,
        _ => throw new ArgumentException($"--dtype: unknown value '{text}' (expected fp32 or fp16)"),
    };

    private static int Run(string kind, string output, ulong seed, string dtypeText, string? tokenizer, string componentsText)
    {
        string label;
        Func<SafetensorsDType, RandomModelResult> write;
        SafetensorsDType dtype;
        string[] parts = componentsText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        try
        {
            dtype = ParseDtype(dtypeText);
            if (string.Equals(kind, ReferenceModels.Sd3MediumTransformerKind, StringComparison.OrdinalIgnoreCase))
            {
                // The SD3-medium transformer alone: no tokenizer, no other parts.
                label = $"{ReferenceModels.Sd3MediumTransformerKind} transformer (stabilityai/stable-diffusion-3-medium-diffusers)";
                write = d => RandomModelWriter.WriteTransformer(ReferenceModels.Sd3MediumTransformerConfigJson, output, seed, d, Console.WriteLine);
            }
            else
            {
                var model = ReferenceModels.Get(kind);
                foreach (string p in parts)
                {
                    if (!RandomModelWriter.ComponentNames.Contains(p))
                        throw new ArgumentException($"--components: unknown part '{p}' (expected {string.Join(", ", RandomModelWriter.ComponentNames)})");
                }
                if (parts.Length == 0) throw new ArgumentException("--components: no part given");
                string bpe = tokenizer ?? throw new ArgumentException($"--tokenizer: required for {model.Kind}");
                label = $"{model.Kind} ({model.Source})";
                write = d => RandomModelWriter.Write(model, output, seed, bpe, d, parts, Console.WriteLine);
            }
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 2;
        }

        try
        {
            var sw = Stopwatch.StartNew();
            Console.WriteLine($"{label}, seed {seed}, {dtypeText} -> {Path.GetFullPath(output)}");
            var result = write(dtype);
            Console.WriteLine($"wrote {result.TotalWeightBytes / 1e9:F3} GB of weights in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or SafetensorsException or DiffusersConfigException)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
    }
}
