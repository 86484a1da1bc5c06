using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CTCal.Core.Diagnostics;
using CTCal.Core.Models;

namespace CTCal.MainJob;

/// <summary>What the job reads from a base model's <c>BASE_RECIPE.json</c> (everything optional).</summary>
/// <param name="WorldSeed">Seed of the synthetic world it was trained on (<c>dataset.seed</c> or <c>world_seed</c>; default 1).</param>
/// <param name="ImageSize">Its image size (<c>config.image_size</c>), or null.</param>
/// <param name="VaeArguments">Training options of <c>base vae</c> from the recorded command (data/output options removed).</param>
/// <param name="UnetArguments">Training options of <c>base unet</c> from the recorded command (data/output options removed).</param>
/// <param name="UnetContinuations">
/// Later <c>base unet</c> commands of the recipe's <c>chain</c>, each resuming the previous one's last checkpoint (for example a
/// run stopped with <c>--stop-at</c> and continued with another schedule); empty when the recipe is one command.
/// </param>
internal sealed record BaseRecipeInfo(ulong WorldSeed, int? ImageSize, IReadOnlyList<string> VaeArguments, IReadOnlyList<string> UnetArguments,
    IReadOnlyList<IReadOnlyList<string>>? UnetContinuations = null)
{
    public const string FileName = "BASE_RECIPE.json";

    /// <summary>The base-model README's commands, used when a recipe records none.</summary>
    public static readonly IReadOnlyList<string> DefaultVaeArguments = ["--steps", "400", "--batch-size", "16", "--lr", "1e-3", "--warmup", "20"];

    /// <summary>See <see cref="DefaultVaeArguments"/>.</summary>
    public static readonly IReadOnlyList<string> DefaultUnetArguments = ["--steps", "3000", "--batch-size", "32", "--lr", "1e-3", "--warmup", "100"];

    /// <summary>Options of the recorded commands the job sets itself (paths, threads, checkpoints).</summary>
    private static readonly HashSet<string> Dropped = ["--data", "--out", "--vae", "--resume", "--save-every", "--threads"];

    public static BaseRecipeInfo Default { get; } = new(1, null, DefaultVaeArguments, DefaultUnetArguments);

    /// <summary>Reads <c>BASE_RECIPE.json</c> in <paramref name="folder"/>; a missing file gives <see cref="Default"/>.</summary>
    /// <exception cref="InvalidDataException">The file is not valid JSON (the message names it).</exception>
    public static BaseRecipeInfo Read(string folder)
    {
        string file = Path.Combine(folder, FileName);
        if (!File.Exists(file))
        {
            return Default;
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(file));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{file}: not valid JSON ({e.Message})", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{file}: expected a JSON object");
            }

            ulong seed = 1;
            if (root.TryGetProperty("dataset", out var dataset) && dataset.ValueKind == JsonValueKind.Object && dataset.TryGetProperty("seed", out var ds))
            {
                seed = ReadSeed(ds, file, "dataset.seed");
            }
            else if (root.TryGetProperty("world_seed", out var ws))
            {
                seed = ReadSeed(ws, file, "world_seed");
            }

            int? imageSize = root.TryGetProperty("config", out var config) && config.ValueKind == JsonValueKind.Object
                && config.TryGetProperty("image_size", out var size) && size.TryGetInt32(out int s) ? s : null;
            var vae = root.TryGetProperty("vae", out var v) && v.ValueKind == JsonValueKind.Object && v.TryGetProperty("command", out var vc) && vc.ValueKind == JsonValueKind.String
                ? TrainingOptions(vc.GetString()!) : DefaultVaeArguments;
            var unet = root.TryGetProperty("command", out var uc) && uc.ValueKind == JsonValueKind.String
                ? TrainingOptions(uc.GetString()!) : DefaultUnetArguments;
            IReadOnlyList<IReadOnlyList<string>>? continuations = null;
            if (root.TryGetProperty("chain", out var chain))
            {
                // The chain is the whole recipe in order: it wins over the last command's own record.
                if (chain.ValueKind != JsonValueKind.Array || chain.EnumerateArray().Any(c => c.ValueKind != JsonValueKind.String))
                {
                    throw new InvalidDataException($"{file}: chain: expected an array of command lines");
                }

                var commands = chain.EnumerateArray().Select(c => c.GetString()!).ToList();
                var vaeCommand = commands.FirstOrDefault(c => c.Contains(" base vae ", StringComparison.Ordinal));
                var unetCommands = commands.Where(c => c.Contains(" base unet ", StringComparison.Ordinal)).Select(TrainingOptions).ToList();
                if (vaeCommand is not null)
                {
                    vae = TrainingOptions(vaeCommand);
                }

                if (unetCommands.Count > 0)
                {
                    unet = unetCommands[0];
                    continuations = unetCommands.Skip(1).ToList();
                }
            }

            return new BaseRecipeInfo(seed, imageSize, vae.Count > 0 ? vae : DefaultVaeArguments, unet.Count > 0 ? unet : DefaultUnetArguments, continuations);
        }
    }

    private static ulong ReadSeed(JsonElement e, string file, string field) => e.ValueKind switch
    {
        JsonValueKind.Number when e.TryGetUInt64(out ulong n) => n,
        JsonValueKind.String when ulong.TryParse(e.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) => n,
        _ => throw new InvalidDataException($"{file}: {field}: expected a non-negative integer, found {e.GetRawText()}"),
    };

    /// <summary>The <c>--option value</c> pairs of a recorded command after its verb, without the ones the job sets.</summary>
    public static IReadOnlyList<string> TrainingOptions(string command)
    {
        var tokens = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var result = new List<string>();
        for (int i = 0; i < tokens.Length; i++)
        {
            if (!tokens[i].StartsWith("--", StringComparison.Ordinal))
            {
                continue;
            }

            bool hasValue = i + 1 < tokens.Length && !tokens[i + 1].StartsWith("--", StringComparison.Ordinal);
            if (!Dropped.Contains(tokens[i]))
            {
                result.Add(tokens[i]);
                if (hasValue)
                {
                    result.Add(tokens[i + 1]);
                }
            }

            if (hasValue)
            {
                i++;
            }
        }

        return result;
    }
}

