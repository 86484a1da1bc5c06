using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Core.IO;
using CTCal.Core.Probes;
using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// Study stage <c>sweep</c>: the choice of learning rate (GORS) and of learning rate and CTCal weight (GORS + CTCal) on
/// the <b>validation</b> prompts, never the test prompts. Both methods get the same number of fine-tunes
/// (<see cref="StudySettings.Validate"/> checks it), the same recipe (<see cref="StudyRecipe"/>), data (the gors-data
/// stage's dataset) and seeds. Each method's point with the highest validation overall score is written to
/// <c>choice.json</c> (<see cref="Choice"/>), which the later stages read.
/// </summary>
public sealed class SweepStudyStage : IStudyStage
{
    /// <summary>The chosen recipe points.</summary>
    public const string ChoiceFile = "choice.json";

    /// <summary>What the sweep chose: GORS's learning rate, CTCal's learning rate and weight, the calibrated layers.</summary>
    public sealed record Choice(double GorsLr, double CtcalLr, double CtcalWeight, IReadOnlyList<string> Layers)
    {
        /// <summary>Reads <c>choice.json</c> of a done sweep stage.</summary>
        /// <exception cref="InvalidDataException">Missing or malformed (the message names the file).</exception>
        public static Choice Read(string sweepFolder)
        {
            string file = Path.Combine(sweepFolder, ChoiceFile);
            try
            {
                return JsonSerializer.Deserialize<Choice>(File.ReadAllBytes(file), RunResults.Json) is { GorsLr: > 0, CtcalLr: > 0, Layers.Count: > 0 } c
                    ? c : throw new InvalidDataException($"{file}: learning rates must be positive and layers given");
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                throw new InvalidDataException($"{file}: cannot read the sweep's choice ({e.Message})", e);
            }
        }
    }

    /// <inheritdoc/>
    public string Name => "sweep";

    /// <inheritdoc/>
    public bool Resumable => true;

