namespace CTCal.Synthetic;

/// <summary>Settings of a synthetic world. Everything derived from it is deterministic for <see cref="Seed"/>.</summary>
public sealed record SyntheticWorldOptions
{
    /// <summary>Seed of every random choice (held-out pairs, split, layouts).</summary>
    public ulong Seed { get; init; } = 1;

    /// <summary>Square canvas side in pixels (at least 16; the scorer is tested at 64).</summary>
    public int ImageSize { get; init; } = 64;

    /// <summary>Number of training records (images with captions).</summary>
    public int TrainCount { get; init; } = 2000;

    /// <summary>Evaluation prompts per category; half use held-out pairs where enough exist.</summary>
    public int EvalPromptsPerCategory { get; init; } = 40;

    /// <summary>Share of the in-distribution multi-object prompt groups reserved for evaluation.</summary>
    public double EvalFraction { get; init; } = 0.15;

    /// <summary>Number of colour-shape pairs never shown together in training (at most min(colours, shapes)).</summary>
    public int HeldOutPairCount { get; init; } = 4;

    /// <summary>Relative frequency of binding, counting and spatial captions in the training set.</summary>
    public (double Binding, double Counting, double Spatial) CategoryWeights { get; init; } = (0.4, 0.3, 0.3);
}

/// <summary>A training record: one image, its caption, subject nouns, the spec it was drawn from and its layout.</summary>
public sealed record SyntheticRecord(int Index, string FileName, string Caption, IReadOnlyList<string> Subjects, SceneSpec Spec, Scene Scene)
{
    /// <summary>Renders the record's image.</summary>
    public RgbaImage Render() => Renderer.Render(Scene);
}

/// <summary>An evaluation prompt with the scene it asks for; <see cref="HeldOutPair"/> when it names a held-out pair.</summary>
public sealed record EvalPrompt(string Prompt, PromptCategory Category, SceneSpec Spec, bool HeldOutPair, IReadOnlyList<string> Subjects);

/// <summary>
/// The synthetic compositional world: the prompt space (every caption the grammar makes from the palette and shapes),
/// its train/evaluation split and the training records.
/// </summary>
/// <remarks>
/// Prompts are grouped by <see cref="SceneSpec.CanonicalKey"/> (word-order and relation-direction variants of one
/// scene description), and whole groups go to one side, so no evaluation prompt is a rephrasing of a training prompt.
/// Groups naming a held-out colour-shape pair go to evaluation (flagged <see cref="EvalPrompt.HeldOutPair"/>);
/// single-object groups otherwise all train; of the other groups a seeded <see cref="SyntheticWorldOptions.EvalFraction"/>
/// per category is reserved for evaluation.
/// </remarks>
public sealed class SyntheticWorld
{
    private const ulong SplitStream = 1, HeldOutStream = 2, EvalStream = 3, RecordStreamBase = 1000;

    private SyntheticWorld(SyntheticWorldOptions options, IReadOnlyList<(ShapeColor, ShapeKind)> heldOut,
        IReadOnlyList<SceneSpec> train, IReadOnlyList<SceneSpec> eval, IReadOnlyList<SyntheticRecord> records, IReadOnlyList<EvalPrompt> prompts)
    {
        Options = options;
        HeldOutPairs = heldOut;
        TrainSpecs = train;
        EvalSpecs = eval;
        TrainRecords = records;
        EvalPrompts = prompts;
    }

    /// <summary>The options the world was made from.</summary>
    public SyntheticWorldOptions Options { get; }

    /// <summary>Colour-shape pairs that never appear together in a training caption.</summary>
    public IReadOnlyList<(ShapeColor Color, ShapeKind Shape)> HeldOutPairs { get; }

    /// <summary>Every training prompt (all variants of the training groups).</summary>
    public IReadOnlyList<SceneSpec> TrainSpecs { get; }

    /// <summary>Every evaluation prompt the split allows (all variants of the evaluation groups).</summary>
    public IReadOnlyList<SceneSpec> EvalSpecs { get; }

    /// <summary>The training records (layouts sampled, images rendered on demand).</summary>
    public IReadOnlyList<SyntheticRecord> TrainRecords { get; }

    /// <summary>The evaluation prompt set drawn from <see cref="EvalSpecs"/>.</summary>
    public IReadOnlyList<EvalPrompt> EvalPrompts { get; }

    /// <summary>Whether <paramref name="spec"/> names a held-out colour-shape pair of this world.</summary>
    public bool NamesHeldOutPair(SceneSpec spec) => spec.Pairs.Any(p => HeldOutPairs.Contains(p));

