using System.Diagnostics;

namespace CTCal.Tests;

/// <summary>
/// Start information for one of the project's executables copied next to a test assembly (<c>ctcal-train.dll</c>,
/// <c>ctcal-host.dll</c>, ...), run through the same <c>dotnet</c> host as the tests, with arguments as a list (no shell)
/// and stdout/stderr redirected.
/// </summary>
internal static class DotnetApp
{
    /// <param name="environment">variables set (or, with a null value, removed) in the child's environment only.</param>
    public static ProcessStartInfo StartInfo(string dllName, string workingDirectory, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string?>? environment = null)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, dllName);
        if (!File.Exists(dll)) throw new FileNotFoundException($"{dllName} was not copied next to the tests: {dll}", dll);
        var start = new ProcessStartInfo(Host())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null) start.Environment.Remove(name);
            else start.Environment[name] = value;
        }
        start.ArgumentList.Add(dll);
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        return start;
    }

    /// <summary>The dotnet host running the tests (DOTNET_HOST_PATH when the CLI set it), else <c>dotnet</c> on PATH.</summary>
    public static string Host()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host)) return host;
        string? current = Environment.ProcessPath;
        if (current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        return "dotnet";
    }
}
