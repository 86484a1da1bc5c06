using System.Diagnostics;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.Diagnostics;
using CTCal.Core.Threading;

namespace CTCal.MainJob;

/// <summary>One fine-tune: a method, a seed and the hyper-parameters that may differ between sweep points.</summary>
public sealed record FineTuneSpec(string ModelId, string Method, long Seed, double LearningRate, double CtcalWeight);

/// <summary>A finished fine-tune: its loss curve (from the trainer's step events) and wall time.</summary>
/// <param name="Attempts">Trainer runs it took: more than 1 when a run failed and the job was run again from the start (same seed).</param>
public sealed record FineTuneOutcome(FineTuneSpec Spec, IReadOnlyList<LossPoint> Loss, double Seconds, string Checkpoint, int Attempts = 1);

/// <summary>One step's losses: total, and the diffusion part (the part both methods share).</summary>
public sealed record LossPoint(long Step, double Loss, double? Diffusion);

/// <summary>
/// Stage d: fine-tunes through the plugin's <see cref="IFineTuner"/> (the trainer runs as a child process and the result
/// is exported and registered as an ONNX model). Both methods get the same data, steps, learning rate, batch, warmup,
/// resolution and seed; only <c>--method</c> and (for CTCal) the alignment weights differ.
/// </summary>
internal static class FineTuneStage
{
    public const string Vanilla = "vanilla";
    public const string Ctcal = "ctcal";

    /// <summary>Trainer job keys the stage sets itself; setting them as overrides is refused.</summary>
    public static readonly IReadOnlyList<string> ReservedKeys =
    [
        "model", "data", "out", "steps", "method", "lr", "batch-size", "resolution", "seed", "warmup",
        "threads", "progress", "save-every", "pixel-weight", "semantic-weight", "resume",
    ];

    /// <summary>The jobs of the main run: for each seed, vanilla then CTCal.</summary>
    public static IReadOnlyList<FineTuneSpec> MainJobs(MainJobRecipe recipe) =>
        recipe.Seeds.SelectMany(seed => new[]
        {
            new FineTuneSpec($"{Vanilla}-s{seed}", Vanilla, seed, recipe.LearningRate, recipe.CtcalWeight),
            new FineTuneSpec($"{Ctcal}-s{seed}", Ctcal, seed, recipe.LearningRate, recipe.CtcalWeight),
        }).ToList();

    /// <summary>The output folder of <paramref name="spec"/>'s trainer run.</summary>
    public static string OutputOf(string runsFolder, FineTuneSpec spec) => Path.Combine(runsFolder, spec.ModelId);

    /// <summary>
    /// The trainer job of <paramref name="spec"/>: the recipe's shared settings, the spec's method, seed and learning rate,
    /// for CTCal the alignment terms at the spec's weight (<see cref="FineTuneJob.WithAlignmentWeight"/>), then the run's
    /// <paramref name="overrides"/> (an explicit <c>balance-weight</c> wins over the scaled one).
    /// </summary>
    public static FineTuneJob TrainerJob(
        FineTuneSpec spec, MainJobRecipe recipe, int threads, IReadOnlyList<FineTuneJobSetting> overrides, string baseModel, string data, string output)
    {
        var job = new FineTuneJob
        {
            Model = baseModel,
            Data = data,
            Out = output,
            Method = spec.Method,
            Steps = recipe.Steps,
            Lr = spec.LearningRate,
            BatchSize = recipe.BatchSize,
            Resolution = recipe.Resolution,
            Seed = spec.Seed,
            Warmup = recipe.Warmup,
            Threads = threads,
            SaveEvery = 0,
        };
        if (spec.Method == Ctcal)
        {
            job = job.WithAlignmentWeight(spec.CtcalWeight);
        }

        return FineTuneJobJson.With(job, overrides);
    }

    /// <summary>
    /// Runs <paramref name="jobs"/>, at most <paramref name="parallel"/> at a time. <paramref name="onStep"/> gets each
    /// job's step events (for progress). The first failure cancels the rest and is rethrown.
    /// </summary>
    public static async Task<IReadOnlyList<FineTuneOutcome>> RunAsync(
        IFineTuner tuner, string baseModel, string data, string runsFolder, IReadOnlyList<FineTuneSpec> specs, MainJobRecipe recipe,
        int threads, int parallel, IReadOnlyList<FineTuneJobSetting> overrides, Action<FineTuneSpec, OperationProgress> onStep, CancellationToken ct)
    {
        return await BoundedParallel.RunAsync(specs, parallel,
            (spec, token) => RunOneAsync(tuner, baseModel, data, runsFolder, spec, recipe, threads, overrides, onStep, token), ct);
    }

