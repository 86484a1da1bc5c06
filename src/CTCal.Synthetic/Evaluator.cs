namespace CTCal.Synthetic;

/// <summary>Settings of the rule-based scorer.</summary>
public sealed record EvaluatorOptions
{
    /// <summary>Background colour the images were drawn on.</summary>
    public Rgb Background { get; init; } = Palette.Background;

    /// <summary>Components smaller than this share of the image's pixels are ignored (noise, fringes).</summary>
    public double MinComponentFraction { get; init; } = 0.004;

    /// <summary>Pixels farther than this (ΔE76) from every background-colour blend are labelled unknown and ignored.</summary>
    public double MaxResidualDeltaE { get; init; } = 40;

    /// <summary>
    /// A connected object-coloured region is one object, coloured by the palette colour nearest to the mean of its interior
    /// (pixels whose four neighbours are in the region), unless two colours each hold at least this share of the colour
    /// votes and at least the minimum component size of votes, and are more than <see cref="SplitMinDeltaE"/> apart: then
    /// each such colour's own components are objects. A pixel votes for its label only when its four neighbours carry the
    /// same label (the colour's own interior). Decoders shift hues at edges (a green triangle gets a blue rim and a teal
    /// band), which would otherwise split one object into colour fragments; a rim is thin in its own colour, a second
    /// object touching this one is not.
    /// </summary>
    public double MajorColourShare { get; init; } = 0.3;

    /// <summary>A region is split into touching objects only when two of its major colours are farther apart than this (ΔE76).</summary>
    public double SplitMinDeltaE { get; init; } = 50;

    /// <summary>
    /// A region whose interior's mean colour (CIELAB) is farther than this (ΔE76) from every palette colour is not an
    /// object (decoded hues drift: a small green triangle comes back teal with a blue rim, its interior's mean 60-75 from
    /// green and farther still from blue).
    /// </summary>
    public double MaxObjectDeltaE { get; init; } = 75;

    /// <summary>
    /// A region whose interior's mean colour has less CIELAB chroma (√(a² + b²)) than this is not an object: every palette
    /// colour is saturated (chroma 60-100) and a decoder's drift keeps well above this (a teal green triangle: ≈ 25), while
    /// greys and blacks, however near a palette colour's ΔE margin, are not.
    /// </summary>
    public double MinObjectChroma { get; init; } = 15;

    /// <summary>Pixels around a component's bounding box that its shape template is compared on.</summary>
    public int TemplateMargin { get; init; } = 3;

    /// <summary>Smallest centroid offset along a relation's axis, as a share of the image side, that counts as a relation.</summary>
    public double RelationMargin { get; init; } = 0.04;
}

/// <summary>
/// One object found in an image: colour, classified shape, centroid (pixels), area (pixels), bounds and the shape
/// features: <paramref name="Fill"/> (area / bounding-box area), <paramref name="Solidity"/> (area / convex-hull area),
/// <paramref name="TopHalf"/> (share of the pixels in the upper half of the bounding box), <paramref name="WidestRow"/>
/// (mean height, as a share of the bounding box from its top, of the rows at least 90% as wide as the widest) and
/// <paramref name="Corners"/> (covered share of the four corner triangles of the bounding box, legs a quarter of its sides);
/// these features are diagnostics, the shape comes from <see cref="ShapeTemplateFit"/>, whose runner-up margin is
/// <paramref name="TemplateMargin"/> (0: a tie between two shapes).
/// </summary>
public sealed record DetectedObject(ShapeColor Color, ShapeKind Shape, double X, double Y, int Area, Box Bounds,
    double Fill, double Solidity, double TopHalf, double WidestRow, double Corners, double TemplateMargin = double.PositiveInfinity);

