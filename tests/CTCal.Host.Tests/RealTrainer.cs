using System.Diagnostics;
using System.Reflection;
using Xunit;

namespace CTCal.Host.Tests;

/// <summary>
/// The real <c>ctcal-train</c> as a host root's trainer sidecar: its build output (bin/&lt;Configuration&gt;/net10.0, built
/// before the tests through the project's build-order-only reference) laid out inside the root, where the plugin accepts
/// <c>settings.trainerPath</c>. The output carries libtorch (about 1.4 GB), so its files are hard-linked (<c>cp -al</c>,
/// POSIX), and copied only where the root is on another file system; its <c>logs/</c> folder is left out, so the copy's
/// log never appends to the build output's.
/// </summary>
internal static class RealTrainer
{
    /// <summary>The trainer's build output folder, found without referencing its assembly.</summary>
    public static string BuildOutput
    {
        get
        {
            string configured = typeof(RealTrainer).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .First(a => a.Key == "TrainerBuildOutput").Value!;
            if (File.Exists(Path.Combine(configured, "ctcal-train.dll")))
            {
                return configured;
            }

            // A build with CTCAL_ARTIFACTS set (Directory.Build.props) puts it under the artifacts folder instead.
            string? artifacts = Environment.GetEnvironmentVariable("CTCAL_ARTIFACTS");
            string artifactsBin = Path.Combine(artifacts ?? "", "bin", "CTCal.Trainer.Cli");
            string? built = artifacts is not null && Directory.Exists(artifactsBin)
                ? Directory.EnumerateFiles(artifactsBin, "ctcal-train.dll", SearchOption.AllDirectories).FirstOrDefault()
                : null;
            if (built is not null)
            {
                return Path.GetDirectoryName(built)!;
            }

            throw new DirectoryNotFoundException($"ctcal-train build output not found at {configured}; build CTCal.Trainer.Cli first");
        }
    }

    /// <summary>Lays the build output out as <paramref name="folder"/> (which must not exist) and returns its <c>ctcal-train</c> executable.</summary>
    public static string LinkInto(string folder)
    {
        string source = Path.TrimEndingDirectorySeparator(BuildOutput);
        Directory.CreateDirectory(Path.GetDirectoryName(folder)!);
        if (Run("cp", ["-al", source, folder]) is { } linkError)
        {
            if (Directory.Exists(folder))
            {
                Directory.Delete(folder, true);
            }

            foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
            {
                string destination = Path.Combine(folder, Path.GetRelativePath(source, file));
                Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
                File.Copy(file, destination);
            }

            Trace.WriteLine($"hard links refused ({linkError.Trim()}); copied the trainer instead");
        }

        string logs = Path.Combine(folder, "logs");
        if (Directory.Exists(logs))
        {
            Directory.Delete(logs, true);
        }

        string trainer = Path.Combine(folder, "ctcal-train");
        Assert.True(File.Exists(trainer), $"no ctcal-train executable in {source}");
        return trainer;
    }

    /// <summary>Runs <paramref name="trainer"/> with <paramref name="arguments"/> and fails with its output unless it exits 0.</summary>
    public static void Invoke(string trainer, params string[] arguments)
    {
        string? error = Run(trainer, arguments);
        Assert.True(error is null, $"{trainer} {string.Join(' ', arguments)}: {error}");
    }

    /// <summary>Runs a program to its end; null when it exits 0, else its exit code and output.</summary>
    private static string? Run(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return process.ExitCode == 0 ? null : $"exit {process.ExitCode}\n{stdout.Result}\n{stderr.Result}";
    }
}
