using System.Text;
using System.Text.Json;
using CTCal.Core.IO;

namespace CTCal.Core.Datasets;

/// <summary>One line of a diffusers image-folder <c>metadata.jsonl</c>.</summary>
/// <param name="FileName">The image, relative to the dataset folder ('/'-separated).</param>
/// <param name="Text">The caption.</param>
/// <param name="Subjects">Optional: the subject nouns to calibrate (trimmed, none empty).</param>
/// <param name="Masks">Optional: subject noun -> its mask PNG's path relative to the dataset folder; every key is one of
/// <paramref name="Subjects"/>.</param>
public sealed record MetadataLine(string FileName, string Text, IReadOnlyList<string>? Subjects = null, IReadOnlyDictionary<string, string>? Masks = null);

/// <summary>
/// The one reader and writer of <c>metadata.jsonl</c> (the synthetic world writes it, the trainer and the study read it):
/// one compact JSON object per line, <c>{"file_name": "00000.png", "text": "...", "subjects": [...], "masks": {...}}</c>,
/// blank lines ignored. Parsing checks the line alone (types, a non-empty caption, mask keys among the subjects); what
/// depends on the folder (paths inside it, files that exist) is the reader's to check.
/// </summary>
public static class MetadataJsonl
{
    /// <summary>The file's name in a dataset folder.</summary>
    public const string FileName = "metadata.jsonl";

    /// <summary>Parses one line: the record, or null and the problem (without file or line number).</summary>
    public static MetadataLine? Parse(string json, out string? problem)
    {
        problem = null;
        try
        {
            using var doc = JsonDocument.Parse(json);
            var obj = doc.RootElement;
            if (obj.ValueKind != JsonValueKind.Object)
            {
                problem = "expected a JSON object";
                return null;
            }

            if (!obj.TryGetProperty("file_name", out var fileName) || fileName.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(fileName.GetString()))
            {
                problem = "missing or non-string 'file_name'";
                return null;
            }

            string name = fileName.GetString()!;
            if (!obj.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
            {
                problem = $"missing or non-string 'text' for '{name}'";
                return null;
            }

            string caption = text.GetString()!;
            if (caption.Trim().Length == 0)
            {
                problem = $"empty caption ('text') for '{name}'";
                return null;
            }

            List<string>? subjects = null;
            if (obj.TryGetProperty("subjects", out var subjectsElement) && subjectsElement.ValueKind != JsonValueKind.Null)
            {
                if (subjectsElement.ValueKind != JsonValueKind.Array || subjectsElement.EnumerateArray().Any(s => s.ValueKind != JsonValueKind.String))
                {
                    problem = "'subjects' must be an array of strings";
                    return null;
                }

                subjects = subjectsElement.EnumerateArray().Select(s => s.GetString()!.Trim()).Where(s => s.Length > 0).ToList();
            }

            Dictionary<string, string>? masks = null;
            if (obj.TryGetProperty("masks", out var masksElement) && masksElement.ValueKind != JsonValueKind.Null)
            {
                if (masksElement.ValueKind != JsonValueKind.Object)
                {
                    problem = "'masks' must be an object of subject -> mask path";
                    return null;
                }

                masks = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var entry in masksElement.EnumerateObject())
                {
                    string key = entry.Name;
                    if (entry.Value.ValueKind != JsonValueKind.String)
                    {
                        problem = $"masks['{key}'] must be a string (a path relative to the dataset folder)";
                        return null;
                    }

                    if (subjects is null || !subjects.Contains(key, StringComparer.Ordinal))
                    {
                        problem = $"masks['{key}']: '{key}' is not one of the record's subjects ({(subjects is null ? "none given" : string.Join(", ", subjects))})";
                        return null;
                    }

                    masks[key] = entry.Value.GetString()!;
                }
            }

            return new MetadataLine(name, caption, subjects, masks);
        }
        catch (JsonException e)
        {
            problem = $"invalid JSON ({e.Message})";
            return null;
        }
        catch (InvalidOperationException e)
        {
            // System.Text.Json reading an escaped lone surrogate ("\ud800") in a key or string.
            problem = $"invalid JSON ({e.Message})";
            return null;
        }
    }

    /// <summary>Every non-blank line of the file at <paramref name="path"/>: its number, and the record or the problem.</summary>
    public static IEnumerable<(int Number, MetadataLine? Line, string? Problem)> Read(string path)
    {
        int number = 0;
        foreach (string text in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }

            var line = Parse(text, out string? problem);
            yield return (number, line, problem);
        }
    }

    /// <summary>One compact JSON line for <paramref name="line"/> (keys file_name, text, and subjects and masks when given).</summary>
    public static string Format(MetadataLine line)
    {
        ArgumentNullException.ThrowIfNull(line);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("file_name", line.FileName);
            w.WriteString("text", line.Text);
            if (line.Subjects is not null)
            {
                w.WriteStartArray("subjects");
                foreach (string s in line.Subjects)
                {
                    w.WriteStringValue(s);
                }

                w.WriteEndArray();
            }

            if (line.Masks is not null)
            {
                w.WriteStartObject("masks");
                foreach (var (subject, path) in line.Masks)
                {
                    w.WriteString(subject, path);
                }

                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>Writes <paramref name="lines"/> as a <c>metadata.jsonl</c> at <paramref name="path"/>, in one atomic step.</summary>
    public static void Write(string path, IEnumerable<MetadataLine> lines)
    {
        ArgumentNullException.ThrowIfNull(lines);
        var text = new StringBuilder();
        foreach (var line in lines)
        {
            text.Append(Format(line)).Append('\n');
        }

        AtomicFile.WriteBytes(path, Encoding.UTF8.GetBytes(text.ToString()));
    }
}
