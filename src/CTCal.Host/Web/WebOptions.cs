using System.Net;

namespace CTCal.Host.Web;

/// <summary>
/// Where and how <c>ctcal-host serve</c> listens. Loopback only unless <see cref="AllowRemote"/> is set together with a
/// <see cref="Token"/>; <see cref="Check"/> refuses anything else before a socket is opened.
/// </summary>
/// <param name="Bind">Address to listen on (<c>127.0.0.1</c>, <c>::1</c>, <c>localhost</c>, or an address of this machine).</param>
/// <param name="Port">TCP port (0: any free port, printed at start).</param>
/// <param name="OutputFolder">Gallery folder.</param>
/// <param name="AllowRemote">Accept a non-loopback <see cref="Bind"/>.</param>
/// <param name="Token">Required on every request when set (header <c>X-CTCal-Token</c> or query <c>token</c>).</param>
public sealed record WebOptions(string Bind, int Port, string OutputFolder, bool AllowRemote = false, string? Token = null)
{
    /// <summary>Default port (the one image-generation web UIs commonly use).</summary>
    public const int DefaultPort = 7860;

    /// <summary>Smallest token length accepted.</summary>
    public const int MinTokenLength = 16;

    /// <summary>The address to bind; throws <see cref="ArgumentException"/> naming the option for a refused configuration.</summary>
    public IPAddress Check()
    {
        if (Port is < 0 or > 65535)
        {
            throw new ArgumentException($"--port {Port} is not a TCP port (0-65535)");
        }

        IPAddress address = Bind == "localhost" ? IPAddress.Loopback
            : IPAddress.TryParse(Bind, out var parsed) ? parsed
            : throw new ArgumentException($"--bind '{Bind}' is not an IP address (use 127.0.0.1, ::1 or localhost)");
        if (Token is not null && Token.Length < MinTokenLength)
        {
            throw new ArgumentException($"--token must be at least {MinTokenLength} characters");
        }

        if (!IPAddress.IsLoopback(address))
        {
            if (!AllowRemote)
            {
                throw new ArgumentException($"--bind {Bind} is not a loopback address: the web host has no user accounts, so it listens on loopback only unless --allow-remote and --token are given");
            }

            if (Token is null)
            {
                throw new ArgumentException($"--bind {Bind} with --allow-remote needs --token (at least {MinTokenLength} characters), required on every request");
            }
        }

        return address;
    }
}
