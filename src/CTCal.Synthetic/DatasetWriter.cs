using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using CTCal.Core.Datasets;
using CTCal.Core.IO;

namespace CTCal.Synthetic;

/// <summary>
/// Writes and reads the synthetic world's files. A dataset folder is a diffusers image-folder dataset:
/// <c>metadata.jsonl</c> with one <c>{"file_name": "00000.png", "text": "...", "subjects": ["circle", ...]}</c> per line,
/// the PNGs beside it, and <c>world.json</c> recording the options, palette and held-out pairs. The evaluation prompt
/// file is JSON: <c>{"seed", "imageSize", "heldOutPairs": [...], "prompts": [{"prompt", "category", "heldOutPair",
/// "subjects", "spec": {"objects": [{"color", "shape", "count"}], "relation"}}]}</c>. With masks, each line also carries
/// <c>"masks": {"circle": "masks/00000_circle.png", ...}</c>, one 8-bit grayscale PNG per subject (255 inside the objects
/// the subject names, 0 outside; <see cref="SubjectMasks"/>). Every file is written to a temporary name and renamed into place.
/// </summary>
public static class DatasetWriter
{
    /// <summary>File name of the metadata lines inside a dataset folder.</summary>
    public const string MetadataFileName = MetadataJsonl.FileName;

