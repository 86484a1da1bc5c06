using CTCal.Core.Diffusers;
using CTCal.Core.Schedulers;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// <see cref="FlowMatchEulerDiscreteScheduler"/> beyond the diffusers fixture: its config keys, its factory name, the
/// training tables, the forward process and the exactness of Euler steps on a straight (rectified) path.
/// </summary>
public sealed class FlowMatchSchedulerTests
{
    /// <summary>stabilityai/stable-diffusion-3-medium-diffusers' scheduler/scheduler_config.json.</summary>
    private const string Sd3MediumConfig =
        """{"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.29.0.dev0", "num_train_timesteps": 1000, "shift": 3.0}""";

    private static FlowMatchEulerDiscreteScheduler Create(double shift = 3.0, int trainSteps = 1000) =>
        new(new SchedulerConfig { Shift = shift, NumTrainTimesteps = trainSteps });

    [Fact]
    public void Sd3_medium_config_reads_the_shift_and_the_factory_creates_the_scheduler_by_class_name()
    {
        var config = SchedulerConfig.Parse(Sd3MediumConfig);
        Assert.Equal(("FlowMatchEulerDiscreteScheduler", 3.0, 1000), (config.ClassName, config.Shift, config.NumTrainTimesteps));
        var scheduler = Assert.IsType<FlowMatchEulerDiscreteScheduler>(SchedulerFactory.Create(config.ClassName!, config));
        Assert.Same(config, scheduler.Config);
        Assert.IsType<FlowMatchEulerDiscreteScheduler>(SchedulerFactory.Create("flowmatcheulerdiscretescheduler", config));
        Assert.Equal(1.0, SchedulerConfig.Parse("{}").Shift);
    }

    [Fact]
    public void Flow_matching_is_kept_out_of_the_noise_prediction_sampler_names()
    {
        Assert.DoesNotContain(FlowMatchEulerDiscreteScheduler.ClassName, SchedulerFactory.Names, StringComparer.OrdinalIgnoreCase);
        Assert.Equal([FlowMatchEulerDiscreteScheduler.ClassName], SchedulerFactory.FlowMatchNames);
        var e = Assert.Throws<ArgumentException>(() => SchedulerFactory.Create("flow_euler", new SchedulerConfig()));
        Assert.Contains("FlowMatchEulerDiscreteScheduler", e.Message);
    }

    [Fact]
    public void Dynamic_shifting_is_refused_naming_the_key()
    {
        const string json = """{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0, "use_dynamic_shifting": true, "base_shift": 0.5, "max_shift": 1.15}""";
        var e = Assert.Throws<DiffusersConfigException>(() => SchedulerConfig.Parse(json, "sd3/scheduler/scheduler_config.json"));
        Assert.Equal("use_dynamic_shifting", e.Field);
        Assert.Contains("use_dynamic_shifting", e.Message);
        Assert.Contains("sd3/scheduler/scheduler_config.json", e.Message);
        // Explicitly off is accepted (diffusers 0.29.2 writes the key into saved configs).
        Assert.Equal(3.0, SchedulerConfig.Parse("""{"shift": 3.0, "use_dynamic_shifting": false}""").Shift);
    }

    [Theory]
    [InlineData("""{"shift": 0}""", "shift")]
    [InlineData("""{"shift": -2.5}""", "shift")]
    [InlineData("""{"shift": "three"}""", "shift")]
    [InlineData("""{"invert_sigmas": true}""", "invert_sigmas")]
    [InlineData("""{"shift_terminal": 0.1}""", "shift_terminal")]
    [InlineData("""{"use_exponential_sigmas": true}""", "use_exponential_sigmas")]
    [InlineData("""{"use_beta_sigmas": true}""", "use_beta_sigmas")]
    [InlineData("""{"stochastic_sampling": true}""", "stochastic_sampling")]
    public void Unsupported_or_invalid_flow_matching_keys_are_refused_by_name(string json, string field)
    {
        var e = Assert.Throws<DiffusersConfigException>(() => SchedulerConfig.Parse(json));
        Assert.Equal(field, e.Field);
    }