    /// <summary>
    /// Trainer runs per job: a failed run is started again from scratch (same seed, so the same result), up to this many
    /// runs, then the failure stands. The trainer sporadically fails with libtorch's "Expected false to be true ...
    /// toDouble/toFloat" when the GC finalizes an implicitly converted TorchSharp Scalar while a native call still reads it.
    /// </summary>
    public const int MaxAttempts = 3;

    private static readonly NLog.Logger Log = NLog.LogManager.GetLogger("ctcal-main.finetune");

    /// <summary>
    /// Runs <paramref name="attempt"/> (given its number, from 1) until it succeeds, at most <see cref="MaxAttempts"/>
    /// times: <paramref name="output"/> (the trainer's folder) is cleared before each run; after a failed run its
    /// train.log is kept beside the folder as <c>&lt;output&gt;.attempt&lt;n&gt;.train.log</c> and the run starts again
    /// from scratch (same job, so the same result); the last failure is rethrown naming the log. A failure the trainer
    /// reports as one that would repeat (bad input, divergence, an unwritable output: <see cref="TrainerErrorKinds.MayPassOnRetry"/>)
    /// is rethrown at once.
    /// </summary>
    internal static async Task<T> WithAttemptsAsync<T>(string id, string output, Func<int, Task<T>> attempt, CancellationToken ct)
    {
        for (int n = 1; ; n++)
        {
            if (Directory.Exists(output))
            {
                Directory.Delete(output, recursive: true);
            }

            try
            {
                return await attempt(n);
            }
            catch (FineTuneException e)
            {
                string log = Path.Combine(output, "train.log");
                var failure = new FineTuneException($"fine-tune {id} failed (log: {log}): {e.Message}", e);
                if (n >= MaxAttempts || ct.IsCancellationRequested || !TrainerErrorKinds.MayPassOnRetry(e))
                {
                    throw failure;
                }

                Log.Warn("{0}; running {1} again from the start (attempt {2} of {3})", failure.Message.Split('\n')[0].TrimEnd(), id, n + 1, MaxAttempts);
                if (File.Exists(log))
                {
                    File.Copy(log, $"{output}.attempt{n}.train.log", overwrite: true);
                }
            }
        }
    }

    private static Task<FineTuneOutcome> RunOneAsync(
        IFineTuner tuner, string baseModel, string data, string runsFolder, FineTuneSpec spec, MainJobRecipe recipe, int threads,
        IReadOnlyList<FineTuneJobSetting> overrides, Action<FineTuneSpec, OperationProgress> onStep, CancellationToken ct) =>
        WithAttemptsAsync(spec.ModelId, OutputOf(runsFolder, spec), async attempt =>
            await RunAttemptAsync(tuner, baseModel, data, runsFolder, spec, recipe, threads, overrides, onStep, ct) with { Attempts = attempt }, ct);

    private static async Task<FineTuneOutcome> RunAttemptAsync(
        IFineTuner tuner, string baseModel, string data, string runsFolder, FineTuneSpec spec, MainJobRecipe recipe, int threads,
        IReadOnlyList<FineTuneJobSetting> overrides, Action<FineTuneSpec, OperationProgress> onStep, CancellationToken ct)
    {
        string output = OutputOf(runsFolder, spec);
        var loss = new List<LossPoint>();
        var progress = new SynchronousProgress<OperationProgress>(p =>
        {
            if (p.Stage == "step" && p.Metrics is { } m && m.TryGetValue("loss", out double l))
            {
                lock (loss)
                {
                    loss.Add(new LossPoint(p.Current, l, m.TryGetValue("diffusion", out double d) ? d : null));
                }
            }

            onStep(spec, p);
        });
        var request = new FineTuneRequest(spec.ModelId, TrainerJob(spec, recipe, threads, overrides, baseModel, data, output));
        var clock = Stopwatch.StartNew();
        var result = await tuner.FineTuneAsync(request, progress, ct);

        List<LossPoint> curve;
        lock (loss)
        {
            curve = loss.OrderBy(p => p.Step).ToList();
        }

        return new FineTuneOutcome(spec, curve, clock.Elapsed.TotalSeconds, result.CheckpointFolder);
    }
}