    /// <summary>
    /// The layers every study CTCal run calibrates: <see cref="StudySettings.Layers"/> when given, else those the premise
    /// probe found worth it (passed to the trainer as <c>premise:&lt;probe.json&gt;</c>, which it reads the same way).
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The probe found no such layer: the base's maps give CTCal no teacher to calibrate toward, so no fine-tune starts.
    /// </exception>
    public static IReadOnlyList<string> PremiseLayers(StudyStageContext context, StudyBase? studyBase = null)
    {
        if (context.Settings.Layers is { } given)
        {
            return given;
        }

        var setting = studyBase ?? StudyBase.Shipped;
        string probe = Path.Combine(context.FolderOf(setting.Stage("premise")), PremiseStudyStage.JsonFile);
        if (PremiseProbeResult.Read(probe).CalibrationLayers().Count == 0)
        {
            throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture,
                $"{probe}: the premise probe found no layer whose teacher-t attention mass is above its large-t mass and at least {PremiseProbeResult.DefaultMinTeacherRatio}x chance, so CTCal has no teacher to calibrate toward on {setting.Model(context)} (see probe.md beside it); train the base further, use another base, or choose layers yourself with --layers"));
        }

        return ["premise:" + probe];
    }

    /// <summary>How a report names <paramref name="layers"/>: the premise probe's, or given with <c>--layers</c>.</summary>
    public static string LayersText(IReadOnlyList<string> layers) =>
        layers.Count == 1 && layers[0].StartsWith("premise:", StringComparison.Ordinal)
            ? $"`{Path.GetFileName(layers[0])}` (the premise probe's)"
            : $"`{string.Join(", ", layers)}` (given with --layers, not the premise probe's choice)";

    /// <summary>Model id of a GORS sweep point.</summary>
    public static string GorsId(double lr, long seed) => string.Create(CultureInfo.InvariantCulture, $"gors-lr{lr:0e0}-s{seed}");

    /// <summary>Model id of a CTCal sweep point.</summary>
    public static string CtcalId(double lr, double weight, long seed) => string.Create(CultureInfo.InvariantCulture, $"ctcal-lr{lr:0e0}-w{weight:0.###}-s{seed}");

    /// <inheritdoc/>
    public async Task<StudyStageResult> RunAsync(StudyStageContext context, CancellationToken ct)
    {
        var s = context.Settings;
        var layers = PremiseLayers(context);
        var models = new List<StudyModel> { new("base", "base", 0, null) };
        foreach (long seed in s.SweepSeeds)
        {
            models.AddRange(s.SweepGorsLearningRates.Select(lr => new StudyModel(GorsId(lr, seed), Key("gors", lr, null), seed, s.Recipe.Job(FineTuneStage.Vanilla, seed, lr, 0, layers))));
            models.AddRange(s.SweepCtcalLearningRates.SelectMany(lr => s.SweepCtcalWeights.Select(w =>
                new StudyModel(CtcalId(lr, w, seed), Key("gors+ctcal", lr, w), seed, s.Recipe.Job(FineTuneStage.Ctcal, seed, lr, w, layers)))));
        }

        var world = WorldStudyStage.StudyWorld.Read(context.FolderOf("world"));
        var prompts = DatasetWriter.ReadEvalPrompts(Path.Combine(context.FolderOf("world"), WorldStudyStage.ValidationFile));
        var evaluation = new StudyEvaluation(prompts, s.EvaluationImageSeedBase, s.ValidationImageSeeds, s.SamplingSteps, s.Guidance, world.ImageSize, s.Scheduler);
        string data = Path.Combine(context.FolderOf("gors-data"), GorsDataStudyStage.DatasetFolder);
        var results = await StudyModels.RunAsync(context.Folder, s, s.BaseModel, data, models, evaluation, context.Say, ct);

        // Best validation overall per method (mean over the sweep seeds); ties go to the earlier point.
        var points = results.Where(r => r.Model.Job is not null).GroupBy(r => r.Model.Condition)
            .Select(g => (Key: g.Key, First: g.First().Model.Job!, Score: g.Average(r => StudyComparison.Mean(r.Images, "overall")))).ToList();
        var gors = points.Where(p => p.Key.StartsWith("gors lr", StringComparison.Ordinal)).MaxBy(p => p.Score);
        var ctcal = points.Where(p => p.Key.StartsWith("gors+ctcal", StringComparison.Ordinal)).MaxBy(p => p.Score);
        double weight = ctcal.First.PixelWeight / CTCal.Contracts.FineTuneJob.Defaults.PixelWeight;
        var choice = new Choice(gors.First.Lr, ctcal.First.Lr, weight, layers);
        AtomicFile.WriteText(Path.Combine(context.Folder, ChoiceFile), JsonSerializer.Serialize(choice, RunResults.Json));
        context.Say($"sweep: chose {gors.Key} ({Metrics.Pct(gors.Score)} validation overall) and {ctcal.Key} ({Metrics.Pct(ctcal.Score)})");

        var summary = new Dictionary<string, double>
        {
            ["gors_lr"] = choice.GorsLr, ["ctcal_lr"] = choice.CtcalLr, ["ctcal_weight"] = choice.CtcalWeight,
            ["validation_prompts"] = prompts.Count, ["image_seeds"] = s.ValidationImageSeeds, ["fine_tunes"] = models.Count - 1,
        };
        return new StudyStageResult([ChoiceFile, StudyModels.ResultsFolder], summary, []);
    }

    private static string Key(string method, double lr, double? weight) => weight is null
        ? string.Create(CultureInfo.InvariantCulture, $"{method} lr {lr:0e0}")
        : string.Create(CultureInfo.InvariantCulture, $"{method} lr {lr:0e0} w {weight:0.###}");

    /// <inheritdoc/>
    public string Report(string folder, StudyDone done)
    {
        var results = StudyModels.ReadAll(folder);
        var choice = Choice.Read(folder);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Choice of learning rate and CTCal weight on the **validation** prompts ({WorldStudyStage.Get(done, "validation_prompts")} prompts x {WorldStudyStage.Get(done, "image_seeds")} image seeds per model), the same number of fine-tunes for each method. Chosen: GORS lr {choice.GorsLr.ToString("G3", CultureInfo.InvariantCulture)}; GORS + CTCal lr {choice.CtcalLr.ToString("G3", CultureInfo.InvariantCulture)}, weight {choice.CtcalWeight.ToString("G3", CultureInfo.InvariantCulture)}. Layers: {LayersText(choice.Layers)}.");
        md.AppendLine();
        md.AppendLine(StudyTables.Measured(results));
        return md.ToString();
    }
}
