namespace CTCal.Synthetic;

/// <summary>The object colours of the synthetic world (caption words are the lower-case names).</summary>
public enum ShapeColor { Red, Green, Blue, Yellow, Purple, Orange }

/// <summary>An sRGB colour with 8-bit channels.</summary>
public readonly record struct Rgb(byte R, byte G, byte B);

/// <summary>A colour in CIELAB (D65 white point).</summary>
public readonly record struct Lab(double L, double A, double B)
{
    /// <summary>CIE76 colour difference (Euclidean distance in Lab).</summary>
    public double DeltaE(Lab other)
    {
        double dl = L - other.L, da = A - other.A, db = B - other.B;
        return Math.Sqrt(dl * dl + da * da + db * db);
    }
}

/// <summary>
/// The fixed palette: six saturated object colours on a plain light background, picked to be far apart in CIELAB
/// (every pair, background included, is more than 30 ΔE76 apart) so they stay separable under noise and blur.
/// </summary>
public static class Palette
{
    /// <summary>The plain light background.</summary>
    public static Rgb Background { get; } = new(240, 240, 234);

    /// <summary>All object colours, in enum order.</summary>
    public static IReadOnlyList<ShapeColor> All { get; } = Enum.GetValues<ShapeColor>();

    /// <summary>The sRGB value an object of <paramref name="color"/> is painted with.</summary>
    public static Rgb ToRgb(ShapeColor color) => color switch
    {
        ShapeColor.Red => new Rgb(214, 36, 36),
        ShapeColor.Green => new Rgb(30, 158, 62),
        ShapeColor.Blue => new Rgb(36, 78, 214),
        ShapeColor.Yellow => new Rgb(240, 206, 24),
        ShapeColor.Purple => new Rgb(140, 48, 172),
        ShapeColor.Orange => new Rgb(246, 128, 18),
        _ => throw new ArgumentOutOfRangeException(nameof(color), color, "unknown colour"),
    };

    /// <summary>The caption word ("red", "green", ...).</summary>
    public static string Word(ShapeColor color) => color.ToString().ToLowerInvariant();

    /// <summary>Parses a caption word; throws naming the word when it is not a palette colour.</summary>
    public static ShapeColor Parse(string word)
    {
        foreach (var c in All)
        {
            if (Word(c) == word) return c;
        }
        throw new FormatException($"'{word}' is not a palette colour (expected one of {string.Join(", ", All.Select(Word))})");
    }

    /// <summary>sRGB (0..255 per channel, fractional allowed) to CIELAB, D65.</summary>
    public static Lab ToLab(double r, double g, double b)
    {
        double lr = Linear(r / 255.0), lg = Linear(g / 255.0), lb = Linear(b / 255.0);
        double x = (0.4124564 * lr + 0.3575761 * lg + 0.1804375 * lb) / 0.95047;
        double y = 0.2126729 * lr + 0.7151522 * lg + 0.0721750 * lb;
        double z = (0.0193339 * lr + 0.1191920 * lg + 0.9503041 * lb) / 1.08883;
        double fx = F(x), fy = F(y), fz = F(z);
        return new Lab(116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz));

        static double Linear(double c)
        {
            c = Math.Clamp(c, 0, 1);
            return c <= 0.04045 ? c / 12.92 : Math.Pow((c + 0.055) / 1.055, 2.4);
        }

        static double F(double t) => t > 216.0 / 24389 ? Math.Cbrt(t) : (24389.0 / 27 * t + 16) / 116;
    }

    /// <summary>CIELAB of an sRGB colour.</summary>
    public static Lab ToLab(Rgb c) => ToLab(c.R, c.G, c.B);
}