/// <summary>
/// Per-image scores against a <see cref="SceneSpec"/>; each check is 1 (pass) or 0 (fail), null when it does not apply.
/// <see cref="Overall"/> is the mean of the applicable checks.
/// </summary>
public sealed record ImageScore(double? Binding, double? Counting, double? Spatial, double Overall, IReadOnlyList<DetectedObject> Objects)
{
    /// <summary>The check a category is about: binding, counting or spatial.</summary>
    public double Primary(PromptCategory category) => category switch
    {
        PromptCategory.Binding => Binding ?? 0,
        PromptCategory.Counting => Counting ?? 0,
        _ => Spatial ?? 0,
    };
}

/// <summary>
/// Scores images of the synthetic world without a learned model, in the spirit of T2I-CompBench / GenEval:
/// <list type="number">
/// <item>Smooth with a 3x3 binomial kernel (a small Gaussian) to suppress pixel noise.</item>
/// <item>Label each pixel with its nearest palette colour, background included, in CIELAB (ΔE76). Because anti-aliased
/// edges and blur mix an object colour with the background, each object colour c stands for the blend line
/// background→c: the pixel's blend weight α is its projection onto that line in sRGB, the colour whose blend
/// bg + α(c − bg) is nearest in CIELAB wins, and the pixel takes that colour when α ≥ 0.5, the background otherwise
/// (unknown when even the nearest blend is more than <see cref="EvaluatorOptions.MaxResidualDeltaE"/> away).</item>
/// <item>4-connected components of object-coloured pixels (any colour); a component's colour is the palette colour
/// nearest to the mean CIELAB of its interior (pixels whose four neighbours are in it), unless two far-apart colours
/// each have a solid core of their own (<see cref="EvaluatorOptions.MajorColourShare"/>), when each such colour's own
/// components are objects; a component whose interior is too far from every palette colour
/// (<see cref="EvaluatorOptions.MaxObjectDeltaE"/>) or too grey (<see cref="EvaluatorOptions.MinObjectChroma"/>) is not
/// an object. Components under <see cref="EvaluatorOptions.MinComponentFraction"/> of the image are
/// dropped.</item>
/// <item>Shape by template matching (<see cref="ShapeTemplateFit"/>): the object's soft ink map (distance from the
/// background in sRGB over its colour's, capped at 1; other objects' pixels 0) around its bounding box against each
/// shape drawn at the object's centroid, sized around its area, blurred; the smallest squared error wins.</item>
/// <item>Checks: binding (every requested colour-shape object present), counting (exactly the requested number of
/// each), spatial (both present; the largest instances' centroids differ along the relation's axis by more than
/// the margin and by at least as much as across it).</item>
/// </list>
/// Thread-safe: holds only immutable settings.
/// </summary>
public sealed class Evaluator
{
    private const int Background = -1, Unknown = -2;
    private readonly EvaluatorOptions _options;
    private readonly Rgb[] _colors;
    private readonly Lab _backgroundLab;
    private readonly Lab[] _colorLab;
    private readonly Lab[][] _blendLab; // [colour][step]: CIELAB of bg + (step / BlendSteps)(colour - bg)
    private const int BlendSteps = 256;

    /// <summary>Creates a scorer with <paramref name="options"/> (defaults when null).</summary>
    public Evaluator(EvaluatorOptions? options = null)
    {
        _options = options ?? new EvaluatorOptions();
        _colors = Palette.All.Select(Palette.ToRgb).ToArray();
        _backgroundLab = Palette.ToLab(_options.Background);
        _colorLab = _colors.Select(Palette.ToLab).ToArray();
        var bg = _options.Background;
        _blendLab = _colors.Select(c => Enumerable.Range(0, BlendSteps + 1).Select(i =>
        {
            double a = i / (double)BlendSteps;
            return Palette.ToLab(bg.R + a * (c.R - bg.R), bg.G + a * (c.G - bg.G), bg.B + a * (c.B - bg.B));
        }).ToArray()).ToArray();
    }

    /// <summary>The settings in use.</summary>
    public EvaluatorOptions Options => _options;

