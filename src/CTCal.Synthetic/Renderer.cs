using System.Runtime.InteropServices;
using SkiaSharp;

namespace CTCal.Synthetic;

/// <summary>
/// Draws a <see cref="Scene"/> with SkiaSharp: plain <see cref="Palette.Background"/>, filled anti-aliased shapes in
/// their palette colours, and the per-subject masks of its objects. A pure function of the scene (same scene, same pixels).
/// </summary>
public static class Renderer
{
    /// <summary>Renders <paramref name="scene"/> to a new RGBA image.</summary>
    public static RgbaImage Render(Scene scene)
    {
        var info = new SKImageInfo(scene.Width, scene.Height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var bitmap = new SKBitmap(info);
        using (var canvas = new SKCanvas(bitmap))
        {
            var bg = Palette.Background;
            canvas.Clear(new SKColor(bg.R, bg.G, bg.B));
            using var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill };
            foreach (var obj in scene.Objects)
            {
                var c = Palette.ToRgb(obj.Color);
                paint.Color = new SKColor(c.R, c.G, c.B);
                Draw(canvas, obj, paint);
            }
        }
        byte[] pixels = new byte[info.BytesSize];
        Marshal.Copy(bitmap.GetPixels(), pixels, 0, pixels.Length);
        return new RgbaImage(scene.Width, scene.Height, pixels);
    }

    /// <summary>
    /// The subject mask of <paramref name="objects"/> on a <paramref name="width"/> x <paramref name="height"/> canvas:
    /// one byte per pixel, row-major, 255 where a pixel is at least half covered by one of the objects and 0 elsewhere.
    /// Each object is drawn exactly as <see cref="Render"/> draws it (same geometry, anti-aliased coverage), in white on
    /// black, and the coverage is thresholded at 50%: the same pixels a single-object render shows closer to the object's
    /// colour than to the background.
    /// </summary>
    public static byte[] RenderMask(int width, int height, IEnumerable<SceneObject> objects)
    {
        ArgumentNullException.ThrowIfNull(objects);
        var info = new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.Black);
            using var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill, Color = SKColors.White };
            foreach (var obj in objects) Draw(canvas, obj, paint);
        }
        byte[] mask = new byte[width * height];
        var pixels = bitmap.GetPixelSpan();
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++) mask[y * width + x] = pixels[y * bitmap.RowBytes + x] >= 128 ? (byte)255 : (byte)0;
        }
        return mask;
    }

    /// <summary>Draws one object with <paramref name="paint"/>: the one place the shapes' outlines become pixels.</summary>
    private static void Draw(SKCanvas canvas, SceneObject obj, SKPaint paint)
    {
        if (obj.Shape == ShapeKind.Circle)
        {
            canvas.DrawCircle((float)obj.X, (float)obj.Y, (float)(obj.Size / 2), paint);
            return;
        }
        using var builder = new SKPathBuilder();
        var pts = Shapes.Polygon(obj.Shape, obj.X, obj.Y, obj.Size);
        builder.MoveTo((float)pts[0].X, (float)pts[0].Y);
        for (int i = 1; i < pts.Length; i++) builder.LineTo((float)pts[i].X, (float)pts[i].Y);
        builder.Close();
        using var path = builder.Detach();
        canvas.DrawPath(path, paint);
    }
}
