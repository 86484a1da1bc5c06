using System.Text;

namespace CTCal.Synthetic;

/// <summary>The three prompt categories, as in T2I-CompBench / GenEval.</summary>
public enum PromptCategory { Binding, Counting, Spatial }

/// <summary>A 2D relation "first object REL second object", read from object centroids.</summary>
public enum SpatialRelation { LeftOf, RightOf, Above, Below }

/// <summary>Requested objects: <paramref name="Count"/> objects of one colour and shape.</summary>
public readonly record struct ObjectSpec(ShapeColor Color, ShapeKind Shape, int Count = 1)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Count}x{Palette.Word(Color)}-{Shapes.Noun(Shape)}";
}

/// <summary>
/// What a prompt asks for. Binding: one or two single objects with distinct colours and shapes. Counting: one entry
/// with Count 2 or 3. Spatial: two single, different objects and <see cref="Relation"/> read as
/// "Objects[0] Relation Objects[1]".
/// </summary>
public sealed class SceneSpec : IEquatable<SceneSpec>
{
    /// <summary>Largest count a counting prompt may ask for (scenes hold at most three objects).</summary>
    public const int MaxCount = 3;

    private SceneSpec(PromptCategory category, ObjectSpec[] objects, SpatialRelation? relation)
    {
        Category = category;
        Objects = objects;
        Relation = relation;
    }

    /// <summary>The category.</summary>
    public PromptCategory Category { get; }

    /// <summary>The requested objects, in caption order.</summary>
    public IReadOnlyList<ObjectSpec> Objects { get; }

    /// <summary>The relation (spatial prompts only).</summary>
    public SpatialRelation? Relation { get; }

    /// <summary>"a red circle" or "a red circle and a blue square": distinct colours and distinct shapes.</summary>
    public static SceneSpec Binding(params ObjectSpec[] objects)
    {
        if (objects.Length is < 1 or > 2) throw new ArgumentException($"binding takes 1 or 2 objects, got {objects.Length}", nameof(objects));
        if (objects.Any(o => o.Count != 1)) throw new ArgumentException("binding objects have Count 1", nameof(objects));
        if (objects.Length == 2 && (objects[0].Color == objects[1].Color || objects[0].Shape == objects[1].Shape))
            throw new ArgumentException($"binding objects need distinct colours and shapes: {objects[0]}, {objects[1]}", nameof(objects));
        return new SceneSpec(PromptCategory.Binding, objects.ToArray(), null);
    }

    /// <summary>"three green triangles": <paramref name="count"/> in 2..<see cref="MaxCount"/>.</summary>
    public static SceneSpec Counting(ShapeColor color, ShapeKind shape, int count)
    {
        if (count is < 2 or > MaxCount) throw new ArgumentOutOfRangeException(nameof(count), count, $"counting asks for 2..{MaxCount} objects");
        return new SceneSpec(PromptCategory.Counting, [new ObjectSpec(color, shape, count)], null);
    }

    /// <summary>"a yellow star to the left of a purple square": two different single objects.</summary>
    public static SceneSpec Spatial(ObjectSpec first, SpatialRelation relation, ObjectSpec second)
    {
        if (first.Count != 1 || second.Count != 1) throw new ArgumentException("spatial objects have Count 1");
        if (first.Color == second.Color && first.Shape == second.Shape)
            throw new ArgumentException($"spatial objects must differ in colour or shape: {first}");
        return new SceneSpec(PromptCategory.Spatial, [first, second], relation);
    }

    /// <summary>The colour-shape pairs the prompt mentions.</summary>
    public IEnumerable<(ShapeColor Color, ShapeKind Shape)> Pairs => Objects.Select(o => (o.Color, o.Shape));

    /// <summary>Total number of objects a matching scene holds.</summary>
    public int ObjectCount => Objects.Sum(o => o.Count);

    /// <summary>
    /// A key equal for specs that describe the same set of scenes: binding objects unordered, spatial relations
    /// normalised to left-of / above ("B right of A" = "A left of B").
    /// </summary>
    public string CanonicalKey
    {
        get
        {
            switch (Category)
            {
                case PromptCategory.Binding:
                    return "binding:" + string.Join("+", Objects.Select(o => o.ToString()).Order(StringComparer.Ordinal));
                case PromptCategory.Counting:
                    return "counting:" + Objects[0];
                default:
                    var (a, b, rel) = Relation switch
                    {
                        SpatialRelation.RightOf => (Objects[1], Objects[0], SpatialRelation.LeftOf),
                        SpatialRelation.Below => (Objects[1], Objects[0], SpatialRelation.Above),
                        _ => (Objects[0], Objects[1], Relation!.Value),
                    };
                    return $"spatial:{a}/{rel}/{b}";
            }
        }
    }

    /// <summary>Whether <paramref name="other"/> asks for exactly the same thing in the same order.</summary>
    public bool Equals(SceneSpec? other) =>
        other is not null && Category == other.Category && Relation == other.Relation && Objects.SequenceEqual(other.Objects);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as SceneSpec);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(Category);
        h.Add(Relation);
        foreach (var o in Objects) h.Add(o);
        return h.ToHashCode();
    }

    /// <inheritdoc/>
    public override string ToString()
    {
        var sb = new StringBuilder(Category.ToString()).Append('(').AppendJoin(", ", Objects);
        if (Relation is { } r) sb.Append(", ").Append(r);
        return sb.Append(')').ToString();
    }
}
