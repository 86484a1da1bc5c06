using CTCal.Contracts;
namespace CTCal.MainJob;

/// <summary>Where and how the job runs (the recipe says what it computes).</summary>
public sealed record MainJobOptions
{
    /// <summary>The recipe (defaults or <see cref="MainJobRecipe.Quick"/>, with command-line overrides).</summary>
    public required MainJobRecipe Recipe { get; init; }

    /// <summary>Output folder (absolute): data/, host/, runs/, images/, report.md, report.html, results.json.</summary>
    public required string OutputFolder { get; init; }

    /// <summary>The base model folder (diffusers layout); null: <c>assets/base-model</c> of the repository.</summary>
    public string? BaseModel { get; init; }

    /// <summary>Train the base model from scratch with the recipe in the base's BASE_RECIPE.json instead of using it.</summary>
    public bool FromScratch { get; init; }

    /// <summary>A smoke run (<c>--quick</c>): the report says so.</summary>
    public bool Quick { get; init; }

    /// <summary>Torch threads of each trainer process (and ONNX Runtime intra-op threads of generation).</summary>
    public int Threads { get; init; } = 1;

    /// <summary>Fine-tunes (and generation requests) run at the same time.</summary>
    public int Parallel { get; init; } = 2;

    /// <summary>Further trainer arguments given to every fine-tune of both methods (CTCal options are ignored by vanilla).</summary>
    public IReadOnlyList<FineTuneJobSetting> TrainerOverrides { get; init; } = Array.Empty<FineTuneJobSetting>();

    /// <summary>Whether to write report.md / report.html (the sweep writes its own table instead).</summary>
    public bool WriteReport { get; init; } = true;

    /// <summary>Label of the run in the report (for example <c>main</c>, <c>quick</c>, <c>sweep lr=1e-4 w=0.3</c>).</summary>
    public string Label { get; init; } = "main";

    /// <summary>Checks the options; the message names the option at fault.</summary>
    public void Validate()
    {
        Recipe.Validate();
        if (Threads <= 0)
        {
            throw new ArgumentException($"--threads must be positive, got {Threads}");
        }

        if (Parallel <= 0)
        {
            throw new ArgumentException($"--parallel must be positive, got {Parallel}");
        }

        foreach (var setting in TrainerOverrides)
        {
            if (FineTuneStage.ReservedKeys.Contains(setting.Key))
            {
                throw new ArgumentException($"trainer argument --{setting.Key} is set by the job itself (use the job's own option)");
            }
        }
    }
}
