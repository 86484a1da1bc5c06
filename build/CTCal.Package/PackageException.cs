namespace CTCal.Package;

/// <summary>A package could not be built or is not laid out as a host needs it; the message says what and where.</summary>
public sealed class PackageException : Exception
{
    public PackageException(string message)
        : base(message)
    {
    }
}
