namespace CTCal.Hosting;

/// <summary>
/// A plugin compiled against another version of <c>CTCal.Contracts</c> than the host's. Refused before composition, so the
/// host never meets the type-load or missing-method errors a mismatched boundary would raise later.
/// </summary>
public sealed class ContractsVersionMismatchException : Exception
{
    public ContractsVersionMismatchException(string pluginId, string assemblyPath, Version pluginContracts, Version hostContracts)
        : base($"Plugin {pluginId} ({assemblyPath}) was built against CTCal.Contracts {pluginContracts}, but this host has CTCal.Contracts {hostContracts}: "
            + $"install a build of the plugin for contracts {hostContracts}, or a host with contracts {pluginContracts}")
    {
        PluginId = pluginId;
        PluginContracts = pluginContracts;
        HostContracts = hostContracts;
    }

    public string PluginId { get; }

    /// <summary>The contracts version the plugin was compiled against.</summary>
    public Version PluginContracts { get; }

    /// <summary>The contracts version loaded in the host.</summary>
    public Version HostContracts { get; }
}
