using CTCal.Core.Datasets;
using System.Text.Json;
using CTCal.Core.IO;
using CTCal.Synthetic;

namespace CTCal.MainJob.Study;

/// <summary>
/// Writes a <see cref="GorsSelection"/> as a dataset folder the trainer reads: the kept PNGs as <c>00000.png</c>, ...,
/// <c>metadata.jsonl</c> (file_name, text = the prompt, subjects = its nouns; <see cref="DatasetWriter.WriteMetadata"/>)
/// and <c>gors.json</c> (options, per-category summary and where each file came from: prompt, seed, source, weight).
/// </summary>
/// <remarks>
/// Every file is written atomically (<see cref="AtomicFile"/>), the PNGs first and <c>metadata.jsonl</c> and
/// <c>gors.json</c> last, so a folder with a metadata file is complete. Each source is decoded before it is copied
/// (an unreadable PNG is an error naming it). The folder must be missing or empty: a dataset is never mixed with
/// another's files.
/// </remarks>
public static class GorsDatasetWriter
{
    /// <summary>File name of the selection record inside the dataset folder.</summary>
    public const string SelectionFileName = "gors.json";

    /// <summary>Writes <paramref name="selection"/> into <paramref name="directory"/>; returns the metadata lines written.</summary>
    /// <exception cref="IOException">The folder holds files already.</exception>
    /// <exception cref="InvalidDataException">A source image is not a readable PNG.</exception>
    public static IReadOnlyList<MetadataLine> Write(GorsSelection selection, string directory)
    {
        ArgumentNullException.ThrowIfNull(selection);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new IOException($"GORS dataset folder '{directory}' is not empty; give a new or empty folder");
        if (selection.Kept.Count == 0)
            throw new ArgumentException("the GORS selection kept no image: nothing to train on", nameof(selection));

        Directory.CreateDirectory(directory);
        var lines = new List<MetadataLine>();
        var sources = new List<SourceDto>();
        for (int i = 0; i < selection.Kept.Count; i++)
        {
            var c = selection.Kept[i].Candidate;
            string fileName = $"{i:D5}.png";
            byte[] png;
            try
            {
                png = File.ReadAllBytes(c.ImagePath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"GORS image of '{c.Prompt}' seed {c.GenerationSeed}: cannot read '{c.ImagePath}': {e.Message}", e);
            }

            RgbaImage.Decode(png, c.ImagePath);
            AtomicFile.WriteBytes(Path.Combine(directory, fileName), png);
            lines.Add(new MetadataLine(fileName, c.Prompt, CaptionGrammar.Subjects(c.Spec)));
            sources.Add(new SourceDto(fileName, c.Prompt, Metrics.Word(c.Category), c.GenerationSeed, c.ImagePath, selection.Kept[i].Weight));
        }

        MetadataJsonl.Write(Path.Combine(directory, DatasetWriter.MetadataFileName), lines);
        var record = new SelectionDto(selection.Options, selection.Categories.Select(s =>
            new CategoryDto(Metrics.Word(s.Category), s.Candidates, s.Passed, s.Kept, s.KeptPrompts, s.Candidates == 0 ? null : s.PassRate)).ToList(), sources);
        AtomicFile.WriteBytes(Path.Combine(directory, SelectionFileName), JsonSerializer.SerializeToUtf8Bytes(record, RunResults.Json));
        return lines;
    }

    private sealed record SourceDto(string FileName, string Prompt, string Category, long Seed, string Source, double Weight);

    private sealed record CategoryDto(string Category, int Candidates, int Passed, int Kept, int KeptPrompts, double? PassRate);

    private sealed record SelectionDto(GorsOptions Options, IReadOnlyList<CategoryDto> Categories, IReadOnlyList<SourceDto> Files);
}
