using System.Globalization;
using System.Text;
using System.Text.Json;
using CTCal.Core.IO;

namespace CTCal.Core.Probes;

/// <summary>One cell of the premise probe: a timestep and a layer (or all layers of one resolution).</summary>
/// <param name="Timestep">The probed timestep t.</param>
/// <param name="Layer">The attn2 module path, or <see cref="PremiseProbeResult.AllLayers"/> for a resolution's aggregate.</param>
/// <param name="Resolution">The layer's map side (maps are Resolution x Resolution).</param>
/// <param name="Mass">Mean over (record, noun) of the attention mass inside the subject's mask.</param>
/// <param name="Chance">Mean of the mask's area fraction at this resolution (a uniform map's mass).</param>
/// <param name="Ratio">Mean of mass / chance.</param>
/// <param name="Count">(record, noun[, layer]) pairs averaged.</param>
public sealed record PremiseProbeRow(int Timestep, string Layer, int Resolution, double Mass, double Chance, double Ratio, int Count);

/// <summary>Whether the premise holds at one layer or resolution.</summary>
/// <param name="Layer">Module path or <see cref="PremiseProbeResult.AllLayers"/>.</param>
/// <param name="Resolution">Map side.</param>
/// <param name="TeacherMass">Mass at the smallest probed t (the teacher).</param>
/// <param name="LargeTMass">Mass at the largest probed t.</param>
/// <param name="Chance">Chance at the teacher t.</param>
/// <param name="Holds">TeacherMass &gt; LargeTMass and TeacherMass &gt; Chance.</param>
public sealed record PremiseVerdict(string Layer, int Resolution, double TeacherMass, double LargeTMass, double Chance, bool Holds);

