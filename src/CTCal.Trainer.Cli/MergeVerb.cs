using System.CommandLine;
using CTCal.Core.Models;
using CTCal.Trainer.Training;
using TorchSharp;

namespace CTCal.Trainer.Cli;

/// <summary><c>ctcal-train merge</c>: folds a LoRA into full weights.</summary>
internal sealed class MergeVerb(CliContext context)
{
    public Command Build()
    {
        var model = new Option<string>("--model") { Description = "the diffusers model folder the LoRA was trained on", Required = true };
        var lora = new Option<string>("--lora") { Description = "LoRA weights (pytorch_lora_weights.safetensors)", Required = true };
        var output = new Option<string>("--out") { Description = "folder for the merged weights: unet/ (and text_encoder/ when the LoRA has text-encoder layers)", Required = true };
        var command = new Command("merge", "Fold a LoRA into full weights: W + (alpha/rank)·B·A, written as diffusers safetensors with the component configs.");
        command.Options.Add(model);
        command.Options.Add(lora);
        command.Options.Add(output);
        command.SetAction(parse => Merge(parse.GetValue(model)!, parse.GetValue(lora)!, parse.GetValue(output)!));
        return command;
    }

    /// <summary>Merges <paramref name="loraPath"/> into the model of <paramref name="modelFolder"/> and writes the merged components.</summary>
    public int Merge(string modelFolder, string loraPath, string outputFolder)
    {
        try
        {
            if (!File.Exists(loraPath)) throw new FileNotFoundException($"LoRA file {loraPath} does not exist", loraPath);
            CliContext.RefuseOverlap(Path.GetFullPath(outputFolder), modelFolder, "--model");
            using var diffusion = context.LoadModel(modelFolder);
            var (tensors, rank, alpha) = LoraFile.Load(loraPath, component =>
                (component == LoraKeys.TextEncoder ? diffusion.TextEncoder : diffusion.UNet).named_parameters().Select(p => p.name).ToList());
            try
            {
                var options = new LoraOptions { Rank = rank, Alpha = alpha };
                var written = new List<string>();
                foreach (var (prefix, module, targets, component, file) in new[]
                {
                    (diffusion.DenoiserComponent, diffusion.UNet, diffusion.DenoiserLoraTargets, diffusion.DenoiserComponent, "diffusion_pytorch_model.safetensors"),
                    ("text_encoder", diffusion.TextEncoder, LoraOptions.TextEncoderTargets, "text_encoder", "model.safetensors"),
                })
                {
                    if (!tensors.Keys.Any(k => k.StartsWith(prefix + ".", StringComparison.Ordinal))) continue;
                    using var adapters = LoraAdapters.Attach(module, prefix, targets, options);
                    adapters.Load(tensors, loraPath);
                    adapters.Merge();
                    string folder = Path.Combine(outputFolder, component);
                    Directory.CreateDirectory(folder);
                    string weights = Path.Combine(folder, file);
                    TensorFile.Save(weights, module.state_dict().Select(kv => (kv.Key, kv.Value)), new Dictionary<string, string> { ["format"] = "pt" });
                    string config = Path.Combine(modelFolder, component, "config.json");
                    if (File.Exists(config)) File.Copy(config, Path.Combine(folder, "config.json"), overwrite: true);
                    written.Add(weights);
                }
                if (written.Count == 0) throw new InvalidDataException($"{loraPath}: no 'unet.' or 'text_encoder.' LoRA keys");
                foreach (var w in written) context.Out.WriteLine($"merged: {w}");
                CliContext.Log.Info("merged {0} (rank {1}, alpha {2}) into {3}", loraPath, rank, alpha, string.Join(", ", written));
                return ExitCodes.Ok;
            }
            finally
            {
                foreach (var t in tensors.Values) t.Dispose();
            }
        }
        catch (Exception e)
        {
            return context.Fail(e, null);
        }
    }
}
