using System.Text.Json;
using CsCheck;
using CTCal.Core.Diffusers;
using CTCal.Core.Schedulers;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>SchedulerConfig.Parse: valid configs read back; mutated ones give a config or <see cref="DiffusersConfigException"/>.</summary>
public sealed class SchedulerConfigFuzzTests
{
    private static readonly Type[] Documented = [typeof(DiffusersConfigException)];

    private static readonly Lazy<string[]> Seeds = new(() => Corpus.Files("diffusers-config", "scheduler.*.json")
        .Where(f => !Path.GetFileName(f).Contains(".crash-") && !Path.GetFileName(f).Contains(".bad-")).Select(File.ReadAllText).ToArray());

    internal sealed record Case(string Json, SchedulerConfig Expected);

    private static readonly Gen<Case> Valid =
        from steps in Gen.Int[2, 2000]
        from betaStart in Gen.Double[1e-6, 0.01]
        from betaEnd in Gen.Double[0.01, 0.5]
        from schedule in Gen.OneOf(SchedulerConfig.BetaSchedules.ToArray())
        from trained in Gen.Bool
        from prediction in Gen.OneOf(SchedulerConfig.PredictionTypes.ToArray())
        from spacing in Gen.OneOf(SchedulerConfig.TimestepSpacings.Append(null).ToArray())
        from offset in Gen.Int[0, 1]
        from order in Gen.Int[1, 2]
        from solver in Gen.OneOf("midpoint", "heun")
        from karras in Gen.Bool
        from clip in Gen.Double[0.1, 10]
        select Make(trained ? Math.Min(steps, 64) : steps, betaStart, betaEnd, schedule, trained, prediction, spacing, offset, order, solver, karras, clip);

    private static Case Make(int steps, double betaStart, double betaEnd, string schedule, bool trained, string prediction, string? spacing,
        int offset, int order, string solver, bool karras, double clip)
    {
        double[]? betas = trained ? Enumerable.Range(0, steps).Select(i => betaStart + (betaEnd - betaStart) * i / steps).ToArray() : null;
        var fields = new Dictionary<string, object?>
        {
            ["_class_name"] = "DDIMScheduler", ["num_train_timesteps"] = steps, ["beta_start"] = betaStart, ["beta_end"] = betaEnd,
            ["beta_schedule"] = schedule, ["trained_betas"] = betas, ["prediction_type"] = prediction, ["timestep_spacing"] = spacing,
            ["steps_offset"] = offset, ["solver_order"] = order, ["solver_type"] = solver, ["use_karras_sigmas"] = karras,
            ["clip_sample_range"] = clip, ["thresholding"] = false,
        };
        var expected = new SchedulerConfig
        {
            ClassName = "DDIMScheduler", NumTrainTimesteps = steps, BetaStart = betaStart, BetaEnd = betaEnd, BetaSchedule = schedule,
            TrainedBetas = betas, PredictionType = prediction, TimestepSpacing = spacing, StepsOffset = offset, SolverOrder = order,
            SolverType = solver, UseKarrasSigmas = karras, ClipSampleRange = clip,
        };
        return new Case(JsonSerializer.Serialize(fields), expected);
    }

    [Fact]
    public void Valid_scheduler_configs_read_back_field_for_field()
    {
        Valid.Run(c =>
        {
            var config = FuzzBounds.Check(() => SchedulerConfig.Parse(c.Json), c.Json, []).Value!;
            var e = c.Expected;
            Assert.Equal((e.ClassName, e.NumTrainTimesteps, e.BetaStart, e.BetaEnd, e.BetaSchedule, e.PredictionType, e.TimestepSpacing),
                (config.ClassName, config.NumTrainTimesteps, config.BetaStart, config.BetaEnd, config.BetaSchedule, config.PredictionType, config.TimestepSpacing));
            Assert.Equal((e.StepsOffset, e.SolverOrder, e.SolverType, e.UseKarrasSigmas, e.ClipSampleRange),
                (config.StepsOffset, config.SolverOrder, config.SolverType, config.UseKarrasSigmas, config.ClipSampleRange));
            Assert.Equal(e.TrainedBetas, config.TrainedBetas);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Mutated_scheduler_configs_parse_or_throw_DiffusersConfigException()
    {
        var source = Gen.OneOf(Gen.Int[0, Seeds.Value.Length - 1].Select(i => Seeds.Value[i]), Valid.Select(c => c.Json));
        Gen.Select(source, JsonMutator.Mutations()).Run((json, mutations) =>
        {
            string mutated = JsonMutator.Apply(json, mutations);
            FuzzBounds.Check(() => SchedulerConfig.Parse(mutated), $"{FuzzBounds.Describe(mutated)} ({string.Join(", ", mutations)})", Documented);
        }, iter: FuzzBounds.Iterations);
    }

    [Fact]
    public void Corpus_files_replay()
    {
        foreach (string file in Corpus.Files("diffusers-config", "scheduler.*.json"))
        {
            string name = Path.GetFileName(file);
            bool expectValid = !name.Contains(".crash-") && !name.Contains(".bad-");
            var outcome = FuzzBounds.Check(() => SchedulerConfig.Parse(File.ReadAllText(file), file), file, Documented);
            Assert.True(outcome.Succeeded == expectValid, $"{file}: {outcome.Error?.Message ?? "parsed"}");
        }
    }
}
