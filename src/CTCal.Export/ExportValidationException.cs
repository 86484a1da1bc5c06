namespace CTCal.Export;

/// <summary>
/// The inputs of an export are unusable (missing or mis-shaped tensors, unreadable config or file, unsupported block type,
/// bad LoRA). Raised before anything is written; <see cref="Problems"/> lists every problem found, each naming the file,
/// field or tensor at fault.
/// </summary>
public sealed class ExportValidationException : Exception
{
    public ExportValidationException(IReadOnlyList<string> problems, Exception? inner = null)
        : base(Format(problems), inner)
    {
        Problems = problems;
    }

    public IReadOnlyList<string> Problems { get; }

    private static string Format(IReadOnlyList<string> problems) =>
        problems.Count == 1
            ? $"Cannot export: {problems[0]}"
            : $"Cannot export ({problems.Count} problems):{Environment.NewLine}  " + string.Join(Environment.NewLine + "  ", problems.Take(50))
              + (problems.Count > 50 ? $"{Environment.NewLine}  ... and {problems.Count - 50} more" : "");
}
