using System.Text;
using CTCal.Core.IO;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// The one atomic-write helper (trainer, ctcal-host and ctcal-main write through it). The kill between the flush and the
/// rename (<c>atomic-file.before-rename:&lt;file&gt;</c>) is exercised by the trainer's fault-injection tests.
/// </summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-atomic");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void WritesTextAsUtf8WithoutBomCreatingTheFolder()
    {
        string path = Path.Combine(_dir, "a", "b", "x.json");
        AtomicFile.WriteText(path, "{\"é\":1}");
        Assert.Equal(Encoding.UTF8.GetBytes("{\"é\":1}"), File.ReadAllBytes(path));
        AtomicFile.WriteText(path, "replaced");
        Assert.Equal("replaced", File.ReadAllText(path));
        Assert.Equal(new[] { "x.json" }, Directory.GetFiles(Path.GetDirectoryName(path)!).Select(Path.GetFileName));
    }

    [Fact]
    public void WritesBytesAndStreams()
    {
        string bytes = Path.Combine(_dir, "x.bin");
        AtomicFile.WriteBytes(bytes, new byte[] { 1, 2, 3 });
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(bytes));

        string streamed = Path.Combine(_dir, "y.bin");
        AtomicFile.Write(streamed, s => s.Write(new byte[] { 4, 5 }));
        Assert.Equal(new byte[] { 4, 5 }, File.ReadAllBytes(streamed));
    }

    [Fact]
    public void AFailedWriteLeavesTheOldFileAndNoTemporaryFile()
    {
        string path = Path.Combine(_dir, "keep.txt");
        AtomicFile.WriteText(path, "old");
        var ex = Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[] { 1 });
            throw new InvalidOperationException("encoder failed");
        }));
        Assert.Equal("encoder failed", ex.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(new[] { "keep.txt" }, Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void CopiesAndKeepsTheLastWriteTimeWhenAsked()
    {
        string source = Path.Combine(_dir, "source.bin");
        File.WriteAllBytes(source, new byte[] { 9, 8, 7 });
        var stamp = new DateTime(2020, 1, 2, 3, 4, 5, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(source, stamp);

        string kept = Path.Combine(_dir, "out", "kept.bin");
        AtomicFile.Copy(source, kept, keepLastWriteTime: true);
        Assert.Equal(new byte[] { 9, 8, 7 }, File.ReadAllBytes(kept));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(kept));

        string plain = Path.Combine(_dir, "out", "plain.bin");
        AtomicFile.Copy(source, plain);
        Assert.Equal(new byte[] { 9, 8, 7 }, File.ReadAllBytes(plain));
        Assert.Equal(new[] { "kept.bin", "plain.bin" }, Directory.GetFiles(Path.Combine(_dir, "out")).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void TheTemporaryFileIsHiddenBesideTheTarget()
    {
        string temp = AtomicFile.TemporaryPath(_dir, "model_index.json");
        Assert.Equal(_dir, Path.GetDirectoryName(temp));
        Assert.Matches(@"^\.model_index\.json\.[0-9a-f]{32}\.tmp$", Path.GetFileName(temp));
    }
}
