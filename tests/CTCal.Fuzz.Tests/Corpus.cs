using CTCal.Tests;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// The fuzz corpus: seed inputs and named regression inputs (crashers found by fuzzing, kept after the fix) under
/// tests/data/fuzz/&lt;parser&gt;/. Every file there is replayed by the parser's corpus test.
/// </summary>
internal static class Corpus
{
    public static string Folder(string parser) => Path.Combine(TestPaths.Data, "fuzz", parser);

    /// <summary>Every file of the parser's corpus folder (sorted), failing when the folder is empty.</summary>
    public static IReadOnlyList<string> Files(string parser, string pattern = "*")
    {
        string folder = Folder(parser);
        var files = Directory.Exists(folder)
            ? Directory.GetFiles(folder, pattern).Where(f => !f.EndsWith(".md", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList()
            : [];
        if (files.Count == 0) throw new InvalidOperationException($"no corpus files matching {pattern} in {folder}");
        return files;
    }

    /// <summary>The text of every corpus file matching <paramref name="pattern"/>.</summary>
    public static string[] Texts(string parser, string pattern = "*") => Files(parser, pattern).Select(File.ReadAllText).ToArray();
}

/// <summary>A temporary folder deleted on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    private int _counter;

    public TempFolder(string prefix) => Path = TestPaths.NewTempDir(prefix);

    public string Path { get; }

    /// <summary>Writes <paramref name="bytes"/> to a fresh file in the folder and returns its path.</summary>
    public string Write(byte[] bytes, string extension = ".bin")
    {
        string path = System.IO.Path.Combine(Path, $"input{Interlocked.Increment(ref _counter)}{extension}");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