/// <summary>
/// What the premise probe (the trainer's <c>PremiseProbe.Run</c>, <c>ctcal-train probe</c>) measured: rows per (t, layer)
/// and per (t, resolution), and the verdicts; written as <c>probe.json</c> (machine-readable) and <c>probe.md</c> (tables),
/// each atomically, and read back by <see cref="Read"/> (the study reads the probe's output through it). The one owner of
/// the <c>probe.json</c> format.
/// </summary>
public sealed record PremiseProbeResult(IReadOnlyList<int> Timesteps, int Records, int Nouns, int Skipped,
    IReadOnlyList<PremiseProbeRow> PerLayer, IReadOnlyList<PremiseProbeRow> PerResolution)
{
    /// <summary>The <see cref="PremiseProbeRow.Layer"/> of a per-resolution aggregate.</summary>
    public const string AllLayers = "*";

    /// <summary>File names written by <see cref="Write"/>.</summary>
    public const string JsonFileName = "probe.json", MarkdownFileName = "probe.md";

    /// <summary>One verdict per resolution (first, largest side first) and per layer.</summary>
    public IReadOnlyList<PremiseVerdict> Verdicts
    {
        get
        {
            int teacher = Timesteps.Min(), large = Timesteps.Max();
            var result = new List<PremiseVerdict>();
            foreach (var rows in new[] { PerResolution, PerLayer })
            {
                foreach (var group in rows.GroupBy(r => (r.Layer, r.Resolution)))
                {
                    var low = group.FirstOrDefault(r => r.Timestep == teacher);
                    var high = group.FirstOrDefault(r => r.Timestep == large);
                    if (low is null || high is null) continue;
                    result.Add(new PremiseVerdict(group.Key.Layer, group.Key.Resolution, low.Mass, high.Mass, low.Chance,
                        low.Mass > high.Mass && low.Mass > low.Chance));
                }
            }
            return result;
        }
    }

    /// <summary>Smallest teacher-t mass, in multiples of chance, for <see cref="CalibrationLayers"/> by default.</summary>
    public const double DefaultMinTeacherRatio = 2.0;

    /// <summary>
    /// The layers worth calibrating by this probe: those whose verdict holds (the teacher-t mass above the large-t mass
    /// and above chance) with a teacher-t mass of at least <paramref name="minTeacherRatio"/> times chance, so a layer
    /// whose maps are near chance at every t (no better teacher to copy) is left out. In the probe's layer order.
    /// </summary>
    public IReadOnlyList<string> CalibrationLayers(double minTeacherRatio = DefaultMinTeacherRatio) =>
        Verdicts.Where(v => v.Layer != AllLayers && v.Holds && v.TeacherMass >= minTeacherRatio * v.Chance).Select(v => v.Layer).ToList();

    /// <summary>Writes <c>probe.json</c> and <c>probe.md</c> into <paramref name="folder"/> (created); <paramref name="command"/> is quoted in the markdown.</summary>
    public void Write(string folder, string command)
    {
        Directory.CreateDirectory(folder);
        var json = new
        {
            timesteps = Timesteps, records = Records, nouns = Nouns, skipped = Skipped, command,
            per_layer = PerLayer.Select(Json), per_resolution = PerResolution.Select(Json),
            verdicts = Verdicts.Select(v => new
            {
                layer = v.Layer, resolution = v.Resolution, teacher_mass = v.TeacherMass, large_t_mass = v.LargeTMass, chance = v.Chance, holds = v.Holds,
            }),
        };
        AtomicFile.WriteBytes(Path.Combine(folder, JsonFileName), JsonSerializer.SerializeToUtf8Bytes(json, new JsonSerializerOptions { WriteIndented = true }));
        AtomicFile.WriteText(Path.Combine(folder, MarkdownFileName), ToMarkdown(command));
    }

    /// <summary>
    /// Reads a <c>probe.json</c> written by <see cref="Write"/>; the verdicts are derived again from the rows. Throws
    /// <see cref="InvalidDataException"/> naming the file and the field at fault.
    /// </summary>
    public static PremiseProbeResult Read(string path)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            static IReadOnlyList<PremiseProbeRow> Rows(JsonElement root, string name) =>
                root.GetProperty(name).EnumerateArray().Select(r => new PremiseProbeRow(
                    r.GetProperty("t").GetInt32(), r.GetProperty("layer").GetString() ?? throw new FormatException($"'{name}' has a null layer"),
                    r.GetProperty("resolution").GetInt32(), r.GetProperty("mass").GetDouble(), r.GetProperty("chance").GetDouble(),
                    r.GetProperty("ratio").GetDouble(), r.GetProperty("count").GetInt32())).ToList();
            var timesteps = root.GetProperty("timesteps").EnumerateArray().Select(t => t.GetInt32()).ToList();
            if (timesteps.Count == 0) throw new FormatException("'timesteps' is empty");
            return new PremiseProbeResult(timesteps, root.GetProperty("records").GetInt32(), root.GetProperty("nouns").GetInt32(),
                root.GetProperty("skipped").GetInt32(), Rows(root, "per_layer"), Rows(root, "per_resolution"));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a premise probe result ({e.Message})", e);
        }
    }

    /// <summary>The tables: per resolution, the verdicts, per layer.</summary>
    public string ToMarkdown(string command)
    {
        var md = new StringBuilder();
        md.Append("# Premise probe\n\n");
        md.Append(CultureInfo.InvariantCulture, $"`{command}`\n\n");
        md.Append(CultureInfo.InvariantCulture, $"{Records} records, {Nouns} subject nouns, timesteps {string.Join(", ", Timesteps)}; mass = share of a noun token's cross-attention (mean over heads) inside its subject's mask, chance = the mask's area fraction.\n\n");
        md.Append("## Per resolution (all layers of that map side)\n\n");
        Table(md, PerResolution, withLayer: false);
        md.Append("\n## Verdicts\n\n");
        md.Append(CultureInfo.InvariantCulture, $"Premise holds where the teacher-t (t={Timesteps.Min()}) mass is above the large-t (t={Timesteps.Max()}) mass and above chance.\n\n");
        md.Append("| layer | resolution | teacher mass | large-t mass | chance | holds |\n|---|---|---|---|---|---|\n");
        foreach (var v in Verdicts)
            md.Append(CultureInfo.InvariantCulture, $"| {v.Layer} | {v.Resolution} | {v.TeacherMass:F4} | {v.LargeTMass:F4} | {v.Chance:F4} | {(v.Holds ? "yes" : "no")} |\n");
        md.Append("\n## Per layer\n\n");
        Table(md, PerLayer, withLayer: true);
        return md.ToString();
    }

    private static void Table(StringBuilder md, IEnumerable<PremiseProbeRow> rows, bool withLayer)
    {
        md.Append(withLayer ? "| t | layer | resolution | mass | chance | mass/chance | n |\n|---|---|---|---|---|---|---|\n"
                            : "| t | resolution | mass | chance | mass/chance | n |\n|---|---|---|---|---|---|\n");
        foreach (var r in rows)
        {
            md.Append(CultureInfo.InvariantCulture, $"| {r.Timestep} | ");
            if (withLayer) md.Append(r.Layer).Append(" | ");
            md.Append(CultureInfo.InvariantCulture, $"{r.Resolution} | {r.Mass:F4} | {r.Chance:F4} | {r.Ratio:F3} | {r.Count} |\n");
        }
    }

    private static object Json(PremiseProbeRow r) => new
    {
        t = r.Timestep, layer = r.Layer, resolution = r.Resolution, mass = r.Mass, chance = r.Chance, ratio = r.Ratio, count = r.Count,
    };
}
