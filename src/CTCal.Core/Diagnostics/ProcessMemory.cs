using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace CTCal.Core.Diagnostics;

/// <summary>
/// Resident memory of this process, for the benchmarks (<c>ctcal-train bench step</c>, <c>ctcal-export bench</c>, the pipeline bench). On Linux: <c>VmRSS</c> and the high-water mark <c>VmHWM</c> from
/// <c>/proc/self/status</c>; the mark is reset by writing 5 to <c>/proc/self/clear_refs</c> when the kernel allows it, and
/// glibc is told to serve every allocation of 64 KiB or more by mmap and to trim its heap, so freed tensors leave the
/// resident set at once and RSS follows what is alive. Elsewhere: <see cref="Process.WorkingSet64"/> and
/// <see cref="Process.PeakWorkingSet64"/> (the peak cannot be reset there).
/// </summary>
public static class ProcessMemory
{
    private const int MmapThreshold = -3; // glibc M_MMAP_THRESHOLD

    /// <summary>Where <see cref="Peak"/> comes from: <c>vmhwm-reset</c>, <c>vmhwm-lifetime</c> or <c>peak-working-set</c>.</summary>
    public static string PeakSource { get; private set; } = OperatingSystem.IsLinux() ? "vmhwm-lifetime" : "peak-working-set";

    /// <summary>Makes freed memory leave the resident set (Linux/glibc; a no-op elsewhere or without glibc).</summary>
    public static void ReturnFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            mallopt(MmapThreshold, 64 * 1024);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc: RSS may include freed heap memory
        }
    }

    /// <summary>Gives freed heap memory back to the system (glibc <c>malloc_trim</c>).</summary>
    public static void Trim()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            malloc_trim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // not glibc
        }
    }

    /// <summary>Current resident set size in bytes.</summary>
    public static long Resident() => OperatingSystem.IsLinux() ? StatusField("VmRSS:") : Current().WorkingSet64;

    /// <summary>Peak resident set size in bytes since start or the last successful <see cref="ResetPeak"/>.</summary>
    public static long Peak() => OperatingSystem.IsLinux() ? StatusField("VmHWM:") : Current().PeakWorkingSet64;

    /// <summary>Resets the peak to the current RSS where the kernel allows it; returns whether it did.</summary>
    public static bool ResetPeak()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        bool reset = Peak() <= Resident() + 4 * 1024 * 1024;
        if (reset) PeakSource = "vmhwm-reset";
        return reset;
    }

    private static Process Current()
    {
        var process = Process.GetCurrentProcess();
        process.Refresh();
        return process;
    }

    private static long StatusField(string name)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (!line.StartsWith(name, StringComparison.Ordinal)) continue;
            var parts = line[name.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024; // kB
        }
        throw new InvalidDataException($"/proc/self/status has no {name} line");
    }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int mallopt(int parameter, int value);

    [DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int malloc_trim(nuint pad);
}
