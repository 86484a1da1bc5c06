using System.Globalization;
using CTCal.Core.Models;
using CTCal.Plugin.Models;

namespace CTCal.Plugin.Pipeline;

/// <summary>
/// Step caching (DeepCache, Ma et al. 2023, with the uniform schedule of its reference implementation): with interval N,
/// steps 0, N, 2N, ... run the full UNet, which also returns its deep feature (<see cref="ManifestStepCache.FeatureName"/>);
/// the N - 1 steps after each run the shallow UNet on that feature. N = 1 is the plain sampler. The interval comes from the
/// request (<c>"&lt;model id&gt;?stepCache=N"</c>, so no contract type changes) or the plugin's <c>stepCache</c> setting.
/// </summary>
internal static class StepCaching
{
    /// <summary>The per-request option's name in a model id (<c>base?stepCache=2</c>).</summary>
    public const string OptionName = RequestModelId.StepCacheOption;

    /// <summary>Splits <c>"&lt;id&gt;?stepCache=N"</c> into the model id and the interval asked for (null when none is).</summary>
    /// <exception cref="ArgumentException">An unknown option, or an interval that is not a whole number from 1 to <see cref="Hosting.PluginSettings.MaxStepCache"/>.</exception>
    public static (string Id, int? Interval) ParseModel(string model)
    {
        var (id, option) = RequestModelId.Split(model);
        if (option is null)
        {
            return (id, null);
        }

        int eq = option.IndexOf('=', StringComparison.Ordinal);
        string name = eq < 0 ? option : option[..eq];
        if (!string.Equals(name, OptionName, StringComparison.Ordinal))
        {
            throw new ArgumentException($"Model '{model}': unknown option '{name}' after '?' (known: {OptionName}=N)", nameof(model));
        }

        string value = eq < 0 ? "" : option[(eq + 1)..];
        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int interval) || interval < 1 || interval > Hosting.PluginSettings.MaxStepCache)
        {
            throw new ArgumentException(
                $"Model '{model}': {OptionName} must be a whole number of steps from 1 (no caching) to {Hosting.PluginSettings.MaxStepCache}, got '{value}'", nameof(model));
        }

        return (id, interval);
    }

    /// <summary>
    /// The interval a generation with <paramref name="model"/> uses: the requested one, else <paramref name="setting"/>.
    /// An interval above 1 needs the step-cache graphs: asked for in the request, their absence is refused; from the
    /// setting, the model runs uncached and <paramref name="note"/> says why.
    /// </summary>
    /// <exception cref="ArgumentException">The request asks for caching on a model exported without the step-cache graphs.</exception>
    public static int Resolve(int? requested, int setting, OnnxModelFolder model, out string? note)
    {
        note = null;
        int interval = requested ?? setting;
        if (interval == 1 || model.StepCache is not null)
        {
            return interval;
        }

        string why = model.IsSD3
            ? $"Model '{model.Info.Id}' is SD3 (a transformer): step caching is for UNet models"
            : $"Model '{model.Info.Id}' was exported without the step-cache graphs ({ManifestStepCache.ShallowGraph} and unet's {ManifestStepCache.FeatureName} output); " +
              "export it again with 'ctcal-export export --step-cache-branch 1' (or a larger branch: slower, closer to the full UNet)";
        if (requested is not null)
        {
            throw new ArgumentException($"{why}, or ask for {OptionName}=1", "request");
        }

        note = $"{why}; the plugin's stepCache setting ({setting}) is not applied to it";
        return 1;
    }

    /// <summary>Whether sampler step <paramref name="step"/> (0-based) runs the full UNet.</summary>
    public static bool IsFullStep(int step, int interval) => step % interval == 0;
}

/// <summary>
/// One image's step-cache state: the interval, the sampler step it is at, and the deep feature of the last full step per
/// kind of UNet call (the batch-2 guidance call, or the negative and prompt halves of unbatched guidance).
/// </summary>
internal sealed class StepCacheState
{
    /// <summary>Slots of <see cref="Store"/>: the batched guidance call, its negative half, its prompt half (and unguided calls).</summary>
    public const int Both = 0, Negative = 1, Prompt = 2;

    private readonly (float[] Data, long[] Shape)?[] _features = new (float[], long[])?[3];

    public StepCacheState(int interval)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(interval, 2);
        Interval = interval;
    }

    /// <summary>Full step every <see cref="Interval"/> steps.</summary>
    public int Interval { get; }

    /// <summary>The sampler step (0-based) the next UNet calls belong to; set by the sampler loop.</summary>
    public int Step { get; set; }

    /// <summary>Whether <see cref="Step"/> runs the full UNet (<see cref="StepCaching.IsFullStep"/>).</summary>
    public bool IsFullStep => StepCaching.IsFullStep(Step, Interval);

    public void Store(int slot, float[] feature, long[] shape) => _features[slot] = (feature, shape);

    /// <exception cref="InvalidOperationException">No full step has stored this slot's feature (a sampler bug, named with the step).</exception>
    public (float[] Data, long[] Shape) Feature(int slot, string where) =>
        _features[slot] ?? throw new InvalidOperationException($"{where}: shallow step {Step} has no cached feature (no full step ran before it)");
}
