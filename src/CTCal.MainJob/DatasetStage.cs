using System.Text.Json;
using CTCal.Synthetic;

namespace CTCal.MainJob;

/// <summary>
/// Stage a: the synthetic training dataset, exactly as <c>ctcal-train base dataset --count N --seed S --with-masks</c>
/// writes it (metadata.jsonl, PNGs, per-subject masks for <c>--teacher oracle</c>, world.json, eval_prompts.json). An
/// existing folder is reused when its world.json records the same seed, image size and count, its files are there and its
/// metadata lines carry masks.
/// </summary>
internal static class DatasetStage
{
    public const string EvalPromptsFileName = "eval_prompts.json";

    /// <summary>The world the base model was trained on: seed and image size from its BASE_RECIPE.json when recorded.</summary>
    public static SyntheticWorldOptions WorldFor(BaseRecipeInfo recipe, MainJobRecipe job) => new()
    {
        Seed = recipe.WorldSeed,
        ImageSize = recipe.ImageSize ?? job.Resolution,
        TrainCount = job.DatasetCount,
    };

    /// <summary>Whether <paramref name="folder"/> holds the dataset of <paramref name="world"/> already.</summary>
    public static bool Matches(string folder, SyntheticWorldOptions world)
    {
        string worldFile = Path.Combine(folder, DatasetWriter.WorldFileName);
        string metadata = Path.Combine(folder, DatasetWriter.MetadataFileName);
        if (!File.Exists(worldFile) || !File.Exists(metadata) || !File.Exists(Path.Combine(folder, EvalPromptsFileName)))
        {
            return false;
        }

        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(worldFile));
            var root = doc.RootElement;
            bool same = root.GetProperty("seed").GetUInt64() == world.Seed
                && root.GetProperty("imageSize").GetInt32() == world.ImageSize
                && root.GetProperty("trainCount").GetInt32() == world.TrainCount
                && root.GetProperty("evalPromptsPerCategory").GetInt32() == world.EvalPromptsPerCategory;
            var lines = File.ReadLines(metadata).Where(l => l.Length > 0).ToList();
            if (!same || lines.Count != world.TrainCount)
            {
                return false;
            }

            if (lines.Count == 0)
            {
                return true;
            }

            using var first = JsonDocument.Parse(lines[0]);
            return first.RootElement.TryGetProperty("masks", out var masks) && masks.ValueKind == JsonValueKind.Object
                && Directory.Exists(Path.Combine(folder, SubjectMasks.Folder));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return false;
        }
    }

    /// <summary>Writes the dataset into <paramref name="folder"/> unless it is there already; returns whether it was reused.</summary>
    public static bool Ensure(string folder, SyntheticWorldOptions options, CancellationToken ct)
    {
        if (Matches(folder, options))
        {
            return true;
        }

        ct.ThrowIfCancellationRequested();
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        var world = SyntheticWorld.Create(options);
        DatasetWriter.WriteDataset(world, folder, withMasks: true);
        DatasetWriter.WriteEvalPrompts(world, Path.Combine(folder, EvalPromptsFileName));
        return false;
    }

    /// <summary>
    /// A stratified subset: per category, held-out and seen prompts alternately (in file order) up to
    /// <paramref name="perCategory"/>; null keeps every prompt.
    /// </summary>
    public static IReadOnlyList<(int Index, EvalPrompt Prompt)> Select(IReadOnlyList<EvalPrompt> prompts, int? perCategory)
    {
        var indexed = prompts.Select((p, i) => (Index: i, Prompt: p)).ToList();
        if (perCategory is not int n)
        {
            return indexed;
        }

        var result = new List<(int, EvalPrompt)>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var held = new Queue<(int, EvalPrompt)>(indexed.Where(x => x.Prompt.Category == category && x.Prompt.HeldOutPair));
            var seen = new Queue<(int, EvalPrompt)>(indexed.Where(x => x.Prompt.Category == category && !x.Prompt.HeldOutPair));
            var picked = new List<(int Index, EvalPrompt)>();
            while (picked.Count < n && (held.Count > 0 || seen.Count > 0))
            {
                if (held.Count > 0)
                {
                    picked.Add(held.Dequeue());
                }

                if (picked.Count < n && seen.Count > 0)
                {
                    picked.Add(seen.Dequeue());
                }
            }

            result.AddRange(picked.OrderBy(p => p.Index));
        }

        return result;
    }
}