/// <summary>Stage b: the base model. Validates a given folder, or trains one from scratch with the trainer's <c>base</c> commands.</summary>
internal static class BaseModelStage
{
    /// <summary>
    /// Checks that <paramref name="folder"/> is a complete diffusers base of <paramref name="family"/> (the core's
    /// <see cref="ModelFolder"/> decides what complete means: unet/, vae/, text_encoder/, tokenizer/, scheduler/ for
    /// <see cref="ModelFamily.Sd1"/>; transformer/, both CLIP encoders and tokenizers, vae/, scheduler/ for
    /// <see cref="ModelFamily.Sd3"/>) and that the folder is of that family.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder is missing.</exception>
    /// <exception cref="FileNotFoundException">A required file is missing (the message names every one).</exception>
    /// <exception cref="InvalidDataException">The folder is of the other family (the message says which option fits it).</exception>
    public static void Validate(string folder, string family = ModelFamily.Sd1)
    {
        bool sd3 = family == ModelFamily.Sd3;
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException(sd3
                ? $"base model folder {folder} not found: no SD3 base is shipped (the tiny one trained within its CPU budget did not reach binding; src/CTCal.BaseModel/README.md); train one with 'ctcal-train base unet --family sd3 ...' and pass --base <folder>"
                : $"base model folder {folder} not found (expected the shipped tiny base model in {BuildInfo.DefaultBaseModelFolder(family)}; pass --base <folder> or --from-scratch)");
        }

        // The family first: an SD 1.x folder given for SD3 is the wrong folder, not an incomplete one.
        bool isSd3;
        try
        {
            isSd3 = ModelFolder.Open(folder, ModelComponents.None).IsSD3;
        }
        catch (Exception e) when (e is ModelFolderException or CTCal.Core.Diffusers.DiffusersConfigException or InvalidDataException or IOException)
        {
            throw new InvalidDataException($"base model folder {folder}: {e.Message}", e);
        }

        if (isSd3 != sd3)
        {
            throw new InvalidDataException(isSd3
                ? $"base model folder {folder} is an SD3 model (model_index.json: {ModelFolder.SD3PipelineClass}); run it with --family {ModelFamily.Sd3}"
                : $"base model folder {folder} is an SD 1.x/2.x (UNet) model, not SD3; run it with --family {ModelFamily.Sd1} or pass an SD3 base");
        }

        try
        {
            ModelFolder.Open(folder, sd3 ? ModelComponents.Sd3 : ModelComponents.All);
        }
        catch (ModelFolderException e)
        {
            throw new FileNotFoundException($"base model folder {folder} is incomplete: {string.Join("; ", e.Problems)}", folder, e);
        }
    }

    /// <summary>
    /// Trains a base model into <paramref name="output"/>: <c>base vae</c>, then <c>base unet</c>, as child processes with
    /// the recipe's options. <paramref name="onLine"/> receives every output line (for progress).
    /// </summary>
    public static async Task TrainFromScratchAsync(string trainer, string data, string output, BaseRecipeInfo recipe, int threads,
        Action<string, string> onLine, CancellationToken ct)
    {
        Directory.CreateDirectory(output);
        string t = threads.ToString(CultureInfo.InvariantCulture);
        await RunAsync(trainer, ["base", "vae", "--data", data, "--out", output, "--threads", t, .. recipe.VaeArguments], line => onLine("vae", line), ct);
        await RunAsync(trainer, ["base", "unet", "--data", data, "--vae", output, "--out", output, "--threads", t, .. recipe.UnetArguments], line => onLine("unet", line), ct);
        foreach (var continuation in recipe.UnetContinuations ?? [])
        {
            await RunAsync(trainer, ["base", "unet", "--data", data, "--vae", output, "--out", output, "--threads", t, "--resume", "latest", .. continuation],
                line => onLine("unet", line), ct);
        }

        Validate(output);
    }

    /// <summary>Runs <paramref name="executable"/> without a shell; kills its process tree when cancelled.</summary>
    /// <exception cref="InvalidOperationException">It exited with a non-zero code (the message quotes its last lines).</exception>
    public static async Task RunAsync(string executable, IReadOnlyList<string> arguments, Action<string> onLine, CancellationToken ct)
    {
        var start = new ProcessStartInfo(executable) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, CreateNoWindow = true };
        foreach (string a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        using var process = ProcessLaunch.Start(start);
        var tail = new Queue<string>();
        void Line(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (tail)
            {
                tail.Enqueue(line);
                if (tail.Count > 20)
                {
                    tail.Dequeue();
                }
            }

            onLine(line);
        }

        process.OutputDataReceived += (_, e) => Line(e.Data);
        process.ErrorDataReceived += (_, e) => Line(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await process.WaitForExitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // exited meanwhile
            }

            throw;
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"{Path.GetFileName(executable)} {string.Join(' ', arguments.Take(2))} exited with code {process.ExitCode}:{Environment.NewLine}{string.Join(Environment.NewLine, tail)}");
        }
    }
}
