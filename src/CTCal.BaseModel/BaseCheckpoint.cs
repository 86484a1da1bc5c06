using System.Text.Json;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace CTCal.BaseModel;

/// <summary>The resumable state of a base run besides its tensors.</summary>
internal sealed record BaseCheckpointState(int Step, int Epoch, int Position, int BatchSize, long Seed, int Tensors,
    List<double[]> Curve, List<double> RecentLosses);

/// <summary>
/// Checkpoints of a base run: <c>checkpoints/step-NNNNNNN.safetensors</c> (atomic), holding the trained weights under their
/// component names (SD1: <c>unet.*</c>, <c>text_encoder.*</c>; SD3: <c>transformer.*</c>, <c>text_encoder.*</c>,
/// <c>text_encoder_2.*</c>), the AdamW moments and EMA shadows (their own entry names), the torch generator
/// state (<c>rng.torch</c>) and, in the <c>ctcal.base_state</c> metadata, step, data-order position and the loss curve.
/// </summary>
internal sealed class BaseCheckpoint(string output, IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW optimizer,
    ExponentialMovingAverage ema, Generator generator, BaseTrainingOptions options)
{
    private const string StateKey = "ctcal.base_state";

    public static string? Latest(string output)
    {
        string folder = Path.Combine(output, "checkpoints");
        return Directory.Exists(folder) ? Directory.EnumerateFiles(folder, "step-*.safetensors").Order(StringComparer.Ordinal).LastOrDefault() : null;
    }

    public string Save(int step, DataOrder order, IReadOnlyList<(int Step, double Loss)> curve, IReadOnlyList<double> losses)
    {
        string path = Path.Combine(output, "checkpoints", $"step-{step:D7}.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var scope = NewDisposeScope();
        var entries = new List<(string, Tensor)>();
        entries.AddRange(parameters.Select(p => (p.Name, (Tensor)p.Parameter)));
        entries.AddRange(optimizer.StateEntries());
        entries.AddRange(ema.StateEntries());
        entries.Add(("rng.torch", generator.get_state()));
        var state = new BaseCheckpointState(step, order.Epoch, order.Position, options.BatchSize, options.Seed, parameters.Count,
            curve.Select(c => new[] { c.Step, c.Loss }).ToList(), losses.Skip(Math.Max(0, losses.Count - Math.Max(1, options.LogEvery))).ToList());
        TensorFile.Save(path, entries, new Dictionary<string, string> { ["format"] = "pt", [StateKey] = JsonSerializer.Serialize(state) });
        return path;
    }

    public BaseCheckpointState Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {path} does not exist", path);
        var tensors = TensorFile.Load(path, out var metadata);
        try
        {
            if (!metadata.TryGetValue(StateKey, out var json))
                throw new InvalidDataException($"{path}: not a base-model checkpoint (no '{StateKey}' metadata)");
            var state = JsonSerializer.Deserialize<BaseCheckpointState>(json) ?? throw new InvalidDataException($"{path}: empty '{StateKey}'");
            if (state.BatchSize != options.BatchSize) throw new InvalidDataException($"{path}: checkpoint was made with batch size {state.BatchSize}, this run has {options.BatchSize}");
            if (state.Seed != options.Seed) throw new InvalidDataException($"{path}: checkpoint was made with seed {state.Seed}, this run has {options.Seed}");
            if (state.Tensors != parameters.Count) throw new InvalidDataException($"{path}: checkpoint has {state.Tensors} weight tensors, this model {parameters.Count} (different sizes?)");
            using (no_grad())
            {
                foreach (var (name, parameter) in parameters)
                {
                    if (!tensors.TryGetValue(name, out var value)) throw new InvalidDataException($"{path}: missing '{name}'");
                    if (!value.shape.SequenceEqual(parameter.shape))
                        throw new InvalidDataException($"{path}: '{name}' has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", parameter.shape)}]");
                    parameter.copy_(value);
                }
            }
            optimizer.LoadState(tensors, path);
            ema.LoadState(tensors, path);
            if (!tensors.TryGetValue("rng.torch", out var rng)) throw new InvalidDataException($"{path}: missing 'rng.torch'");
            generator.set_state(rng);
            return state;
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }
}
