using System.Diagnostics;
using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.Threading;

namespace CTCal.MainJob;

/// <summary>One fine-tune: a method, a seed and the hyper-parameters that may differ between sweep points.</summary>
public sealed record FineTuneJob(string ModelId, string Method, long Seed, double LearningRate, double CtcalWeight);

/// <summary>A finished fine-tune: its loss curve (from the trainer's step events) and wall time.</summary>
/// <param name="Attempts">Trainer runs it took: more than 1 when a run failed and the job was run again from the start (same seed).</param>
public sealed record FineTuneOutcome(FineTuneJob Job, IReadOnlyList<LossPoint> Loss, double Seconds, string Checkpoint, int Attempts = 1);

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

    /// <summary>Trainer options the job sets itself; passing them through is refused.</summary>
    public static readonly IReadOnlyList<string> ReservedArguments =
    [
        "--model", "--data", "--out", "--steps", "--method", "--lr", "--batch-size", "--resolution", "--seed", "--warmup",
        "--threads", "--progress", "--save-every", "--pixel-weight", "--semantic-weight", "--config", "--resume",
    ];

    /// <summary>The jobs of the main run: for each seed, vanilla then CTCal.</summary>
    public static IReadOnlyList<FineTuneJob> MainJobs(MainJobRecipe recipe) =>
        recipe.Seeds.SelectMany(seed => new[]
        {
            new FineTuneJob($"{Vanilla}-s{seed}", Vanilla, seed, recipe.LearningRate, recipe.CtcalWeight),
            new FineTuneJob($"{Ctcal}-s{seed}", Ctcal, seed, recipe.LearningRate, recipe.CtcalWeight),
        }).ToList();

    /// <summary>The trainer arguments of <paramref name="job"/> (after <c>--model --data --out --steps</c>, which the plugin adds).</summary>
    public static IReadOnlyList<string> TrainerArguments(FineTuneJob job, MainJobRecipe recipe, int threads, IReadOnlyList<string> extra)
    {
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        var args = new List<string>
        {
            "--method", job.Method,
            "--lr", F(job.LearningRate),
            "--batch-size", recipe.BatchSize.ToString(CultureInfo.InvariantCulture),
            "--resolution", recipe.Resolution.ToString(CultureInfo.InvariantCulture),
            "--seed", job.Seed.ToString(CultureInfo.InvariantCulture),
            "--warmup", recipe.Warmup.ToString(CultureInfo.InvariantCulture),
            "--threads", threads.ToString(CultureInfo.InvariantCulture),
            "--save-every", "0",
        };
        if (job.Method == Ctcal)
        {
            // The trainer's defaults are pixel 1, semantic 0.5, balance 0.1: the CTCal weight scales the three terms that reach
            // the UNet (an explicit --balance-weight wins); reconstruction trains only the map autoencoder and stays.
            args.AddRange(["--pixel-weight", F(1.0 * job.CtcalWeight), "--semantic-weight", F(0.5 * job.CtcalWeight)]);
            if (!extra.Contains("--balance-weight"))
            {
                args.AddRange(["--balance-weight", F(job.CtcalWeight / 10)]);
            }
        }

        args.AddRange(extra);
        return args;
    }

    /// <summary>
    /// Runs <paramref name="jobs"/>, at most <paramref name="parallel"/> at a time. <paramref name="onStep"/> gets each
    /// job's step events (for progress). The first failure cancels the rest and is rethrown.
    /// </summary>
    public static async Task<IReadOnlyList<FineTuneOutcome>> RunAsync(
        IFineTuner tuner, string baseModel, string data, string runsFolder, IReadOnlyList<FineTuneJob> jobs, MainJobRecipe recipe,
        int threads, int parallel, IReadOnlyList<string> extra, Action<FineTuneJob, OperationProgress> onStep, CancellationToken ct)
    {
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var gate = new SemaphoreSlim(parallel);
        var tasks = jobs.Select(async job =>
        {
            await gate.WaitAsync(failed.Token);
            try
            {
                return await RunOneAsync(tuner, baseModel, data, runsFolder, job, recipe, threads, extra, onStep, failed.Token);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                failed.Cancel();
                throw;
            }
            finally
            {
                gate.Release();
            }
        }).ToList();
        try
        {
            return await Task.WhenAll(tasks);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // Another job failed and cancelled this one: report the failure, not the cancellation.
            var failure = tasks.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!).FirstOrDefault();
            if (failure is not null)
            {
                throw failure;
            }

            throw;
        }
    }

    /// <summary>
    /// Trainer runs per job: a failed run is started again from scratch (same seed, so the same result), up to this many
    /// runs, then the failure stands. The trainer sporadically fails with libtorch's "Expected false to be true ...
    /// toDouble/toFloat" when the GC finalizes an implicitly converted TorchSharp Scalar while a native call still reads it.
    /// </summary>
    public const int MaxAttempts = 3;

    private static readonly NLog.Logger Log = NLog.LogManager.GetLogger("ctcal-main.finetune");

    private static async Task<FineTuneOutcome> RunOneAsync(
        IFineTuner tuner, string baseModel, string data, string runsFolder, FineTuneJob job, MainJobRecipe recipe, int threads,
        IReadOnlyList<string> extra, Action<FineTuneJob, OperationProgress> onStep, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return await RunAttemptAsync(tuner, baseModel, data, runsFolder, job, recipe, threads, extra, onStep, ct) with { Attempts = attempt };
            }
            catch (FineTuneException e) when (attempt < MaxAttempts && !ct.IsCancellationRequested)
            {
                Log.Warn("{0}; running {1} again from the start (attempt {2} of {3})", e.Message.Split('\n')[0].TrimEnd(), job.ModelId, attempt + 1, MaxAttempts);
                string failedLog = Path.Combine(runsFolder, job.ModelId, "train.log");
                if (File.Exists(failedLog))
                {
                    File.Copy(failedLog, Path.Combine(runsFolder, $"{job.ModelId}.attempt{attempt}.train.log"), overwrite: true);
                }
            }
        }
    }

    private static async Task<FineTuneOutcome> RunAttemptAsync(
        IFineTuner tuner, string baseModel, string data, string runsFolder, FineTuneJob job, MainJobRecipe recipe, int threads,
        IReadOnlyList<string> extra, Action<FineTuneJob, OperationProgress> onStep, CancellationToken ct)
    {
        string output = Path.Combine(runsFolder, job.ModelId);
        if (Directory.Exists(output))
        {
            Directory.Delete(output, recursive: true);
        }

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

            onStep(job, p);
        });
        var request = new FineTuneRequest(baseModel, data, output, job.ModelId, recipe.Steps, TrainerArguments(job, recipe, threads, extra));
        var clock = Stopwatch.StartNew();
        FineTuneResult result;
        try
        {
            result = await tuner.FineTuneAsync(request, progress, ct);
        }
        catch (FineTuneException e)
        {
            throw new FineTuneException($"fine-tune {job.ModelId} failed (log: {Path.Combine(output, "train.log")}): {e.Message}", e);
        }

        List<LossPoint> curve;
        lock (loss)
        {
            curve = loss.OrderBy(p => p.Step).ToList();
        }

        return new FineTuneOutcome(job, curve, clock.Elapsed.TotalSeconds, result.CheckpointFolder);
    }
}
