using CTCal.Synthetic;

namespace CTCal.MainJob;

/// <summary>Lays PNG files out as one picture: rows x columns of cells on white, 2 px gaps (the reports' comparison grids).</summary>
public static class ImageGrid
{
    /// <summary>Gap between cells and around the grid, in pixels.</summary>
    public const int Gap = 2;

    /// <summary>
    /// The grid of <paramref name="rows"/> (each a list of PNG paths; null or a missing file leaves its cell white), every
    /// cell as large as the largest image; null when no file exists.
    /// </summary>
    public static RgbaImage? Compose(IReadOnlyList<IReadOnlyList<string?>> rows)
    {
        var cells = rows.Select(r => r.Select(f => f is not null && File.Exists(f) ? RgbaImage.Load(f) : null).ToList()).ToList();
        var present = cells.SelectMany(r => r).Where(c => c is not null).Select(c => c!).ToList();
        if (present.Count == 0) return null;
        int side = present.Max(c => Math.Max(c.Width, c.Height));
        int columns = cells.Max(r => r.Count);
        int width = (columns * (side + Gap)) + Gap, height = (cells.Count * (side + Gap)) + Gap;
        var pixels = new byte[width * height * 4];
        Array.Fill(pixels, (byte)255);
        for (int r = 0; r < cells.Count; r++)
        {
            for (int c = 0; c < cells[r].Count; c++)
            {
                if (cells[r][c] is not { } image) continue;
                int x0 = Gap + (c * (side + Gap)), y0 = Gap + (r * (side + Gap));
                for (int y = 0; y < image.Height; y++)
                    Array.Copy(image.Pixels, y * image.Width * 4, pixels, (((y0 + y) * width) + x0) * 4, image.Width * 4);
            }
        }

        return new RgbaImage(width, height, pixels);
    }
}
