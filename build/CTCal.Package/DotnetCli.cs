using System.Diagnostics;
using System.Text;

namespace CTCal.Package;

/// <summary>
/// Runs <c>dotnet</c> (arguments as a list, no shell) with the build isolated under an artifacts folder
/// (<c>CTCAL_ARTIFACTS</c>, Directory.Build.props), so a package build never writes into the repository's bin/obj folders
/// while another build or test run uses them.
/// </summary>
internal sealed class DotnetCli
{
    private readonly string _repoRoot;
    private readonly string _artifacts;
    private readonly TextWriter _log;

    public DotnetCli(string repoRoot, string artifacts, TextWriter log)
    {
        _repoRoot = repoRoot;
        _artifacts = artifacts;
        _log = log;
    }

    /// <summary>The dotnet host: DOTNET_HOST_PATH when a dotnet command started us, else <c>dotnet</c> on PATH.</summary>
    public static string Host()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        string? current = Environment.ProcessPath;
        return current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
    }

    /// <summary><c>dotnet publish</c> of <paramref name="project"/> (relative to the repository) into <paramref name="output"/>.</summary>
    /// <exception cref="PackageException">The publish failed; the message has the end of its output.</exception>
    public void Publish(string project, string output, params string[] arguments)
    {
        var start = new ProcessStartInfo(Host())
        {
            WorkingDirectory = _repoRoot,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("publish");
        start.ArgumentList.Add(Path.Combine(_repoRoot, project));
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add("Release");
        start.ArgumentList.Add("-o");
        start.ArgumentList.Add(output);
        start.ArgumentList.Add("-nologo");
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment["CTCAL_ARTIFACTS"] = _artifacts;
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        // A test host's MSBuild node settings must not leak into the nested build.
        start.Environment.Remove("MSBuildExtensionsPath");
        start.Environment.Remove("MSBUILD_EXE_PATH");
        start.Environment.Remove("MSBuildSDKsPath");

        _log.WriteLine($"dotnet {string.Join(' ', start.ArgumentList)}");
        var watch = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new PackageException("dotnet did not start");
        var collected = new StringBuilder();
        process.OutputDataReceived += (_, e) => Append(collected, e.Data);
        process.ErrorDataReceived += (_, e) => Append(collected, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            string all = collected.ToString();
            throw new PackageException($"dotnet publish {project} failed (exit {process.ExitCode}):{Environment.NewLine}{Tail(all, 6000)}");
        }

        _log.WriteLine($"  done in {watch.Elapsed.TotalSeconds:F0} s");
    }

    private static void Append(StringBuilder into, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (into)
        {
            into.AppendLine(line);
        }
    }

    private static string Tail(string text, int length) => text.Length <= length ? text : text[^length..];
}
