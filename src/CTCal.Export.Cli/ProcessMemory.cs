using System.Globalization;

namespace CTCal.Export.Cli;

/// <summary>The process's resident memory from <c>/proc/self/status</c> (Linux; 0 elsewhere).</summary>
internal static class ProcessMemory
{
    /// <summary>VmHWM: the peak resident set since the start or the last <see cref="ResetPeak"/>.</summary>
    public static long PeakResidentBytes() => ReadStatus("VmHWM");

    /// <summary>VmRSS: the resident set now.</summary>
    public static long ResidentBytes() => ReadStatus("VmRSS");

    /// <summary>
    /// Writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS (Linux &gt;= 4.0), so a later peak covers what
    /// ran after it alone. Where that is refused the peak also covers what ran before.
    /// </summary>
    public static void ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // peak then includes weight generation, which streams and stays small
        }
    }

    private static long ReadStatus(string key)
    {
        if (!File.Exists("/proc/self/status")) return 0;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith(key + ":", StringComparison.Ordinal)) continue;
            string[] parts = line[(key.Length + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;
        }
        return 0;
    }
}
