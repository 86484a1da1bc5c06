using System.Reflection;
using CTCal.Contracts;

namespace CTCal.Hosting;

/// <summary>
/// The contracts version check: a plugin's reference to <c>CTCal.Contracts</c> (read from its metadata, before any of its
/// types is touched) must name exactly the version the host has loaded. Versions differ only when a public contract type
/// changed, and then older or newer both mean types that no longer line up.
/// </summary>
public static class ContractsVersion
{
    public const string AssemblyName = "CTCal.Contracts";

    /// <summary>The version of the contracts assembly this host runs with.</summary>
    public static Version Host { get; } = typeof(IPluginContext).Assembly.GetName().Version ?? new Version(0, 0, 0, 0);

    /// <summary>The contracts version <paramref name="plugin"/> was compiled against, or null when it does not reference them.</summary>
    public static Version? ReferencedBy(Assembly plugin) =>
        plugin.GetReferencedAssemblies().FirstOrDefault(a => string.Equals(a.Name, AssemblyName, StringComparison.Ordinal))?.Version;

    /// <exception cref="ContractsVersionMismatchException">The plugin references another contracts version.</exception>
    public static void Check(string pluginId, string assemblyPath, Assembly plugin)
    {
        var referenced = ReferencedBy(plugin);
        if (referenced is not null && referenced != Host)
        {
            throw new ContractsVersionMismatchException(pluginId, assemblyPath, referenced, Host);
        }
    }
}
