using System.Globalization;

namespace CTCal.Contracts;

/// <summary>One typed value of a <see cref="FineTuneJob"/>, by key (<c>lora-rank</c> = 8); applied with <see cref="FineTuneJobJson.With(FineTuneJob, IEnumerable{FineTuneJobSetting})"/>.</summary>
public sealed record FineTuneJobSetting(string Key, object? Value)
{
    /// <summary>The setting as the trainer's command line spells it: <c>--lora-rank 8</c>, <c>--full</c>, <c>--layers a b</c>.</summary>
    public override string ToString() => Value switch
    {
        null => $"--{Key} null",
        true => $"--{Key}",
        string text => $"--{Key} {text}",
        IEnumerable<string> list => string.Join(' ', new[] { $"--{Key}" }.Concat(list)),
        IFormattable f => $"--{Key} {f.ToString(null, CultureInfo.InvariantCulture)}",
        _ => $"--{Key} {Value}",
    };
}
