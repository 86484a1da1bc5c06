using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Core.IO;
using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>world</c>: the synthetic training dataset with subject masks in <c>data/</c> (as
/// <see cref="DatasetStage"/> writes it for the main job, world seed and image size from the base's BASE_RECIPE.json),
/// the validation and test prompts of <see cref="PromptSplit"/> (<c>validation_prompts.json</c>,
/// <c>test_prompts.json</c>, evaluation prompt files <see cref="DatasetWriter.ReadEvalPrompts"/> reads), and
/// <c>study-world.json</c>: the world options and split counts later stages rebuild the same world from.
/// </summary>
public sealed class WorldStudyStage : IStudyStage
{
    /// <summary>Files and folders of the stage.</summary>
    public const string DataFolder = "data", ValidationFile = "validation_prompts.json", TestFile = "test_prompts.json", WorldFile = "study-world.json";

    /// <inheritdoc/>
    public string Name => "world";

    /// <inheritdoc/>
    public bool Resumable => false;

    /// <summary>What later stages rebuild the world and split from.</summary>
    public sealed record StudyWorld(ulong Seed, int ImageSize, int TrainCount, int ValidationPerCategory, int TestPerCategory)
    {
        /// <summary>The world's options.</summary>
        public SyntheticWorldOptions Options => new() { Seed = Seed, ImageSize = ImageSize, TrainCount = TrainCount };

        /// <summary>The split's options.</summary>
        public PromptSplitOptions Split => new() { ValidationPerCategory = ValidationPerCategory, TestPerCategory = TestPerCategory };

        /// <summary>Reads <c>study-world.json</c> of a done world stage.</summary>
        /// <exception cref="InvalidDataException">The file is missing or malformed (the message names it).</exception>
        public static StudyWorld Read(string worldStageFolder)
        {
            string file = Path.Combine(worldStageFolder, WorldFile);
            try
            {
                return JsonSerializer.Deserialize<StudyWorld>(File.ReadAllBytes(file), RunResults.Json)
                    is { ImageSize: > 0, TrainCount: > 0 } w ? w : throw new InvalidDataException($"{file}: imageSize and trainCount must be positive");
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                throw new InvalidDataException($"{file}: cannot read the study world ({e.Message})", e);
            }
        }
    }

    /// <inheritdoc/>
    public Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var settings = context.Settings;
        BaseModelStage.Validate(settings.BaseModel, settings.Family);
        var options = DatasetStage.WorldFor(BaseRecipeInfo.Read(settings.BaseModel), new MainJobRecipe { DatasetCount = settings.DatasetCount });
        var record = new StudyWorld(options.Seed, options.ImageSize, options.TrainCount, settings.Split.ValidationPerCategory, settings.Split.TestPerCategory);
        return Task.Run(() => Write(context.Folder, record, context.Say, ct), ct);
    }

    /// <summary>Writes the stage's files for <paramref name="record"/> into <paramref name="folder"/>.</summary>
    public static StudyStageResult Write(string folder, StudyWorld record, Action<string> say, CancellationToken ct)
    {
        var options = record.Options;
        say($"world: dataset of {options.TrainCount} images with masks, world seed {options.Seed}, {options.ImageSize} px");
        DatasetStage.Ensure(Path.Combine(folder, DataFolder), options, ct);
        ct.ThrowIfCancellationRequested();
        var world = SyntheticWorld.Create(options);
        var split = PromptSplit.Create(world, record.Split);
        DatasetWriter.WriteEvalPrompts(world, split.Validation, Path.Combine(folder, ValidationFile));
        DatasetWriter.WriteEvalPrompts(world, split.Test, Path.Combine(folder, TestFile));
        AtomicFile.WriteBytes(Path.Combine(folder, WorldFile), JsonSerializer.SerializeToUtf8Bytes(record, RunResults.Json));

        var summary = new Dictionary<string, double> { ["train_images"] = options.TrainCount };
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            string c = Metrics.Word(category);
            summary[$"validation.{c}"] = split.Validation.Count(p => p.Category == category);
            summary[$"validation.{c}.heldout"] = split.Validation.Count(p => p.Category == category && p.HeldOutPair);
            summary[$"test.{c}"] = split.Test.Count(p => p.Category == category);
            summary[$"test.{c}.heldout"] = split.Test.Count(p => p.Category == category && p.HeldOutPair);
        }

        say($"world: {split.Validation.Count} validation and {split.Test.Count} test prompts");
        return new StudyStageResult([DataFolder, ValidationFile, TestFile, WorldFile], summary, split.Shortfalls.Select(s => "split shortfall: " + s).ToList());
    }

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var w = StudyWorld.Read(folder);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Synthetic world seed {w.Seed}, {w.ImageSize} px: {w.TrainCount} training images with subject masks (`{DataFolder}/`). Prompt split requested {w.ValidationPerCategory} validation + {w.TestPerCategory} test prompts per category:");
        md.AppendLine();
        md.AppendLine("| category | validation (held-out pair) | test (held-out pair) |");
        md.AppendLine("|---|---|---|");
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            string c = Metrics.Word(category);
            md.AppendLine(CultureInfo.InvariantCulture,
                $"| {c} | {Get(done, $"validation.{c}")} ({Get(done, $"validation.{c}.heldout")}) | {Get(done, $"test.{c}")} ({Get(done, $"test.{c}.heldout")}) |");
        }

        return md.ToString();
    }

    internal static string Get(StudyDone done, string key, string format = "0") =>
        done.Summary.TryGetValue(key, out double v) ? v.ToString(format, CultureInfo.InvariantCulture) : "–";
}
