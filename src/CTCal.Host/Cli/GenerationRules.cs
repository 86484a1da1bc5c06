using System.Text.RegularExpressions;
using CTCal.Contracts;
using CTCal.Core.Models;
using CTCal.Core.Schedulers;

namespace CTCal.Host.Cli;

/// <summary>
/// The host's checks of a generation request before it reaches a plugin, shared by <c>ctcal-host generate</c> and the
/// web server (<c>ctcal-host serve</c>) so the two accept and refuse the same values. Each problem names its field with
/// the CLI option's name (<c>steps</c>, <c>width</c>, ...); the plugin still applies the checks that need the model
/// (VAE scale factor, a fixed-size export, image-to-image without a VAE encoder).
/// </summary>
public static partial class GenerationRules
{
    /// <summary>Largest width or height accepted.</summary>
    public const int MaxSide = 4096;

    /// <summary>Most denoising steps accepted.</summary>
    public const int MaxSteps = 1000;

    /// <summary>Most images in one request.</summary>
    public const int MaxCount = 64;

    /// <summary>Largest guidance scale accepted.</summary>
    public const double MaxGuidance = 100;

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex ModelIdPattern();

    /// <summary>Whether <paramref name="id"/> can name a model folder (letters, digits, '.', '-', '_'; not starting with '.' or '-').</summary>
    public static bool IsModelId(string? id) => id is not null && ModelIdPattern().IsMatch(id) && !id.Contains("..", StringComparison.Ordinal);

    /// <summary>The problems of <paramref name="request"/>, each with the field it concerns; empty when it may be sent to a plugin.</summary>
    public static IReadOnlyList<InputProblem> Problems(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var problems = new List<InputProblem>();
        void Check(bool ok, string field, string message)
        {
            if (!ok)
            {
                problems.Add(new InputProblem(field, message));
            }
        }

        Check(IsModelId(RequestModelId.IdOf(request.Model)), "model", $"Model '{request.Model}' is not a model id (letters, digits, '.', '-', '_')");
        Check(!string.IsNullOrWhiteSpace(request.Prompt), "prompt", "Prompt must not be empty");
        foreach (var (field, name, value) in new[] { ("width", "Width", request.Width), ("height", "Height", request.Height) })
        {
            Check(value is null || (value is >= 8 and <= MaxSide && value % 8 == 0), field, $"{name} must be a multiple of 8 in [8, {MaxSide}] (got {value})");
        }

        Check(request.Steps is >= 1 and <= MaxSteps, "steps", $"Steps must be in [1, {MaxSteps}] (got {request.Steps})");
        Check(double.IsFinite(request.GuidanceScale) && request.GuidanceScale is >= 0 and <= MaxGuidance, "guidance", $"Guidance must be a finite number in [0, {MaxGuidance}] (got {request.GuidanceScale})");
        Check(request.Seed is null or >= 0, "seed", $"Seed must be >= 0 (got {request.Seed})");
        Check(request.BatchCount is >= 1 and <= MaxCount, "count", $"Count must be in [1, {MaxCount}] (got {request.BatchCount})");
        Check(request.Scheduler is null || SchedulerFactory.Names.Contains(request.Scheduler.Trim().ToLowerInvariant())
                || SchedulerFactory.FlowMatchNames.Contains(request.Scheduler.Trim(), StringComparer.OrdinalIgnoreCase),
            "scheduler", $"Scheduler '{request.Scheduler}' is unknown (known: {string.Join(", ", SchedulerFactory.Names.Concat(SchedulerFactory.FlowMatchNames))})");
        Check(double.IsFinite(request.Strength) && request.Strength is >= 0 and <= 1, "strength", $"Strength must be in [0, 1] (got {request.Strength})");
        return problems;
    }

    /// <summary>Throws <see cref="InputException"/> for the first problem of <paramref name="request"/> (see <see cref="Problems"/>).</summary>
    public static void Validate(GenerationRequest request)
    {
        var problems = Problems(request);
        if (problems.Count > 0)
        {
            throw new InputException(problems);
        }
    }
}

/// <summary>One invalid input: the field (the CLI option's name without dashes) and what is wrong with it.</summary>
public sealed record InputProblem(string Field, string Message);

/// <summary>Invalid user input found by the host before any plugin call or output (CLI exit code 2, HTTP 400).</summary>
public sealed class InputException(IReadOnlyList<InputProblem> problems)
    : ArgumentException(string.Join("; ", problems.Select(p => p.Message)))
{
    /// <summary>Creates the exception for one problem.</summary>
    public InputException(string field, string message)
        : this([new InputProblem(field, message)])
    {
    }

    /// <summary>Every problem found.</summary>
    public IReadOnlyList<InputProblem> Problems { get; } = problems;
}
