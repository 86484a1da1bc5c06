using System.Reflection;
using System.Runtime.CompilerServices;
using CTCal.Plugin;

[assembly: InternalsVisibleTo("CTCal.Plugin.Tests")]
[assembly: InternalsVisibleTo("CTCal.Integration.Tests")]

// Read by the package builder (build/CTCal.Package) for the manifest beside the DLL, without running plugin code.
[assembly: AssemblyMetadata("CTCal.PluginId", PluginInfo.PackageId)]
[assembly: AssemblyMetadata("CTCal.PluginVersion", PluginInfo.Version)]
[assembly: AssemblyMetadata("CTCal.Families", PluginInfo.Families)]
[assembly: AssemblyMetadata("CTCal.ExecutionProviders", PluginInfo.BuiltInExecutionProviders)]