    /// <summary>Scores <paramref name="image"/> against <paramref name="spec"/>.</summary>
    public ImageScore Score(RgbaImage image, SceneSpec spec)
    {
        var objects = Detect(image);
        List<DetectedObject> Matches(ObjectSpec o) => objects.Where(d => d.Color == o.Color && d.Shape == o.Shape).ToList();

        double binding = spec.Objects.All(o => Matches(o).Count > 0) ? 1 : 0;
        double? counting = spec.Category == PromptCategory.Counting ? (spec.Objects.All(o => Matches(o).Count == o.Count) ? 1 : 0) : null;
        double? spatial = null;
        if (spec.Relation is { } relation)
        {
            var a = Matches(spec.Objects[0]).MaxBy(d => d.Area);
            var b = Matches(spec.Objects[1]).MaxBy(d => d.Area);
            spatial = a is not null && b is not null && Holds(a, relation, b, Math.Max(image.Width, image.Height)) ? 1 : 0;
        }
        double[] checks = new double?[] { binding, counting, spatial }.Where(c => c.HasValue).Select(c => c!.Value).ToArray();
        return new ImageScore(binding, counting, spatial, checks.Average(), objects);
    }

    /// <summary>Whether detected <paramref name="a"/> stands in <paramref name="relation"/> to <paramref name="b"/>.</summary>
    public bool Holds(DetectedObject a, SpatialRelation relation, DetectedObject b, int imageSide)
    {
        double dx = b.X - a.X, dy = b.Y - a.Y; // a LeftOf b <=> dx > 0
        double along = relation switch
        {
            SpatialRelation.LeftOf => dx,
            SpatialRelation.RightOf => -dx,
            SpatialRelation.Above => dy,
            _ => -dy,
        };
        double across = relation is SpatialRelation.LeftOf or SpatialRelation.RightOf ? Math.Abs(dy) : Math.Abs(dx);
        return along > _options.RelationMargin * imageSide && along >= across;
    }

