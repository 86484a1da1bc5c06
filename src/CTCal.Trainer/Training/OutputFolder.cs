using CTCal.Core.IO;

namespace CTCal.Trainer.Training;

/// <summary>Checks and tidies a run's output folder before training starts.</summary>
public static class OutputFolder
{
    /// <summary>
    /// Creates <paramref name="folder"/> and its <c>checkpoints/</c> subfolder and proves both writable by writing,
    /// syncing and deleting a probe file, so a read-only or full output folder fails at start rather than at the first checkpoint.
    /// </summary>
    /// <exception cref="OutputWriteException">naming the folder that cannot be created or written.</exception>
    public static void EnsureWritable(string folder)
    {
        foreach (string path in new[] { folder, Path.Combine(folder, "checkpoints") })
        {
            try
            {
                Directory.CreateDirectory(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new OutputWriteException(path, $"cannot create the output folder ({e.Message})", e);
            }
            string probe = Path.Combine(path, $".ctcal-write-probe-{Guid.NewGuid():N}.tmp");
            try
            {
                using (var stream = new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 4096, FileOptions.DeleteOnClose))
                {
                    stream.Write(new byte[4096]);
                    stream.Flush(flushToDisk: true);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                TryDelete(probe);
                throw new OutputWriteException(path, $"the output folder is not writable ({e.Message})", e);
            }
        }
    }

    /// <summary>
    /// Deletes temporary files a killed run left behind (<c>.name.GUID.tmp</c>, written beside the file they replace),
    /// in the output folder, <c>checkpoints/</c>, <c>unet/</c> and <c>transformer/</c>. They are never read: checkpoints are found by their final
    /// name only. Returns how many were removed.
    /// </summary>
    public static int RemoveStaleTemporaryFiles(string folder)
    {
        int removed = 0;
        foreach (string path in new[] { folder, Path.Combine(folder, "checkpoints"), Path.Combine(folder, "unet"), Path.Combine(folder, "transformer") })
        {
            if (!Directory.Exists(path)) continue;
            foreach (string file in Directory.EnumerateFiles(path, ".*.tmp"))
                if (TryDelete(file)) removed++;
        }
        return removed;
    }

    private static bool TryDelete(string path)
    {
        try
        {
            File.Delete(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Writes <paramref name="text"/> to <paramref name="path"/> atomically (<see cref="AtomicFile.WriteText"/>).</summary>
    /// <exception cref="OutputWriteException">naming the file when it cannot be written.</exception>
    public static void WriteAllTextAtomic(string path, string text)
    {
        try
        {
            AtomicFile.WriteText(path, text);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OutputWriteException(path, $"cannot write the file ({e.Message})", e);
        }
    }
}
