using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace CTCal.Subjects;

/// <summary>
/// Answers kept beside a dataset so that a resumed or repeated run asks the model only for captions it has not seen:
/// <c>.ctcal/subjects-cache.jsonl</c> in the dataset folder, one compact JSON object per answered caption
/// (<c>{"model": key, "caption": normalised caption, "subjects": [...], "source": "model"|"lexicon", "problem": ...}</c>),
/// appended and flushed batch by batch. Entries of other models (another <see cref="ModelKey"/>) are ignored; a torn last
/// line (a killed run) is skipped on reading.
/// </summary>
public sealed class SubjectCache
{
    /// <summary>The cache file relative to the dataset folder.</summary>
    public const string RelativePath = ".ctcal/subjects-cache.jsonl";

    private readonly Dictionary<string, SubjectResult> _entries = new(StringComparer.Ordinal);
    private readonly string _modelKey;

    private SubjectCache(string path, string modelKey)
    {
        Path = path;
        _modelKey = modelKey;
    }

    /// <summary>The cache file.</summary>
    public string Path { get; }

    /// <summary>Cached captions for this model.</summary>
    public int Count => _entries.Count;

    /// <summary>Opens (or starts) the cache of <paramref name="datasetFolder"/> for the model identified by <paramref name="modelKey"/>.</summary>
    public static SubjectCache Open(string datasetFolder, string modelKey)
    {
        var cache = new SubjectCache(System.IO.Path.Combine(datasetFolder, RelativePath), modelKey);
        if (!File.Exists(cache.Path)) return cache;
        foreach (string line in File.ReadLines(cache.Path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                var o = doc.RootElement;
                if (o.GetProperty("model").GetString() != modelKey) continue;
                string caption = o.GetProperty("caption").GetString()!;
                var subjects = o.GetProperty("subjects").EnumerateArray().Select(s => s.GetString()!).ToArray();
                var source = o.GetProperty("source").GetString() == "model" ? SubjectSource.Model : SubjectSource.LexiconFallback;
                var problem = Enum.TryParse<AnswerProblem>(o.GetProperty("problem").GetString(), out var p) ? p : AnswerProblem.None;
                cache._entries[caption] = new SubjectResult(caption, subjects, source, problem, "");
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                // a line cut short by a killed run: its caption is simply asked again
            }
        }
        return cache;
    }

    /// <summary>The cached result for <paramref name="caption"/> (matched on its normalised words), or null.</summary>
    public SubjectResult? Get(string caption) => _entries.GetValueOrDefault(CaptionWords.Normalise(caption));

    /// <summary>Adds <paramref name="results"/> and appends them to the file (flushed to disk before returning).</summary>
    public void Add(IEnumerable<SubjectResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        var text = new StringBuilder();
        foreach (var r in results)
        {
            string caption = CaptionWords.Normalise(r.Caption);
            _entries[caption] = r with { Caption = caption };
            text.Append(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["model"] = _modelKey,
                ["caption"] = caption,
                ["subjects"] = r.Subjects,
                ["source"] = r.Source == SubjectSource.Model ? "model" : "lexicon",
                ["problem"] = r.Problem.ToString(),
            })).Append('\n');
        }
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        using var stream = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read);
        byte[] bytes = Encoding.UTF8.GetBytes(text.ToString());
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>
    /// A key for a model folder's answers: SHA-256 over its <c>genai_config.json</c> and <c>tokenizer.json</c> and the names
    /// and sizes of its <c>.onnx</c>/<c>.onnx.data</c> files, plus <paramref name="variant"/> (e.g. constrained or not).
    /// </summary>
    public static string ModelKey(string modelFolder, string variant)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (string name in new[] { "genai_config.json", "tokenizer.json" })
        {
            string path = System.IO.Path.Combine(modelFolder, name);
            if (File.Exists(path)) hash.AppendData(File.ReadAllBytes(path));
        }
        foreach (string file in Directory.EnumerateFiles(modelFolder).Where(f => f.EndsWith(".onnx", StringComparison.Ordinal) || f.EndsWith(".onnx.data", StringComparison.Ordinal)).OrderBy(f => f, StringComparer.Ordinal))
        {
            hash.AppendData(Encoding.UTF8.GetBytes($"{System.IO.Path.GetFileName(file)}:{new FileInfo(file).Length};"));
        }
        hash.AppendData(Encoding.UTF8.GetBytes(variant));
        return Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant();
    }
}