    /// <summary>Finds the objects in <paramref name="image"/>, largest first.</summary>
    public IReadOnlyList<DetectedObject> Detect(RgbaImage image)
    {
        int w = image.Width, h = image.Height;
        float[] rgb = Smooth(image);
        int[] labels = Label(rgb, w, h);
        int minArea = Math.Max(1, (int)Math.Ceiling(_options.MinComponentFraction * w * h));
        var objects = new List<(int Color, List<int> Pixels)>();
        foreach (var component in Components(labels, w, h, p => labels[p] != Background))
        {
            // Colour votes of each colour's own interior (pixels whose four neighbours are in the component and share their
            // label): a decoder's hue-shifted rim is thin in its own colour, a second object touching this one is not.
            var member = new HashSet<int>(component);
            var votes = new int[_colors.Length];
            foreach (int p in component)
            {
                int k = labels[p], x = p % w, y = p / w;
                if (k >= 0 && x > 0 && x < w - 1 && y > 0 && y < h - 1 && labels[p - 1] == k && labels[p + 1] == k && labels[p - w] == k && labels[p + w] == k)
                    votes[k]++;
            }
            var core = new List<int>();
            foreach (int p in component)
            {
                int x = p % w, y = p / w;
                if (x > 0 && x < w - 1 && y > 0 && y < h - 1 && member.Contains(p - 1) && member.Contains(p + 1) && member.Contains(p - w) && member.Contains(p + w))
                    core.Add(p);
            }
            if (core.Count == 0) core = component;
            int interior = Math.Max(1, votes.Sum());
            int minInterior = Math.Max(1, minArea);
            var majors = Enumerable.Range(0, votes.Length)
                .Where(k => votes[k] >= minInterior && votes[k] >= _options.MajorColourShare * interior).ToArray();
            // Two touching objects only when two majors are far apart; neighbouring palette colours (blue and purple, yellow
            // and orange: 33-47 ΔE) across one region are one object drawn in an in-between or graded colour.
            bool split = majors.Any(a => majors.Any(b => _colorLab[a].DeltaE(_colorLab[b]) > _options.SplitMinDeltaE));
            if (!split)
            {
                if (component.Count >= minArea && NearestColour(rgb, core) is var (colour, deltaE, chroma)
                    && deltaE <= _options.MaxObjectDeltaE && chroma >= _options.MinObjectChroma)
                    objects.Add((colour, component));
                continue;
            }
            var inComponent = new bool[w * h];
            foreach (int p in component) inComponent[p] = true;
            foreach (int k in majors)
                objects.AddRange(Components(labels, w, h, p => inComponent[p] && labels[p] == k).Where(c => c.Count >= minArea).Select(c => (k, c)));
        }
        var owner = new int[w * h];
        Array.Fill(owner, -1);
        for (int i = 0; i < objects.Count; i++)
        {
            foreach (int p in objects[i].Pixels) owner[p] = i;
        }
        var bg = _options.Background;
        var distance = new float[w * h];
        for (int p = 0; p < distance.Length; p++)
        {
            float dr = rgb[p * 3] - bg.R, dg = rgb[p * 3 + 1] - bg.G, db = rgb[p * 3 + 2] - bg.B;
            distance[p] = MathF.Sqrt(dr * dr + dg * dg + db * db);
        }
        var found = new List<DetectedObject>();
        var ink = new float[w * h];
        for (int i = 0; i < objects.Count; i++)
        {
            var c = _colors[objects[i].Color];
            float full = MathF.Sqrt((c.R - bg.R) * (c.R - bg.R) + (c.G - bg.G) * (c.G - bg.G) + (c.B - bg.B) * (c.B - bg.B));
            for (int p = 0; p < ink.Length; p++) ink[p] = owner[p] == -1 || owner[p] == i ? Math.Min(1f, distance[p] / full) : 0f;
            found.Add(Describe((ShapeColor)objects[i].Color, objects[i].Pixels, w, h, ink));
        }
        return found.OrderByDescending(d => d.Area).ToArray();
    }

    /// <summary>The palette colour nearest (ΔE76) to the mean CIELAB colour of <paramref name="pixels"/>, that distance and the mean's chroma.</summary>
    private (int Colour, double DeltaE, double Chroma) NearestColour(float[] rgb, List<int> pixels)
    {
        double l = 0, a = 0, b = 0;
        foreach (int p in pixels)
        {
            var lab = Palette.ToLab(rgb[p * 3], rgb[p * 3 + 1], rgb[p * 3 + 2]);
            l += lab.L; a += lab.A; b += lab.B;
        }
        var mean = new Lab(l / pixels.Count, a / pixels.Count, b / pixels.Count);
        int best = 0;
        for (int k = 1; k < _colors.Length; k++)
        {
            if (mean.DeltaE(_colorLab[k]) < mean.DeltaE(_colorLab[best])) best = k;
        }
        return (best, mean.DeltaE(_colorLab[best]), Math.Sqrt(mean.A * mean.A + mean.B * mean.B));
    }

    /// <summary>4-connected components of the pixels where <paramref name="member"/> holds, each in scan order of its seed.</summary>
    private static List<List<int>> Components(int[] labels, int w, int h, Func<int, bool> member)
    {
        var result = new List<List<int>>();
        var seen = new bool[w * h];
        var queue = new Queue<int>();
        for (int start = 0; start < labels.Length; start++)
        {
            if (seen[start] || !member(start)) continue;
            var pixels = new List<int>();
            seen[start] = true;
            queue.Enqueue(start);
            while (queue.Count > 0)
            {
                int p = queue.Dequeue();
                pixels.Add(p);
                int x = p % w, y = p / w;
                if (x > 0) Visit(p - 1);
                if (x < w - 1) Visit(p + 1);
                if (y > 0) Visit(p - w);
                if (y < h - 1) Visit(p + w);
            }
            result.Add(pixels);
        }
        return result;

        void Visit(int q)
        {
            if (!seen[q] && member(q))
            {
                seen[q] = true;
                queue.Enqueue(q);
            }
        }
    }

