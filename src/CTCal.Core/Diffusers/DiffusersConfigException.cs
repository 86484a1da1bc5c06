namespace CTCal.Core.Diffusers;

/// <summary>
/// Thrown when a diffusers or transformers configuration file cannot be read: unreadable file, invalid JSON,
/// a missing required field or a value of the wrong kind. The message names the file and the field.
/// </summary>
public sealed class DiffusersConfigException : Exception
{
    public DiffusersConfigException(string file, string? field, string message, Exception? inner = null)
        : base(field is null ? $"{file}: {message}" : $"{file}: field '{field}': {message}", inner)
    {
        File = file;
        Field = field;
    }

    /// <summary>The configuration file at fault.</summary>
    public string File { get; }

    /// <summary>The field at fault, or null when the whole file is unreadable.</summary>
    public string? Field { get; }
}