    /// <summary>Builds the world for <paramref name="options"/>.</summary>
    public static SyntheticWorld Create(SyntheticWorldOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.TrainCount < 0) throw new ArgumentOutOfRangeException(nameof(options), options.TrainCount, "TrainCount must be >= 0");
        if (options.EvalPromptsPerCategory < 0) throw new ArgumentOutOfRangeException(nameof(options), options.EvalPromptsPerCategory, "EvalPromptsPerCategory must be >= 0");
        if (options.EvalFraction is <= 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(options), options.EvalFraction, "EvalFraction must be in (0, 1)");
        int maxHeldOut = Math.Min(Palette.All.Count, Shapes.All.Count);
        if (options.HeldOutPairCount < 0 || options.HeldOutPairCount > maxHeldOut)
            throw new ArgumentOutOfRangeException(nameof(options), options.HeldOutPairCount, $"HeldOutPairCount must be in 0..{maxHeldOut}");
        var w = options.CategoryWeights;
        if (w.Binding < 0 || w.Counting < 0 || w.Spatial < 0 || w.Binding + w.Counting + w.Spatial <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), w, "CategoryWeights must be non-negative with a positive sum");

        // Held-out pairs: distinct colours and distinct shapes, so every colour and shape still trains with other partners.
        var hrng = SeededRandom.ForStream(options.Seed, HeldOutStream);
        var colours = Palette.All.ToList();
        var shapes = Shapes.All.ToList();
        hrng.Shuffle(colours);
        hrng.Shuffle(shapes);
        var heldOut = Enumerable.Range(0, options.HeldOutPairCount).Select(i => (colours[i], shapes[i])).ToArray();

        var groups = EnumerateGroups();
        var srng = SeededRandom.ForStream(options.Seed, SplitStream);
        var trainGroups = new List<SceneSpec[]>();
        var evalGroups = new List<(SceneSpec[] Variants, bool HeldOut)>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var pool = new List<SceneSpec[]>();
            foreach (var g in groups.Where(g => g[0].Category == category))
            {
                if (g[0].Pairs.Any(p => heldOut.Contains(p))) evalGroups.Add((g, true));
                else if (g[0].ObjectCount == 1) trainGroups.Add(g);
                else pool.Add(g);
            }
            srng.Shuffle(pool);
            int nEval = (int)Math.Round(options.EvalFraction * pool.Count);
            evalGroups.AddRange(pool.Take(nEval).Select(g => (g, false)));
            trainGroups.AddRange(pool.Skip(nEval));
        }

        var sampler = new SceneSampler(options.ImageSize);
        var records = new SyntheticRecord[options.TrainCount];
        var byCategory = Enum.GetValues<PromptCategory>().ToDictionary(c => c, c => trainGroups.Where(g => g[0].Category == c).ToArray());
        double[] weights = [w.Binding, w.Counting, w.Spatial];
        foreach (var (category, pool) in byCategory)
        {
            if (pool.Length == 0 && weights[(int)category] > 0)
                throw new ArgumentException($"no {category} prompt is left for training; set its CategoryWeights entry to 0", nameof(options));
        }
        for (int i = 0; i < records.Length; i++)
        {
            var rng = SeededRandom.ForStream(options.Seed, RecordStreamBase + (ulong)i);
            var category = (PromptCategory)PickWeighted(rng, weights);
            var pool = byCategory[category];
            var variants = pool[rng.NextInt(pool.Length)];
            var spec = variants[rng.NextInt(variants.Length)];
            records[i] = new SyntheticRecord(i, $"{i:D5}.png", CaptionGrammar.Caption(spec), CaptionGrammar.Subjects(spec), spec, sampler.Sample(spec, rng));
        }

        var erng = SeededRandom.ForStream(options.Seed, EvalStream);
        var prompts = new List<EvalPrompt>();
        foreach (var category in Enum.GetValues<PromptCategory>())
        {
            var held = evalGroups.Where(g => g.HeldOut && g.Variants[0].Category == category).Select(g => g.Variants).ToList();
            var inDist = evalGroups.Where(g => !g.HeldOut && g.Variants[0].Category == category).Select(g => g.Variants).ToList();
            erng.Shuffle(held);
            erng.Shuffle(inDist);
            int nHeld = Math.Min(held.Count, Math.Max(options.EvalPromptsPerCategory / 2, options.EvalPromptsPerCategory - inDist.Count));
            int nIn = Math.Min(inDist.Count, options.EvalPromptsPerCategory - nHeld);
            foreach (var (g, isHeld) in held.Take(nHeld).Select(g => (g, true)).Concat(inDist.Take(nIn).Select(g => (g, false))))
            {
                var spec = g[erng.NextInt(g.Length)];
                prompts.Add(new EvalPrompt(CaptionGrammar.Caption(spec), category, spec, isHeld, CaptionGrammar.Subjects(spec)));
            }
        }

        return new SyntheticWorld(options, heldOut,
            trainGroups.SelectMany(g => g).ToArray(), evalGroups.SelectMany(g => g.Variants).ToArray(), records, prompts);
    }

    /// <summary>Every prompt group of the grammar: the variants (phrasings) of one scene description.</summary>
    public static IReadOnlyList<SceneSpec[]> EnumerateGroups()
    {
        var objects = Palette.All.SelectMany(c => Shapes.All.Select(s => new ObjectSpec(c, s))).ToArray();
        var groups = new List<SceneSpec[]>();
        foreach (var o in objects) groups.Add([SceneSpec.Binding(o)]);
        for (int i = 0; i < objects.Length; i++)
        {
            for (int j = i + 1; j < objects.Length; j++)
            {
                var (a, b) = (objects[i], objects[j]);
                if (a.Color != b.Color && a.Shape != b.Shape) groups.Add([SceneSpec.Binding(a, b), SceneSpec.Binding(b, a)]);
            }
        }
        foreach (var o in objects)
        {
            for (int n = 2; n <= SceneSpec.MaxCount; n++) groups.Add([SceneSpec.Counting(o.Color, o.Shape, n)]);
        }
        foreach (var a in objects)
        {
            foreach (var b in objects.Where(b => b != a))
            {
                groups.Add([SceneSpec.Spatial(a, SpatialRelation.LeftOf, b), SceneSpec.Spatial(b, SpatialRelation.RightOf, a)]);
                groups.Add([SceneSpec.Spatial(a, SpatialRelation.Above, b), SceneSpec.Spatial(b, SpatialRelation.Below, a)]);
            }
        }
        return groups;
    }

    private static int PickWeighted(SeededRandom rng, double[] weights)
    {
        double u = rng.NextDouble() * weights.Sum();
        for (int i = 0; i < weights.Length; i++)
        {
            if (u < weights[i]) return i;
            u -= weights[i];
        }
        return Array.FindLastIndex(weights, x => x > 0);
    }
}
