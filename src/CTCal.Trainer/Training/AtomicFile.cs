using System.Text;
using CTCal.Core.Diagnostics;

namespace CTCal.Trainer.Training;

/// <summary>
/// Files written through a temp file in the same folder (<c>.name.GUID.tmp</c>, which
/// <see cref="OutputFolder.RemoveStaleTemporaryFiles"/> clears after a kill), flushed to disk, then renamed over the
/// target: a reader sees the old file or the new one, never a part.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="text"/> (UTF-8, no BOM) to <paramref name="path"/>, creating its folder.</summary>
    public static void WriteText(string path, string text) =>
        Replace(path, temp =>
        {
            using var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            using (var writer = new StreamWriter(stream, new UTF8Encoding(false), leaveOpen: true))
                writer.Write(text);
            stream.Flush(flushToDisk: true);
        });

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/>, creating its folder.</summary>
    public static void WriteBytes(string path, byte[] bytes) =>
        Replace(path, temp =>
        {
            using var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        });

    /// <summary>Copies <paramref name="source"/> to <paramref name="destination"/>, creating its folder.</summary>
    public static void Copy(string source, string destination) =>
        Replace(destination, temp =>
        {
            File.Copy(source, temp);
            using var stream = new FileStream(temp, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            stream.Flush(flushToDisk: true);
        });

    private static void Replace(string path, Action<string> writeTemp)
    {
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        string temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            writeTemp(temp);
            if (FaultPoints.IsArmed) FaultPoints.Reached($"atomic-file.before-rename:{Path.GetFileName(full)}");
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            throw;
        }
    }
}
