using System.Globalization;

namespace CTCal.Core.Models;

/// <summary>
/// The model field of a generation request: a model id, optionally followed by per-request options after <c>?</c>
/// (<c>tiny?stepCache=2</c>). The contracts are pinned, so options the plugin reads per request travel in this field;
/// hosts write it and find the model by <see cref="IdOf"/>, the plugin reads it (and checks the options) with
/// <see cref="Split"/>. This is the one place that spells the syntax.
/// </summary>
public static class RequestModelId
{
    /// <summary>The step-caching option's name (<c>stepCache=N</c>: a full UNet step every N steps).</summary>
    public const string StepCacheOption = "stepCache";

    /// <summary><paramref name="model"/>'s model id and the text after its <c>?</c> (null when there is none).</summary>
    public static (string Id, string? Options) Split(string model)
    {
        ArgumentNullException.ThrowIfNull(model);
        int q = model.IndexOf('?', StringComparison.Ordinal);
        return q < 0 ? (model, null) : (model[..q], model[(q + 1)..]);
    }

    /// <summary>The model id of <paramref name="model"/> without its options (empty for null).</summary>
    public static string IdOf(string? model) => model is null ? "" : Split(model).Id;

    /// <summary><paramref name="id"/> asking for step caching with <paramref name="interval"/>.</summary>
    public static string WithStepCache(string id, int interval) =>
        $"{id}?{StepCacheOption}={interval.ToString(CultureInfo.InvariantCulture)}";
}
