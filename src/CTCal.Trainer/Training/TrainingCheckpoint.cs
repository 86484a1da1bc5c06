using System.Globalization;
using System.Text.Json;
using CTCal.Core.Diagnostics;
using CTCal.Trainer.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>
/// Checkpoints: one safetensors file <c>checkpoints/step-NNNNNNN.safetensors</c>, written atomically, holding the trainable
/// weights (LoRA <c>unet.….lora_A.weight</c>…, or full <c>unet.{name}</c>; <c>attention_autoencoder.{name}</c>), AdamW
/// moments and step (<c>adamw.*</c>), EMA shadows (<c>ema.*</c>), the torch generator state (<c>rng.torch</c>, U8) and, in the
/// <c>ctcal.state</c> metadata entry (JSON), the step, the data order's epoch and position, the skip counters and the run
/// settings a resume must match (method, LoRA rank, full fine-tuning, batch size). The LR schedule is a function of the step.
/// </summary>
public sealed partial class TrainingRun
{
    private const string StateKey = "ctcal.state";

    public string CheckpointFolder => Path.Combine(OutputFolder, "checkpoints");

    private sealed record CheckpointState(long Step, int Epoch, int Position, int SkippedSteps, int ConsecutiveNonFinite,
        int DiffusionOnlySamples, string Method, bool FullFineTune, int LoraRank, bool TextEncoderLora, int BatchSize, long Seed, int Trainable);

    private CheckpointState CurrentState() => new(Step, _order.Epoch, _order.Position, _skippedSteps, _consecutiveNonFinite,
        _diffusionOnlySamples, _options.Method.ToString().ToLowerInvariant(), _options.FullFineTune, _options.Lora.Rank,
        _options.Lora.TextEncoder, _options.BatchSize, _options.Seed, _trainable.Count);

    /// <summary>Writes a checkpoint of the current state and returns its path.</summary>
    public string SaveCheckpoint()
    {
        try
        {
            Directory.CreateDirectory(CheckpointFolder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputWriteException(CheckpointFolder, $"cannot create the checkpoint folder ({e.Message})", e);
        }
        string path = Path.Combine(CheckpointFolder, $"step-{Step:D7}.safetensors");
        using var scope = NewDisposeScope();
        var entries = new List<(string, Tensor)>();
        entries.AddRange(_trainable.Select(t => (t.Name, (Tensor)t.Parameter)));
        entries.AddRange(_optimizer.StateEntries());
        if (_ema is not null) entries.AddRange(_ema.StateEntries());
        entries.Add(("rng.torch", _generator.get_state()));
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [StateKey] = JsonSerializer.Serialize(CurrentState()),
        };
        TensorFile.Save(path, entries, metadata);
        _observer.CheckpointSaved(Step, path);
        FaultPoints.Reached("train.after-checkpoint");
        return path;
    }

    /// <summary>The newest checkpoint under <paramref name="outputFolder"/>, or null.</summary>
    public static string? LatestCheckpoint(string outputFolder)
    {
        string folder = Path.Combine(outputFolder, "checkpoints");
        if (!Directory.Exists(folder)) return null;
        // Final names only (step- + 7 digits): a killed write leaves '.step-….tmp', which never matches.
        return Directory.EnumerateFiles(folder, "step-*.safetensors")
            .Where(f => IsCheckpointName(Path.GetFileName(f)))
            .OrderBy(f => f, StringComparer.Ordinal).LastOrDefault();
    }

    private static bool IsCheckpointName(string name) =>
        name.Length == "step-0000000.safetensors".Length && name.StartsWith("step-", StringComparison.Ordinal)
        && name.EndsWith(".safetensors", StringComparison.Ordinal) && name.AsSpan(5, 7).IndexOfAnyExceptInRange('0', '9') < 0;

