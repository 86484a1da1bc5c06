using System.Runtime.InteropServices;
using SkiaSharp;

namespace CTCal.Synthetic;

/// <summary>
/// Draws a <see cref="Scene"/> with SkiaSharp: plain <see cref="Palette.Background"/>, filled anti-aliased shapes in
/// their palette colours. A pure function of the scene (same scene, same pixels).
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
                if (obj.Shape == ShapeKind.Circle)
                {
                    canvas.DrawCircle((float)obj.X, (float)obj.Y, (float)(obj.Size / 2), paint);
                    continue;
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
        byte[] pixels = new byte[info.BytesSize];
        Marshal.Copy(bitmap.GetPixels(), pixels, 0, pixels.Length);
        return new RgbaImage(scene.Width, scene.Height, pixels);
    }
}
