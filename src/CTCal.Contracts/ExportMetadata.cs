namespace CTCal.Contracts;

/// <summary>
/// Keys of the <c>[ExportMetadata]</c> every CTCal plugin export carries. The plugin writes
/// <c>[ExportMetadata(PluginMetadataKeys.Id, "ctcal.onnx")]</c>; the host reads them through
/// <see cref="PluginExportMetadata"/> without creating the part.
/// </summary>
public static class PluginMetadataKeys
{
    /// <summary>Stable machine id of the export (for example <c>ctcal.onnx.generator</c>).</summary>
    public const string Id = "Id";

    /// <summary>Display name.</summary>
    public const string Name = "Name";

    /// <summary>Version of the implementation (semantic version string).</summary>
    public const string Version = "Version";
}

/// <summary>
/// Metadata view for CTCal exports: import <c>Lazy&lt;IImageGenerator, PluginExportMetadata&gt;</c> to read the
/// metadata before (or without) constructing the part. Missing keys fail composition, so every export must declare all three.
/// </summary>
public sealed class PluginExportMetadata
{
    /// <summary>See <see cref="PluginMetadataKeys.Id"/>.</summary>
    public string Id { get; set; } = "";

    /// <summary>See <see cref="PluginMetadataKeys.Name"/>.</summary>
    public string Name { get; set; } = "";

    /// <summary>See <see cref="PluginMetadataKeys.Version"/>.</summary>
    public string Version { get; set; } = "";

    /// <inheritdoc />
    public override string ToString() => $"{Id} ({Name} {Version})";
}
