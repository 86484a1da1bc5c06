using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Core.IO;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>weak-base</c>: a weaker base model, the second setting of the study (issue #14, Build 7). It is the
/// shipped base's own UNet recipe (the first <c>base unet</c> command of its <c>BASE_RECIPE.json</c>: learning rate,
/// warmup, EMA, min-SNR, caption dropout, seed), on the same training images (the world stage's dataset) and with the
/// shipped VAE, but a cosine schedule of only <see cref="StudySettings.WeakBaseSteps"/> steps instead of 3,500 + 1,500:
/// a model stopped where composition is still forming. Run as <c>ctcal-train base unet</c> in a child process into
/// <c>model/</c> (with all the study's threads: <see cref="StudySettings.Threads"/> x <see cref="StudySettings.Parallel"/>); the weak-premise, weak-gors-data and weak-main stages then repeat the shipped base's stages on it.
/// </summary>
/// <remarks>
/// Resumable: the trainer checkpoints every <see cref="SaveEvery"/> steps; a killed run continues from the newest
/// checkpoint when it was started with the same arguments (<c>request.json</c>), otherwise it starts again. The
/// checkpoints are removed once the model folder is written.
/// </remarks>
public sealed class WeakBaseStudyStage : IStudyStage
{
    /// <summary>The stage's name.</summary>
    public const string StageName = "weak-base";

    /// <summary>Files and folders of the stage.</summary>
    public const string ModelFolderName = "model", RequestFile = "request.json";

    /// <summary>Steps between checkpoints.</summary>
    public const int SaveEvery = 100;

    /// <inheritdoc/>
    public string Name => StageName;

    /// <inheritdoc/>
    public bool Resumable => true;

    /// <summary>The weak base's diffusers folder inside the stage folder <paramref name="stageFolder"/>.</summary>
    public static string ModelFolder(string stageFolder) => Path.Combine(stageFolder, ModelFolderName);

    /// <summary>
    /// The training options of the weak base: the base recipe's first UNet command with <c>--steps</c> set to
    /// <see cref="StudySettings.WeakBaseSteps"/>, <c>--warmup</c> capped at a tenth of them, <c>--stop-at</c> removed
    /// and, when set, <see cref="StudySettings.WeakBaseBatchSize"/> for <c>--batch-size</c>.
    /// </summary>
    public static IReadOnlyList<string> TrainingArguments(IReadOnlyList<string> recipeUnetArguments, StudySettings settings)
    {
        ArgumentNullException.ThrowIfNull(recipeUnetArguments);
        ArgumentNullException.ThrowIfNull(settings);
        var pairs = new List<(string Name, string? Value)>();
        for (int i = 0; i < recipeUnetArguments.Count; i++)
        {
            string name = recipeUnetArguments[i];
            string? value = i + 1 < recipeUnetArguments.Count && !recipeUnetArguments[i + 1].StartsWith("--", StringComparison.Ordinal) ? recipeUnetArguments[++i] : null;
            pairs.Add((name, value));
        }

        void Set(string name, string value)
        {
            int at = pairs.FindIndex(p => p.Name == name);
            if (at >= 0) pairs[at] = (name, value);
            else pairs.Add((name, value));
        }

        pairs.RemoveAll(p => p.Name == "--stop-at");
        Set("--steps", settings.WeakBaseSteps.ToString(CultureInfo.InvariantCulture));
        int warmup = pairs.FirstOrDefault(p => p.Name == "--warmup").Value is { } w && int.TryParse(w, CultureInfo.InvariantCulture, out int wv) ? wv : 0;
        Set("--warmup", Math.Min(warmup, Math.Max(1, settings.WeakBaseSteps / 10)).ToString(CultureInfo.InvariantCulture));
        if (settings.WeakBaseBatchSize is { } batch) Set("--batch-size", batch.ToString(CultureInfo.InvariantCulture));
        return pairs.SelectMany(p => p.Value is null ? new[] { p.Name } : new[] { p.Name, p.Value }).ToList();
    }

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var s = context.Settings;
        string data = Path.Combine(context.FolderOf("world"), WorldStudyStage.DataFolder);
        string model = ModelFolder(context.Folder);
        var options = TrainingArguments(BaseRecipeInfo.Read(s.BaseModel).UnetArguments, s);
        List<string> arguments =
        [
            "base", "unet", "--data", data, "--vae", s.BaseModel, "--out", model,
            "--threads", (s.Threads * s.Parallel).ToString(CultureInfo.InvariantCulture), "--save-every", SaveEvery.ToString(CultureInfo.InvariantCulture), .. options,
        ];

        string request = JsonSerializer.Serialize(arguments, RunResults.Json);
        string requestFile = Path.Combine(context.Folder, RequestFile);
        if (Directory.Exists(model) && (!File.Exists(requestFile) || File.ReadAllText(requestFile) != request))
        {
            context.Say($"weak-base: {model} was trained with other arguments; training again");
            Directory.Delete(model, recursive: true);
        }

        AtomicFile.WriteText(requestFile, request);
        if (Directory.Exists(model) && BaseCheckpointExists(model))
        {
            context.Say("weak-base: continuing from the newest checkpoint");
            arguments.AddRange(["--resume", "latest"]);
        }

        context.Say($"weak-base: ctcal-train {string.Join(' ', arguments)}");
        // The trainer writes a line every 50 steps and at each checkpoint: all of them are progress worth showing.
        await BaseModelStage.RunAsync(BuildInfo.TrainerExecutable(), arguments, line => context.Say("weak-base: " + line), ct);
        BaseModelStage.Validate(model, s.Family);
        string checkpoints = Path.Combine(model, "checkpoints");
        if (Directory.Exists(checkpoints)) Directory.Delete(checkpoints, recursive: true);

        var summary = new Dictionary<string, double> { ["steps"] = s.WeakBaseSteps };
        using (var recipe = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(model, BaseRecipeInfo.FileName))))
        {
            if (recipe.RootElement.TryGetProperty("final_loss", out var loss) && loss.TryGetDouble(out double l)) summary["final_loss"] = l;
            if (recipe.RootElement.TryGetProperty("seconds_per_step", out var sps) && sps.TryGetDouble(out double v)) summary["seconds_per_step"] = v;
        }

        return new StudyStageResult([ModelFolderName, RequestFile], summary, []);
    }

    private static bool BaseCheckpointExists(string model) =>
        Directory.Exists(Path.Combine(model, "checkpoints")) && Directory.EnumerateFiles(Path.Combine(model, "checkpoints"), "step-*.safetensors").Any();

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var md = new StringBuilder();
        string args = File.Exists(Path.Combine(folder, RequestFile))
            ? string.Join(' ', JsonSerializer.Deserialize<List<string>>(File.ReadAllText(Path.Combine(folder, RequestFile))) ?? []) : "(request.json missing)";
        md.AppendLine(CultureInfo.InvariantCulture,
            $"A weaker base: the shipped base's UNet recipe on the same images and VAE, but a {WorldStudyStage.Get(done, "steps")}-step cosine schedule (the shipped base: 3,500 steps of an 8,000-step schedule, then a 1,500-step anneal). Final loss {WorldStudyStage.Get(done, "final_loss", "0.00000")}, {WorldStudyStage.Get(done, "seconds_per_step", "0.00")} s/step. Command: `ctcal-train {args}` (paths as run). The weak-* stages below repeat premise, gors-data and main on it; its scores are the `base` rows of weak-main.");
        return md.ToString();
    }
}
