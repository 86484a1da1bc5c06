namespace CTCal.Package;

/// <summary>One built package: its folder (what a host copies), its zip (or null) and sizes in bytes.</summary>
public sealed record PackageResult(string Rid, string Folder, string? Zip, PluginManifest Manifest, long FolderBytes, long? ZipBytes, long TrainerBytes)
{
    public override string ToString() =>
        $"{Rid}: {Folder} ({Mib(FolderBytes)}, trainer {Mib(TrainerBytes)})" + (Zip is null ? "" : $"; {Zip} ({Mib(ZipBytes ?? 0)})");

    public static string Mib(long bytes) => $"{bytes / (1024.0 * 1024.0):F0} MiB";

    public static long SizeOf(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
}
