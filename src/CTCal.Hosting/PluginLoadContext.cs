using System.Reflection;
using System.Runtime.Loader;

namespace CTCal.Hosting;

/// <summary>
/// Isolates one plugin: its dependencies come from its own folder (through its <c>.deps.json</c>), except the
/// assemblies that form the host/plugin boundary, which always come from the host so both sides see the same types.
/// Native libraries (for example ONNX Runtime) are resolved from the plugin's folder too.
/// </summary>
public sealed class PluginLoadContext : AssemblyLoadContext
{
    private readonly AssemblyDependencyResolver _resolver;

    public PluginLoadContext(string pluginId, string assemblyPath)
        : base($"plugin:{pluginId}", isCollectible: false)
    {
        _resolver = new AssemblyDependencyResolver(assemblyPath);
    }

    /// <summary>
    /// Assemblies always taken from the host: the contracts, System.Composition's attribute/metadata types, and
    /// System.Text.Json (its <c>JsonElement</c> carries the plugin settings across the boundary).
    /// </summary>
    public static bool IsShared(AssemblyName name) =>
        name.Name is not null
        && (name.Name is "CTCal.Contracts" or "System.Text.Json" || name.Name.StartsWith("System.Composition", StringComparison.Ordinal));

    protected override Assembly? Load(AssemblyName assemblyName)
    {
        if (IsShared(assemblyName))
        {
            return null; // fall back to the host's (default) context
        }

        string? path = _resolver.ResolveAssemblyToPath(assemblyName);
        return path is null ? null : LoadFromAssemblyPath(path);
    }

    protected override IntPtr LoadUnmanagedDll(string unmanagedDllName)
    {
        string? path = _resolver.ResolveUnmanagedDllToPath(unmanagedDllName);
        return path is null ? IntPtr.Zero : LoadUnmanagedDllFromPath(path);
    }
}
