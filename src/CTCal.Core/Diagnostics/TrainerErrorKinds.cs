namespace CTCal.Core.Diagnostics;

/// <summary>
/// The <c>kind</c> of the trainer's <c>error</c> event (<c>ctcal-train --progress json</c>, docs/trainer.md), one per
/// exit code, and where a host finds it on the exception that reports the failure: the trainer writes these strings,
/// the plugin's sidecar client puts the event's kind into <see cref="Exception.Data"/> under <see cref="DataKey"/> (the
/// pinned contracts' <c>FineTuneException</c> has no field for it), and callers that retry a failed fine-tune read it
/// there. Only <see cref="Error"/> (an unexpected failure) or a run that died without an error event can go differently
/// when run again; the others fail again the same way.
/// </summary>
public static class TrainerErrorKinds
{
    /// <summary>The <see cref="Exception.Data"/> key of the kind on a fine-tune failure.</summary>
    public const string DataKey = "ctcal.trainer.errorKind";

    /// <summary>An unexpected error (exit code 1).</summary>
    public const string Error = "error";

    /// <summary>Bad arguments, configuration, model folder or dataset (exit code 2).</summary>
    public const string BadInput = "bad_input";

    /// <summary>Training diverged (exit code 3).</summary>
    public const string Diverged = "diverged";

    /// <summary>The output folder cannot be written.</summary>
    public const string OutputNotWritable = "output_not_writable";

    /// <summary>Cancelled.</summary>
    public const string Cancelled = "cancelled";

    /// <summary>The kind a failure carries (<see cref="DataKey"/>), or null when the trainer reported none.</summary>
    public static string? Of(Exception e) => e.Data[DataKey] as string;

    /// <summary>
    /// Whether running the same job again could succeed: the trainer reported no kind (it crashed, or was not this
    /// trainer) or an unexpected <see cref="Error"/>. Bad input, divergence (same seed, same data), an unwritable output
    /// and cancellation repeat.
    /// </summary>
    public static bool MayPassOnRetry(Exception e) => Of(e) is null or Error;
}
