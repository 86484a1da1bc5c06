using System.CommandLine;
using CTCal.Core.Checkpoints;
using CTCal.Core.Diffusers;
using CTCal.Core.Models;

namespace CTCal.Export.Cli;

/// <summary><c>ctcal-export export</c>: runs <see cref="OnnxExporter.Export"/> with options from the command line.</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), or an original single-file SD 1.x/2.x checkpoint (.safetensors).", Required = true };
        var variant = new Option<string?>("--variant") { Description = "Folder weights variant to prefer, e.g. fp16 (diffusion_pytorch_model.fp16.safetensors)." };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Single file: folder with the CLIP BPE files vocab.json and merges.txt (single files carry no tokenizer)." };
        var configFolder = new Option<string?>("--config-folder") { Description = "Single file: a diffusers folder whose configs (and tokenizer/) are used instead of the derived ones." };
        var prediction = new Option<string?>("--prediction-type") { Description = "Single file: epsilon, v_prediction or sample (default: SD 1.x epsilon, SD 2.x v_prediction)." };
        var imageSize = new Option<int?>("--image-size") { Description = "Single file: native image size (default: SD 1.x 512, SD 2.x v_prediction 768)." };
        var ema = new Option<bool>("--ema") { Description = "Single file: use the EMA UNet weights (model_ema.*)." };
        var output = new Option<string>("--out") { Description = "ONNX folder to create; an existing export there is replaced only when the new one is complete.", Required = true };
        var lora = new Option<string[]>("--lora") { Description = "LoRA safetensors merged into the weights, as path[:scale] (default scale 1). Repeatable." };
        var unet = new Option<string?>("--unet") { Description = "Fine-tuned UNet weights (diffusion_pytorch_model.safetensors) used instead of the model folder's." };
        var fp16 = new Option<bool>("--fp16") { Description = "Store weights as float16, compute float32: the same as --precision fp16-weights." };
        var precision = new Option<string?>("--precision")
        {
            Description = "fp32 (default), fp16-weights (float16 storage, float32 compute; half the disk and memory) or fp16 (float16 weights and " +
                "activations, float32 normalisations, softmax and timestep embedding; for GPU providers). Inputs and outputs stay float32. Recorded in ctcal_manifest.json.",
        };
        var components = new Option<string>("--components")
        {
            Description = "Parts to export: all (the source family's parts; SD3: text_encoder_3 when present), or a comma-separated list of " +
                "text_encoder,unet,vae_decoder,vae_encoder (SD 1.x/2.x) or text_encoder,text_encoder_2,text_encoder_3,transformer,vae_decoder,vae_encoder (SD3).",
            DefaultValueFactory = _ => "all",
        };
        var method = new Option<string?>("--method") { Description = "Training method of the weights, recorded in ctcal_manifest.json: base, vanilla or ctcal (default: base when no --unet-weights/--lora, else not recorded)." };
        var steps = new Option<int?>("--steps") { Description = "Training steps recorded in ctcal_manifest.json." };
        var optimize = new Option<string>("--optimize")
        {
            Description = "Execution provider the UNet and VAE graphs are fused for: plain (default; standard ONNX operators, runs anywhere), " +
                "cpu, cuda or directml (com.microsoft contrib operators that provider implements: MultiHeadAttention, Gelu; " +
                "cuda/directml also SkipLayerNormalization, GroupNorm and BiasSplitGelu). Recorded in ctcal_manifest.json.",
            DefaultValueFactory = _ => "plain",
        };
        var stepCache = new Option<int?>("--step-cache-branch")
        {
            Description = "Also write the step-caching graphs (DeepCache): unet/model.onnx gets a deep_feature output and unet_shallow/model.onnx " +
                "recomputes only the last K up-block layers (and the layers feeding their skips) from it. K from 1 (shallowest, fastest) to the UNet's " +
                "up-block layers; the plugin's stepCache setting uses them. Recorded in ctcal_manifest.json (stepCache).",
        };
        var force = new Option<bool>("--force") { Description = "Replace a non-empty output folder that was not written by ctcal-export." };

        var command = new Command("export", "Export a diffusers checkpoint (optionally with LoRAs or a fine-tuned UNet merged) to ONNX.")
        {
            model, output, lora, unet, fp16, precision, components, optimize, stepCache, method, steps, force, variant, tokenizer, configFolder, prediction, imageSize, ema,
        };
        command.SetAction((parse, ct) =>
        {
            ExportComponents parts;
            ExportOptimization profile;
            ExportPrecision numeric;
            try
            {
                parts = ParseComponents(parse.GetValue(components)!);
                profile = ExportOptimizationNames.Parse(parse.GetValue(optimize)!);
                numeric = ParsePrecision(parse.GetValue(precision), parse.GetValue(fp16));
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine(e.Message);
                return Task.FromResult(2);
            }
            var options = new ExportOptions
            {
                ModelFolder = parse.GetValue(model)!,
                OutputFolder = parse.GetValue(output)!,
                Loras = (parse.GetValue(lora) ?? []).Select(LoraSpec.Parse).ToList(),
                UnetWeights = parse.GetValue(unet),
                Precision = numeric,
                Components = parts,
                Optimize = profile,
                StepCacheBranch = parse.GetValue(stepCache),
                TrainingMethod = parse.GetValue(method),
                TrainingSteps = parse.GetValue(steps),
                Force = parse.GetValue(force),
                Variant = parse.GetValue(variant),
                SingleFile = new SingleFileOptions
                {
                    TokenizerFolder = parse.GetValue(tokenizer),
                    ConfigFolder = parse.GetValue(configFolder),
                    PredictionType = parse.GetValue(prediction),
                    ImageSize = parse.GetValue(imageSize),
                    UseEma = parse.GetValue(ema),
                },
            };
            return Task.FromResult(Run(options, ct));
        });
        return command;
    }

    /// <summary>
    /// <c>--precision</c>, or fp16-weights for the older <c>--fp16</c>; both at once must agree (<c>--fp16 --precision
    /// fp16-weights</c>), since <c>--fp16</c> never meant float16 compute.
    /// </summary>
    internal static ExportPrecision ParsePrecision(string? precision, bool fp16)
    {
        if (precision is null) return fp16 ? ExportPrecision.Fp16Weights : ExportPrecision.Fp32;
        var parsed = ExportPrecisionNames.Parse(precision);
        if (fp16 && parsed != ExportPrecision.Fp16Weights)
            throw new ArgumentException($"--fp16 means --precision fp16-weights and contradicts --precision {precision}: give only --precision {precision}");
        return parsed;
    }

    internal static int Run(ExportOptions options, CancellationToken ct)
    {
        try
        {
            var started = DateTime.UtcNow;
            Log.Info("export {0} -> {1} (precision: {2}, optimize: {3})", options.ModelFolder, options.OutputFolder, ExportPrecisionNames.Name(options.Precision), ExportOptimizationNames.Name(options.Optimize));
            string output = Path.GetFullPath(options.OutputFolder).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
            if (Path.GetDirectoryName(output) is { } parent)
            {
                // The exporter recovers too; run it here first to log what a killed export had left behind.
                foreach (var note in ModelFolderSwap.Recover(parent, Path.GetFileName(output)))
                {
                    if (note.Failed) Log.Warn(note.Message);
                    else Log.Info(note.Message);
                }
            }
            if (File.Exists(options.ModelFolder) && !WeightFiles.IsPickle(options.ModelFolder))
            {
                try
                {
                    foreach (string note in SingleFileCheckpoint.Open(options.ModelFolder, options.SingleFile).Notes) Log.Info("single file: {0}", note);
                }
                catch (Exception e) when (e is ModelFolderException or CTCal.Core.Safetensors.SafetensorsException or ArgumentException)
                {
                    // the export reports it with the other problems
                }
            }
            OnnxExporter.Export(options, new ConsoleProgress(), ct);
            Console.WriteLine($"wrote {Path.GetFullPath(options.OutputFolder)} in {(DateTime.UtcNow - started).TotalSeconds:F1} s");
            Log.Info("wrote {0} in {1:F1} s", Path.GetFullPath(options.OutputFolder), (DateTime.UtcNow - started).TotalSeconds);
            return 0;
        }
        catch (ExportValidationException e)
        {
            Log.Error(e.Message);
            return 1;
        }
        catch (DiffusersConfigException e)
        {
            Log.Error(e.Message);
            return 1;
        }
        catch (ArgumentException e)
        {
            Log.Error(e.Message);
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Log.Error(e, "export failed while writing (the output folder was left as it was): {0}", e.Message);
            return 1;
        }
        catch (OperationCanceledException)
        {
            Log.Warn("cancelled; the output folder was left as it was");
            return 130;
        }
        finally
        {
            NLog.LogManager.Flush();
        }
    }

    public static ExportComponents ParseComponents(string text)
    {
        if (text.Trim() == "all") return ExportComponents.All;
        var result = ExportComponents.None;
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            result |= part switch
            {
                "text_encoder" => ExportComponents.TextEncoder,
                "unet" => ExportComponents.Unet,
                "vae_decoder" => ExportComponents.VaeDecoder,
                "vae_encoder" => ExportComponents.VaeEncoder,
                "transformer" => ExportComponents.Transformer,
                "text_encoder_2" => ExportComponents.TextEncoder2,
                "text_encoder_3" => ExportComponents.TextEncoder3,
                _ => throw new ArgumentException($"--components: unknown part '{part}' (expected all, or text_encoder, text_encoder_2, text_encoder_3, unet, transformer, vae_decoder, vae_encoder)"),
            };
        }
        if (result == ExportComponents.None) throw new ArgumentException("--components: no part given");
        return result;
    }

    private static readonly NLog.Logger Log = NLog.LogManager.GetCurrentClassLogger();

    /// <summary>Prints a line per component and every ~10% of its weights.</summary>
    private sealed class ConsoleProgress : IProgress<ExportProgress>
    {
        private string _component = "";
        private int _lastDecile = -1;

        public void Report(ExportProgress p)
        {
            if (p.Component != _component)
            {
                _component = p.Component;
                _lastDecile = -1;
            }
            int decile = p.BytesTotal == 0 ? 10 : (int)(10 * p.BytesDone / p.BytesTotal);
            if (decile == _lastDecile) return;
            _lastDecile = decile;
            Console.WriteLine($"{p.Component,-13} {p.Stage,-8} {p.BytesDone / 1e6,9:F1} / {p.BytesTotal / 1e6:F1} MB");
        }
    }
}
