using System.Text;
using CTCal.Core.Diagnostics;

namespace CTCal.Core.IO;

/// <summary>
/// Files replaced in one step: written to a temporary file in the same folder (<c>.name.GUID.tmp</c>, a name no reader
/// looks for and which the trainer's <c>OutputFolder.RemoveStaleTemporaryFiles</c> clears after a kill), flushed to
/// disk, then renamed over the target. A reader sees the old file or the new one, never a part. The folder is created
/// when missing. On failure the temporary file is removed and the target is left as it was.
/// </summary>
/// <remarks>
/// Between the flush and the rename every write reaches the fault point <c>atomic-file.before-rename:&lt;file name&gt;</c>
/// (<see cref="FaultPoints"/>, docs/hardening.md "Core fault points"), in whichever process writes it (ctcal-train,
/// ctcal-host, ctcal-main).
/// </remarks>
public static class AtomicFile
{
    /// <summary>The fault point reached before the rename, followed by the target's file name.</summary>
    public const string BeforeRenamePoint = "atomic-file.before-rename:";

    /// <summary>Writes <paramref name="text"/> (UTF-8, no BOM) to <paramref name="path"/>.</summary>
    public static void WriteText(string path, string text) =>
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, new UTF8Encoding(false), bufferSize: 1 << 16, leaveOpen: true);
            writer.Write(text);
        });

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/>.</summary>
    public static void WriteBytes(string path, byte[] bytes) => Write(path, stream => stream.Write(bytes, 0, bytes.Length));

    /// <summary>Writes what <paramref name="write"/> puts into the stream (an encoder, a serializer) to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        Replace(path, BeforeRenamePoint, temp =>
        {
            using var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
            write(stream);
            stream.Flush(flushToDisk: true);
        });
    }

    /// <summary>
    /// Copies <paramref name="source"/> to <paramref name="destination"/>; with <paramref name="keepLastWriteTime"/> the
    /// copy gets the source's last write time before it is renamed into place (so a later size-and-time check sees it
    /// as up to date only once it is complete).
    /// </summary>
    public static void Copy(string source, string destination, bool keepLastWriteTime = false) =>
        Replace(destination, BeforeRenamePoint, temp =>
        {
            File.Copy(source, temp);
            using (var stream = new FileStream(temp, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            {
                stream.Flush(flushToDisk: true);
            }

            if (keepLastWriteTime)
            {
                File.SetLastWriteTimeUtc(temp, File.GetLastWriteTimeUtc(source));
            }
        });

    /// <summary>
    /// The one replace-by-rename: <paramref name="writeTemp"/> creates and flushes the temporary file it is given, then
    /// the fault point <paramref name="faultPoint"/> + file name is reached and the file renamed over <paramref name="path"/>.
    /// Other writers of a format (the safetensors writer) use it with their own fault point name, and without
    /// <paramref name="createFolder"/> where a missing folder is the caller's error.
    /// </summary>
    internal static void Replace(string path, string faultPoint, Action<string> writeTemp, bool createFolder = true)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full) ?? ".";
        if (createFolder) Directory.CreateDirectory(folder);
        string name = Path.GetFileName(full);
        string temp = TemporaryPath(folder, name);
        try
        {
            writeTemp(temp);
            if (FaultPoints.IsArmed) FaultPoints.Reached(faultPoint + name);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }

            throw;
        }
    }

    /// <summary>The temporary file used for <paramref name="fileName"/>: <c>.&lt;name&gt;.&lt;GUID&gt;.tmp</c> beside it.</summary>
    internal static string TemporaryPath(string folder, string fileName) => Path.Combine(folder, $".{fileName}.{Guid.NewGuid():N}.tmp");
}
