using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using CTCal.Contracts;
using CTCal.Core.IO;

namespace CTCal.Host.Web;

/// <summary>One image of the gallery: its file name, the parameters that made it and its own seed.</summary>
public sealed record GalleryItem(string File, GenerationParameters Parameters, long Seed, string ExecutionProvider, string CreatedUtc);

/// <summary>
/// The web host's output folder: each generated image as <c>NAME.png</c> (with an A1111-style <c>parameters</c> text
/// chunk) and its record <c>NAME.json</c> beside it, both written atomically (the PNG first, so a listed record always
/// has its image). Names are <c>yyyyMMdd-HHmmss-fff-MODEL-SEED[-N]</c>, so a listing sorts by time.
/// </summary>
public sealed partial class Gallery
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };
    private readonly object _names = new();

    /// <summary>Opens (and creates) the gallery in <paramref name="folder"/>.</summary>
    public Gallery(string folder)
    {
        Folder = Path.GetFullPath(folder);
        Directory.CreateDirectory(Folder);
    }

    /// <summary>The absolute output folder.</summary>
    public string Folder { get; }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\\.png$")]
    private static partial Regex FileNamePattern();

    /// <summary>Stores one image of <paramref name="result"/>, with its parameters written into the PNG and beside it.</summary>
    public GalleryItem Add(GenerationResult result, GeneratedImage image)
    {
        ArgumentNullException.ThrowIfNull(result);
        ArgumentNullException.ThrowIfNull(image);
        var parameters = result.Parameters;
        var now = DateTime.UtcNow;
        string file;
        lock (_names)
        {
            string stem = $"{now.ToString("yyyyMMdd-HHmmss-fff", CultureInfo.InvariantCulture)}-{parameters.Model}-{image.Seed.ToString(CultureInfo.InvariantCulture)}";
            file = stem + ".png";
            for (int n = 2; File.Exists(Path.Combine(Folder, file)); n++)
            {
                file = $"{stem}-{n.ToString(CultureInfo.InvariantCulture)}.png";
            }

            byte[] png = PngText.Insert(image.Png, A1111Parameters.Keyword, A1111Parameters.Format(parameters, image.Seed));
            AtomicFile.WriteBytes(Path.Combine(Folder, file), png);
        }

        var item = new GalleryItem(file, parameters with { Seed = image.Seed, BatchCount = 1 }, image.Seed, result.ExecutionProvider, now.ToString("O", CultureInfo.InvariantCulture));
        AtomicFile.WriteText(Path.Combine(Folder, Path.ChangeExtension(file, ".json")), JsonSerializer.Serialize(item, Json));
        return item;
    }

    /// <summary>Every stored image, newest first; records that cannot be read are left out.</summary>
    public IReadOnlyList<GalleryItem> List()
    {
        var items = new List<GalleryItem>();
        foreach (string json in Directory.EnumerateFiles(Folder, "*.json"))
        {
            try
            {
                var item = JsonSerializer.Deserialize<GalleryItem>(File.ReadAllText(json), Json);
                if (item is not null && File.Exists(Path.Combine(Folder, item.File)))
                {
                    items.Add(item);
                }
            }
            catch (Exception ex) when (ex is JsonException or IOException)
            {
                NLog.LogManager.GetLogger("ctcal-host").Warn("Gallery record {0} cannot be read: {1}", json, ex.Message);
            }
        }

        return items.OrderByDescending(i => i.File, StringComparer.Ordinal).ToList();
    }

    /// <summary>The full path of the gallery image <paramref name="file"/>, or null when the name is not one of its images.</summary>
    public string? PathOf(string file)
    {
        if (!FileNamePattern().IsMatch(file))
        {
            return null;
        }

        string path = Path.Combine(Folder, file);
        return File.Exists(path) ? path : null;
    }
}