    private DetectedObject Describe(ShapeColor color, List<int> pixels, int width, int height, float[] ink)
    {
        int minX = int.MaxValue, minY = int.MaxValue, maxX = int.MinValue, maxY = int.MinValue;
        double sx = 0, sy = 0;
        foreach (int p in pixels)
        {
            int x = p % width, y = p / width;
            minX = Math.Min(minX, x); maxX = Math.Max(maxX, x);
            minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
            sx += x + 0.5;
            sy += y + 0.5;
        }
        int bw = maxX - minX + 1, bh = maxY - minY + 1;
        double midY = minY + bh / 2.0, legX = bw / 4.0, legY = bh / 4.0;
        int top = 0, cornerHits = 0;
        var rowMin = new int[bh];
        var rowMax = new int[bh];
        Array.Fill(rowMin, int.MaxValue);
        Array.Fill(rowMax, int.MinValue);
        foreach (int p in pixels)
        {
            int x = p % width, y = p / width;
            if (y + 0.5 < midY) top++;
            if (InCorner(x, y)) cornerHits++;
            rowMin[y - minY] = Math.Min(rowMin[y - minY], x);
            rowMax[y - minY] = Math.Max(rowMax[y - minY], x);
        }
        int widest = Enumerable.Range(0, bh).Max(r => rowMax[r] - rowMin[r] + 1);
        var wideRows = Enumerable.Range(0, bh).Where(r => rowMax[r] - rowMin[r] + 1 >= 0.9 * widest).ToArray();
        double widestRow = (wideRows.Average() + 0.5) / bh;
        int cornerCells = 0;
        for (int y = minY; y <= maxY; y++)
        {
            for (int x = minX; x <= maxX; x++)
            {
                if (InCorner(x, y)) cornerCells++;
            }
        }
        double fill = pixels.Count / (double)(bw * bh);
        double solidity = pixels.Count / ConvexHullArea(pixels, width);
        double topHalf = top / (double)pixels.Count;
        double corners = cornerCells == 0 ? 0 : cornerHits / (double)cornerCells;
        int m = _options.TemplateMargin;
        var fit = ShapeTemplateFit.Fit(ink, width, Math.Max(0, minX - m), Math.Max(0, minY - m), Math.Min(width - 1, maxX + m),
            Math.Min(height - 1, maxY + m), sx / pixels.Count, sy / pixels.Count, pixels.Count);
        return new DetectedObject(color, fit.Best, sx / pixels.Count, sy / pixels.Count, pixels.Count,
            new Box(minX, minY, maxX + 1, maxY + 1), fill, solidity, topHalf, widestRow, corners, fit.Margin);

        // Pixel centre inside one of the four corner triangles (legs legX, legY) of the bounding box.
        bool InCorner(int x, int y)
        {
            double u = Math.Min(x + 0.5 - minX, maxX + 1 - (x + 0.5)) / legX;
            double v = Math.Min(y + 0.5 - minY, maxY + 1 - (y + 0.5)) / legY;
            return u + v <= 1;
        }
    }