    /// <summary>File name of the world description inside a dataset folder.</summary>
    public const string WorldFileName = "world.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase, allowIntegerValues: false) },
    };

    /// <summary>
    /// Renders every training record of <paramref name="world"/> into <paramref name="directory"/> (created if missing);
    /// with <paramref name="withMasks"/> also each record's subject masks under <c>masks/</c>, named in its metadata line.
    /// </summary>
    public static void WriteDataset(SyntheticWorld world, string directory, bool withMasks = false)
    {
        ArgumentNullException.ThrowIfNull(world);
        Directory.CreateDirectory(directory);
        if (withMasks) Directory.CreateDirectory(Path.Combine(directory, SubjectMasks.Folder));
        var metadata = new List<MetadataLine>();
        foreach (var record in world.TrainRecords)
        {
            AtomicFile.WriteBytes(Path.Combine(directory, record.FileName), record.Render().EncodePng());
            Dictionary<string, string>? masks = null;
            if (withMasks)
            {
                masks = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (string subject in record.Subjects)
                {
                    string relative = SubjectMasks.RelativePath(record.FileName, subject);
                    byte[] png = SubjectMasks.EncodePng(record.Scene.Width, record.Scene.Height, SubjectMasks.Render(record, subject));
                    AtomicFile.WriteBytes(Path.Combine(directory, relative), png);
                    masks[subject] = relative;
                }
            }
            metadata.Add(new MetadataLine(record.FileName, record.Caption, record.Subjects, masks));
        }
        MetadataJsonl.Write(Path.Combine(directory, MetadataFileName), metadata);
        var o = world.Options;
        var description = new WorldFile(o.Seed, o.ImageSize, o.TrainCount, o.EvalPromptsPerCategory, o.EvalFraction,
            PairsOf(world.HeldOutPairs),
            Palette.All.ToDictionary(Palette.Word, c => RgbArray(Palette.ToRgb(c))), RgbArray(Palette.Background));
        AtomicFile.WriteBytes(Path.Combine(directory, WorldFileName), JsonSerializer.SerializeToUtf8Bytes(description, Json));
    }

    /// <summary>Writes <paramref name="world"/>'s evaluation prompts to <paramref name="path"/>.</summary>
    public static void WriteEvalPrompts(SyntheticWorld world, string path)
    {
        ArgumentNullException.ThrowIfNull(world);
        WriteEvalPrompts(world, world.EvalPrompts, path);
    }

    /// <summary>
    /// Writes <paramref name="prompts"/> (for instance one side of a <see cref="PromptSplit"/>) as an evaluation prompt
    /// file of <paramref name="world"/> to <paramref name="path"/>; <see cref="ReadEvalPrompts"/> reads it back.
    /// </summary>
    public static void WriteEvalPrompts(SyntheticWorld world, IReadOnlyList<EvalPrompt> prompts, string path)
    {
        ArgumentNullException.ThrowIfNull(world);
        ArgumentNullException.ThrowIfNull(prompts);
        var file = new EvalPromptFile(world.Options.Seed, world.Options.ImageSize, PairsOf(world.HeldOutPairs),
            prompts.Select(p => new EvalPromptDto(p.Prompt, p.Category, p.HeldOutPair, p.Subjects.ToArray(),
                new SpecDto(p.Spec.Objects.ToArray(), p.Spec.Relation))).ToArray());
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null) Directory.CreateDirectory(dir);
        AtomicFile.WriteBytes(path, JsonSerializer.SerializeToUtf8Bytes(file, Json));
    }

    /// <summary>Reads an evaluation prompt file; throws <see cref="InvalidDataException"/> naming the file and prompt at fault.</summary>
    public static IReadOnlyList<EvalPrompt> ReadEvalPrompts(string path)
    {
        EvalPromptFile? file;
        try
        {
            file = JsonSerializer.Deserialize<EvalPromptFile>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a valid evaluation prompt file ({e.Message})", e);
        }
        if (file?.Prompts is null) throw new InvalidDataException($"{path}: missing 'prompts'");
        var result = new List<EvalPrompt>();
        for (int i = 0; i < file.Prompts.Length; i++)
        {
            var p = file.Prompts[i];
            try
            {
                if (p?.Prompt is null || p.Spec?.Objects is null || p.Subjects is null) throw new FormatException("missing prompt, subjects or spec.objects");
                var spec = p.Category switch
                {
                    PromptCategory.Binding => SceneSpec.Binding(p.Spec.Objects),
                    PromptCategory.Counting when p.Spec.Objects.Length == 1 => SceneSpec.Counting(p.Spec.Objects[0].Color, p.Spec.Objects[0].Shape, p.Spec.Objects[0].Count),
                    PromptCategory.Spatial when p.Spec.Objects.Length == 2 && p.Spec.Relation is { } r => SceneSpec.Spatial(p.Spec.Objects[0], r, p.Spec.Objects[1]),
                    _ => throw new FormatException($"spec does not fit category {p.Category}"),
                };
                if (!CaptionGrammar.Parse(p.Prompt).Equals(spec)) throw new FormatException($"prompt '{p.Prompt}' does not describe its spec {spec}");
                result.Add(new EvalPrompt(p.Prompt, p.Category, spec, p.HeldOutPair, p.Subjects));
            }
            catch (Exception e) when (e is FormatException or ArgumentException)
            {
                throw new InvalidDataException($"{path}: prompts[{i}]: {e.Message}", e);
            }
        }
        return result;
    }

    /// <summary>
    /// Reads a <c>metadata.jsonl</c> of a synthetic dataset (through <see cref="MetadataJsonl"/>): every line must parse and,
    /// as the world writes them, carry <c>subjects</c> and name a file directly in the folder. Throws
    /// <see cref="InvalidDataException"/> naming the file, line and field at fault.
    /// </summary>
    public static IReadOnlyList<MetadataLine> ReadMetadata(string path)
    {
        var result = new List<MetadataLine>();
        foreach (var (number, line, problem) in MetadataJsonl.Read(path))
        {
            string? fault = problem
                ?? (line!.Subjects is null ? "missing array 'subjects'"
                : line.FileName != Path.GetFileName(line.FileName) || line.FileName is "." or ".." ? $"file_name '{line.FileName}' must name a file inside the dataset folder"
                : null);
            if (fault is not null) throw new InvalidDataException($"{path}:{number}: {fault}");
            result.Add(line!);
        }
        return result;
    }

    private static PairDto[] PairsOf(IEnumerable<(ShapeColor Color, ShapeKind Shape)> pairs) =>
        pairs.Select(p => new PairDto(p.Color, p.Shape)).ToArray();

    private static int[] RgbArray(Rgb c) => [c.R, c.G, c.B];

    private sealed record PairDto(ShapeColor Color, ShapeKind Shape);

    private sealed record SpecDto(ObjectSpec[] Objects, SpatialRelation? Relation);

    private sealed record EvalPromptDto(string Prompt, PromptCategory Category, bool HeldOutPair, string[] Subjects, SpecDto Spec);

    private sealed record EvalPromptFile(ulong Seed, int ImageSize, PairDto[] HeldOutPairs, EvalPromptDto[] Prompts);

    private sealed record WorldFile(ulong Seed, int ImageSize, int TrainCount, int EvalPromptsPerCategory, double EvalFraction,
        PairDto[] HeldOutPairs, Dictionary<string, int[]> Palette, int[] Background);
}