    /// <summary>Restores weights, optimizer, EMA, RNG, data order and counters from <paramref name="path"/>.</summary>
    public void Resume(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"checkpoint {path} does not exist", path);
        var tensors = TensorFile.Load(path, out var metadata);
        try
        {
            if (!metadata.TryGetValue(StateKey, out var json))
                throw new InvalidDataException($"{path}: not a CTCal training checkpoint (no '{StateKey}' metadata)");
            var state = JsonSerializer.Deserialize<CheckpointState>(json) ?? throw new InvalidDataException($"{path}: empty '{StateKey}'");
            var now = CurrentState();
            void Same<T>(T saved, T current, string what)
            {
                if (!EqualityComparer<T>.Default.Equals(saved, current))
                    throw new InvalidDataException($"{path}: checkpoint was made with {what} = {saved}, this run has {current}");
            }
            Same(state.Method, now.Method, "method");
            Same(state.FullFineTune, now.FullFineTune, "full fine-tuning");
            if (!now.FullFineTune) Same(state.LoraRank, now.LoraRank, "LoRA rank");
            Same(state.TextEncoderLora, now.TextEncoderLora, "text-encoder LoRA");
            Same(state.BatchSize, now.BatchSize, "batch size");
            Same(state.Trainable, now.Trainable, "trainable tensor count");

            using (no_grad())
            {
                foreach (var (name, parameter) in _trainable)
                {
                    if (!tensors.TryGetValue(name, out var value)) throw new InvalidDataException($"{path}: missing '{name}'");
                    if (!value.shape.SequenceEqual(parameter.shape))
                        throw new InvalidDataException($"{path}: '{name}' has shape [{string.Join(", ", value.shape)}], expected [{string.Join(", ", parameter.shape)}]");
                    parameter.copy_(value);
                }
            }
            _optimizer.LoadState(tensors, path);
            if (_ema is not null) _ema.LoadState(tensors, path);
            if (!tensors.TryGetValue("rng.torch", out var rng)) throw new InvalidDataException($"{path}: missing 'rng.torch'");
            _generator.set_state(rng);
            Step = state.Step;
            _order = new DataOrder(_data.Records.Count, _options.Seed, state.Epoch, state.Position);
            _skippedSteps = state.SkippedSteps;
            _consecutiveNonFinite = state.ConsecutiveNonFinite;
            _diffusionOnlySamples = state.DiffusionOnlySamples;
            _observer.Message("info", string.Create(CultureInfo.InvariantCulture, $"resumed from {path} at step {Step}"));
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Writes the trained weights (EMA averages when EMA is on): LoRA as <c>pytorch_lora_weights.safetensors</c> (see
    /// <see cref="LoraFile"/>), full fine-tuning as <c>unet/diffusion_pytorch_model.safetensors</c>; the CTCal attention
    /// autoencoder as <c>attention_autoencoder.safetensors</c>. Returns the main file.
    /// </summary>
    public string SaveFinalWeights()
    {
        _ema?.Swap();
        try
        {
            string? autoencoderPath = null;
            if (_autoencoder is not null)
            {
                autoencoderPath = Path.Combine(OutputFolder, "attention_autoencoder.safetensors");
                TensorFile.Save(autoencoderPath, _autoencoder.named_parameters().Select(p => (p.name, (Tensor)p.parameter)));
                FaultPoints.Reached("train.between-final-files");
            }
            if (_options.FullFineTune)
            {
                string folder = Path.Combine(OutputFolder, _model.DenoiserComponent);
                Directory.CreateDirectory(folder);
                string path = Path.Combine(folder, "diffusion_pytorch_model.safetensors");
                TensorFile.Save(path, _model.UNet.state_dict().Select(kv => (kv.Key, kv.Value)), new Dictionary<string, string> { ["format"] = "pt" });
                return path;
            }
            string loraPath = Path.Combine(OutputFolder, LoraFile.DefaultName);
            LoraFile.Save(loraPath, new[] { _unetLora, _textLora }.Where(l => l is not null).Cast<LoraAdapters>().ToList());
            return loraPath;
        }
        finally
        {
            _ema?.Swap();
        }
    }
}