    /// <summary>Area of the convex hull of the pixels' unit squares (monotone chain over their corners).</summary>
    private static double ConvexHullArea(List<int> pixels, int width)
    {
        // Per row, only the leftmost and rightmost pixel can contribute hull corners.
        var rows = new SortedDictionary<int, (int Min, int Max)>();
        foreach (int p in pixels)
        {
            int x = p % width, y = p / width;
            rows[y] = rows.TryGetValue(y, out var r) ? (Math.Min(r.Min, x), Math.Max(r.Max, x)) : (x, x);
        }
        var pts = new List<(long X, long Y)>();
        foreach (var (y, (min, max)) in rows)
        {
            pts.Add((min, y)); pts.Add((min, y + 1)); pts.Add((max + 1, y)); pts.Add((max + 1, y + 1));
        }
        pts.Sort();
        var hull = new List<(long X, long Y)>();
        for (int pass = 0; pass < 2; pass++)
        {
            int floor = hull.Count;
            foreach (var pt in pass == 0 ? pts : Enumerable.Reverse(pts))
            {
                while (hull.Count >= floor + 2 && Cross(hull[^2], hull[^1], pt) <= 0) hull.RemoveAt(hull.Count - 1);
                hull.Add(pt);
            }
            hull.RemoveAt(hull.Count - 1);
        }
        long twice = 0;
        for (int i = 0; i < hull.Count; i++)
        {
            var (a, b) = (hull[i], hull[(i + 1) % hull.Count]);
            twice += a.X * b.Y - b.X * a.Y;
        }
        return Math.Abs(twice) / 2.0;

        static long Cross((long X, long Y) o, (long X, long Y) a, (long X, long Y) b) =>
            (a.X - o.X) * (b.Y - o.Y) - (a.Y - o.Y) * (b.X - o.X);
    }

    /// <summary>3x3 binomial smoothing ([1 2 1]/4 each way) of the RGB channels, edges clamped; [H*W*3] floats.</summary>
    private static float[] Smooth(RgbaImage image)
    {
        int w = image.Width, h = image.Height;
        byte[] src = image.Pixels;
        var tmp = new float[w * h * 3];
        var dst = new float[w * h * 3];
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                int l = Math.Max(x - 1, 0), r = Math.Min(x + 1, w - 1);
                for (int c = 0; c < 3; c++)
                    tmp[(y * w + x) * 3 + c] = 0.25f * src[(y * w + l) * 4 + c] + 0.5f * src[(y * w + x) * 4 + c] + 0.25f * src[(y * w + r) * 4 + c];
            }
        }
        for (int y = 0; y < h; y++)
        {
            int u = Math.Max(y - 1, 0), d = Math.Min(y + 1, h - 1);
            for (int x = 0; x < w; x++)
            {
                for (int c = 0; c < 3; c++)
                    dst[(y * w + x) * 3 + c] = 0.25f * tmp[(u * w + x) * 3 + c] + 0.5f * tmp[(y * w + x) * 3 + c] + 0.25f * tmp[(d * w + x) * 3 + c];
            }
        }
        return dst;
    }

    /// <summary>Palette label per pixel: colour index, <see cref="Background"/> or <see cref="Unknown"/>.</summary>
    private int[] Label(float[] rgb, int w, int h)
    {
        var bg = _options.Background;
        var labels = new int[w * h];
        for (int i = 0; i < labels.Length; i++)
        {
            double r = rgb[i * 3], g = rgb[i * 3 + 1], b = rgb[i * 3 + 2];
            var lab = Palette.ToLab(r, g, b);
            double best = lab.DeltaE(_backgroundLab), bestAlpha = 0;
            int bestColor = Background;
            for (int k = 0; k < _colors.Length; k++)
            {
                double cr = _colors[k].R - bg.R, cg = _colors[k].G - bg.G, cb = _colors[k].B - bg.B;
                double alpha = ((r - bg.R) * cr + (g - bg.G) * cg + (b - bg.B) * cb) / (cr * cr + cg * cg + cb * cb);
                alpha = Math.Clamp(alpha, 0, 1);
                double residual = lab.DeltaE(_blendLab[k][(int)Math.Round(alpha * BlendSteps)]);
                if (residual < best)
                {
                    best = residual;
                    bestAlpha = alpha;
                    bestColor = k;
                }
            }
            labels[i] = best > _options.MaxResidualDeltaE ? Unknown : bestColor >= 0 && bestAlpha >= 0.5 ? bestColor : Background;
        }
        return labels;
    }
}
