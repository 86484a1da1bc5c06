using System.Reflection;

namespace CTCal.Host.Web;

/// <summary>The pages' HTML, CSS and JavaScript, embedded in the host assembly (<c>Web/wwwroot</c>; no build step).</summary>
internal static class StaticAssets
{
    private const string Prefix = "wwwroot/";

    /// <summary>The bytes and content type of <paramref name="name"/> (<c>index.html</c>, <c>app.js</c>, ...), or null.</summary>
    public static (byte[] Bytes, string ContentType)? Find(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(Prefix + name);
        if (stream is null)
        {
            return null;
        }

        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        string type = Path.GetExtension(name) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            ".svg" => "image/svg+xml",
            _ => "application/octet-stream",
        };
        return (copy.ToArray(), type);
    }
}