    [Fact]
    public void Karras_sigmas_are_refused()
    {
        var e = Assert.Throws<DiffusersConfigException>(() => new FlowMatchEulerDiscreteScheduler(new SchedulerConfig { UseKarrasSigmas = true }));
        Assert.Equal("use_karras_sigmas", e.Field);
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    [InlineData(0.5)]
    public void Training_tables_are_the_shifted_t_over_n_descending(double shift)
    {
        var scheduler = Create(shift);
        Assert.Equal(1000, scheduler.Timesteps.Count);
        Assert.Equal(1000, scheduler.Sigmas.Count);
        foreach (int i in new[] { 0, 1, 499, 998, 999 })
        {
            // float32 arithmetic as torch does it: a few ulps (6e-8 each below 1) from the exact value.
            double s = (1000.0 - i) / 1000.0, expected = shift * s / (1 + (shift - 1) * s);
            Assert.True(Math.Abs(scheduler.Sigmas[i] - expected) <= 3e-7, $"shift {shift}, sigma[{i}] = {scheduler.Sigmas[i]} vs {expected}");
            Assert.Equal((double)(scheduler.Sigmas[i] * 1000f), scheduler.Timesteps[i]);
            Assert.True(Math.Abs(scheduler.Timesteps[i] - 1000 * expected) <= 4e-4, $"shift {shift}, timestep[{i}] = {scheduler.Timesteps[i]}");
        }
        Assert.Equal(1f, scheduler.Sigmas[0]);
        Assert.All(scheduler.Sigmas.Zip(scheduler.Sigmas.Skip(1)), p => Assert.True(p.Second < p.First));
        Assert.Equal(FlowMatchEulerDiscreteScheduler.TrainingSigmas(1000, shift), scheduler.Sigmas);
    }

    [Fact]
    public void Add_noise_is_the_straight_path_between_data_and_noise()
    {
        var scheduler = Create();
        float[] x0 = SchedulerToyModel.StartLatent(64, seed: 21), eps = SchedulerToyModel.StartLatent(64, seed: 22);
        var xt = new float[64];
        void Check(int index)
        {
            double t = scheduler.Timesteps[index], sigma = scheduler.Sigmas[index];
            scheduler.AddNoise(x0, eps, t, xt);
            for (int i = 0; i < xt.Length; i++)
                Assert.True(Math.Abs(xt[i] - (sigma * eps[i] + (1 - sigma) * x0[i])) <= 1e-6, $"t={t} i={i}");
        }
        foreach (int index in new[] { 0, 300, 999 }) Check(index); // the training table, before SetTimesteps
        scheduler.SetTimesteps(28);
        foreach (int index in new[] { 0, 13, 27 }) Check(index);
        scheduler.AddNoise(x0, eps, scheduler.Timesteps[0], xt);
        Assert.Equal(eps, xt); // sigma 1 is pure noise
        Assert.Throws<ArgumentException>(() => scheduler.AddNoise(x0, eps, 123.456, xt));
    }

    [Theory]
    [InlineData(1.0, 10)]
    [InlineData(3.0, 28)]
    [InlineData(3.0, 1)]
    public void Euler_steps_with_the_exact_velocity_follow_the_path_and_end_at_the_data(double shift, int steps)
    {
        // On x_sigma = (1 - sigma) x0 + sigma eps the velocity eps - x0 is constant, so every Euler step is exact.
        var scheduler = Create(shift);
        scheduler.SetTimesteps(steps);
        float[] x0 = SchedulerToyModel.StartLatent(64, seed: 31), eps = SchedulerToyModel.StartLatent(64, seed: 32);
        float[] v = x0.Zip(eps, (a, e) => e - a).ToArray();
        float[] x = eps.Select(e => e * scheduler.InitNoiseSigma).ToArray();
        for (int k = 0; k < steps; k++)
        {
            double t = scheduler.Timesteps[k];
            scheduler.Step(v, t, x);
            double sigma = scheduler.Sigmas[k + 1];
            for (int i = 0; i < x.Length; i++)
                Assert.True(Math.Abs(x[i] - ((1 - sigma) * x0[i] + sigma * eps[i])) <= 2e-6, $"step {k} i={i}: {x[i]}");
        }
        Assert.Equal(0f, scheduler.Sigmas[^1]);
        Assert.Throws<InvalidOperationException>(() => scheduler.Step(v, scheduler.Timesteps[^1], x));
    }

    [Fact]
    public void Step_needs_set_timesteps_and_a_scheduled_timestep()
    {
        var scheduler = Create();
        var x = new float[4];
        Assert.Throws<InvalidOperationException>(() => scheduler.Step(new float[4], 1000, x));
        scheduler.SetTimesteps(10);
        Assert.Throws<ArgumentException>(() => scheduler.Step(new float[4], 500.5, x));
        Assert.Throws<ArgumentException>(() => scheduler.Step(new float[3], 1000, x));
        Assert.Throws<ArgumentOutOfRangeException>(() => scheduler.SetTimesteps(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => scheduler.SetTimesteps(1001));
    }

    [Fact]
    public void Scale_model_input_leaves_the_sample_unchanged()
    {
        var scheduler = Create();
        scheduler.SetTimesteps(5);
        float[] x = SchedulerToyModel.StartLatent(16, seed: 41), copy = (float[])x.Clone();
        scheduler.ScaleModelInput(x, scheduler.Timesteps[2]);
        Assert.Equal(copy, x);
    }
}
