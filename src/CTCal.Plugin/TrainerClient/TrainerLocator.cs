namespace CTCal.Plugin.TrainerClient;

/// <summary>
/// Where the fine-tuner finds <c>ctcal-train</c>: the <c>trainerPath</c> setting when given (it always wins), else the
/// sidecar a plugin package carries in <c>trainer/</c> beside the plugin assembly (build/CTCal.Package), else PATH.
/// </summary>
internal static class TrainerLocator
{
    /// <summary>The package's trainer folder, relative to the plugin folder.</summary>
    public const string PackagedFolder = "trainer";

    /// <summary>The trainer's file name on this platform (<c>ctcal-train</c>, <c>ctcal-train.exe</c> on Windows).</summary>
    public static string FileName => OperatingSystem.IsWindows() ? CtcalFineTuner.TrainerName + ".exe" : CtcalFineTuner.TrainerName;

    /// <summary>The packaged sidecar inside <paramref name="pluginDirectory"/>, or null when there is none.</summary>
    public static string? Packaged(string? pluginDirectory)
    {
        if (string.IsNullOrEmpty(pluginDirectory))
        {
            return null;
        }

        string candidate = Path.Combine(pluginDirectory, PackagedFolder, FileName);
        return File.Exists(candidate) ? candidate : null;
    }

    /// <summary>The trainer to run, or null when neither the setting, the package nor PATH has one.</summary>
    public static string? Find(string? trainerPathSetting, string? pluginDirectory) =>
        trainerPathSetting ?? Packaged(pluginDirectory) ?? TrainerSidecar.FindOnPath(CtcalFineTuner.TrainerName);
}
