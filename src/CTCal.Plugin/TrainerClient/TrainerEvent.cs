using System.Globalization;
using System.Text.Json;

namespace CTCal.Plugin.TrainerClient;

/// <summary>
/// One line of <c>ctcal-train --progress json</c> (docs/trainer.md): a JSON object with an <c>event</c> of
/// <c>start</c>, <c>step</c>, <c>checkpoint</c>, <c>validation</c>, <c>message</c>, <c>done</c> or <c>error</c>.
/// Read here: <c>step</c> (or <c>steps</c> in <c>done</c>), <c>total_steps</c>, <c>path</c> (or <c>final_weights</c> in
/// <c>done</c>), <c>message</c> (or <c>text</c>), <c>cancelled</c>, <c>method</c> (in <c>start</c>), <c>kind</c> (in <c>error</c>:
/// <see cref="CTCal.Core.Diagnostics.TrainerErrorKinds"/>), and every other number as a metric (<c>loss</c>,
/// <c>lr</c>, ...). camelCase spellings are accepted too.
/// </summary>
internal sealed record TrainerEvent(
    string Kind,
    long? Step,
    long? TotalSteps,
    string? Path,
    string? Message,
    IReadOnlyDictionary<string, double> Metrics,
    bool Cancelled = false,
    string? Method = null,
    string? ErrorKind = null)
{
    public static readonly string[] Kinds = { "start", "step", "checkpoint", "validation", "message", "done", "error" };

    private static readonly string[] NotMetrics = { "step", "steps", "totalSteps", "total_steps", "start_step", "exit_code", "exitCode" };

    /// <summary>Parses one line; returns null (with a reason) for lines that are not protocol events.</summary>
    public static TrainerEvent? TryParse(string line, out string? problem)
    {
        problem = null;
        line = line.Trim();
        if (line.Length == 0 || line[0] != '{')
        {
            problem = "not a JSON object";
            return null;
        }

        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (!root.TryGetProperty("event", out var kindElement) || kindElement.ValueKind != JsonValueKind.String)
            {
                problem = "no string 'event' field";
                return null;
            }

            string kind = kindElement.GetString()!;
            if (Array.IndexOf(Kinds, kind) < 0)
            {
                problem = $"unknown event '{kind}'";
                return null;
            }

            var metrics = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (property.Value.ValueKind == JsonValueKind.Number && Array.IndexOf(NotMetrics, property.Name) < 0)
                {
                    metrics[property.Name] = property.Value.GetDouble();
                }
            }

            return new TrainerEvent(
                kind,
                Long(root, "step") ?? Long(root, "steps"),
                Long(root, "total_steps") ?? Long(root, "totalSteps"),
                String(root, "final_weights") ?? String(root, "finalWeights") ?? String(root, "path"),
                String(root, "message") ?? String(root, "text"),
                metrics,
                root.TryGetProperty("cancelled", out var cancelled) && cancelled.ValueKind == JsonValueKind.True,
                String(root, "method"),
                kind == "error" ? String(root, "kind") : null);
        }
        catch (JsonException ex)
        {
            problem = $"invalid JSON ({ex.Message})";
            return null;
        }
    }

    public override string ToString()
    {
        var parts = new List<string> { Kind + ":" };
        if (Step is not null)
        {
            parts.Add(TotalSteps is null ? $"{Step}" : $"{Step}/{TotalSteps}");
        }

        parts.AddRange(Metrics.Select(m => $"{m.Key}={m.Value.ToString("G5", CultureInfo.InvariantCulture)}"));
        if (Path is not null)
        {
            parts.Add(Path);
        }

        if (Message is not null)
        {
            parts.Add(Message);
        }

        return string.Join(" ", parts);
    }

    private static long? Long(JsonElement root, string name) =>
        root.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long v) ? v : null;

    private static string? String(JsonElement root, string name) =>
        root.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
}
