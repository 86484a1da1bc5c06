using CTCal.Core.Diffusers;
using CTCal.Core.Schedulers;
using Xunit;

namespace CTCal.Core.Tests;

public sealed class SchedulerConfigTests
{
    private static string Sd1ConfigPath => Path.Combine(CTCal.Tests.TestPaths.Fixtures, "tiny-sd1", "scheduler", "scheduler_config.json");

    [Fact]
    public void Loads_the_sd1_pipeline_scheduler_config()
    {
        var c = SchedulerConfig.Load(Sd1ConfigPath);
        Assert.Equal("PNDMScheduler", c.ClassName);
        Assert.Equal(1000, c.NumTrainTimesteps);
        Assert.Equal(0.00085, c.BetaStart);
        Assert.Equal(0.012, c.BetaEnd);
        Assert.Equal("scaled_linear", c.BetaSchedule);
        Assert.Null(c.TrainedBetas);
        Assert.Equal("epsilon", c.PredictionType);
        Assert.Equal("leading", c.TimestepSpacing);
        Assert.Equal(1, c.StepsOffset);
        Assert.False(c.SetAlphaToOne);
        Assert.True(c.SkipPrkSteps);
        Assert.Null(c.ClipSample); // not in the file: DDIM/DDPM then use their class default (true)
        Assert.Equal(Sd1ConfigPath, c.File);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Every_sampler_runs_from_the_sd1_config(string name)
    {
        var s = SchedulerFactory.Create(name, SchedulerConfig.Load(Sd1ConfigPath));
        float[] x = SchedulerToyModel.StartLatent();
        float[] result = SchedulerToyModel.Rollout(s, 20, x, new GaussianNoise(3), matchStart: false);
        Assert.Equal(name == "pndm" ? 21 : 20, s.Timesteps.Count);
        Assert.All(result, v => Assert.True(float.IsFinite(v)));
        // Timesteps descend within the training range.
        Assert.All(s.Timesteps, t => Assert.InRange(t, 0, 999));
        Assert.True(s.Timesteps[0] > s.Timesteps[^1]);
    }

    public static TheoryData<string> Names() => new(SchedulerFactory.Names);

    [Fact]
    public void Class_defaults_apply_when_the_file_does_not_set_a_field()
    {
        var bare = SchedulerConfig.Parse("""{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}""");
        // DDIM: leading spacing, set_alpha_to_one true; Euler: linspace; DPM-Solver: linspace over n + 1 points.
        var ddim = SchedulerFactory.Create("ddim", bare);
        ddim.SetTimesteps(10);
        Assert.Equal(900.0, ddim.Timesteps[0]);
        var euler = SchedulerFactory.Create("euler", bare);
        euler.SetTimesteps(10);
        Assert.Equal(999.0, euler.Timesteps[0]);
        Assert.Equal(0.0, euler.Timesteps[^1]);
    }

    [Theory]
    [InlineData("""{"beta_schedule": "cosine"}""", "beta_schedule")]
    [InlineData("""{"prediction_type": "flow"}""", "prediction_type")]
    [InlineData("""{"timestep_spacing": "even"}""", "timestep_spacing")]
    [InlineData("""{"num_train_timesteps": "1000"}""", "num_train_timesteps")]
    [InlineData("""{"rescale_betas_zero_snr": true}""", "rescale_betas_zero_snr")]
    [InlineData("""{"thresholding": true}""", "thresholding")]
    [InlineData("""{"trained_betas": [0.1, 0.2], "num_train_timesteps": 1000}""", "trained_betas")]
    [InlineData("""{"solver_order": 3}""", "solver_order")]
    [InlineData("""{"algorithm_type": "sde-dpmsolver++"}""", "algorithm_type")]
    public void Bad_values_name_the_file_and_field(string json, string field)
    {
        var e = Assert.Throws<DiffusersConfigException>(() => SchedulerConfig.Parse(json, "model/scheduler/scheduler_config.json"));
        Assert.Equal(field, e.Field);
        Assert.Contains("model/scheduler/scheduler_config.json", e.Message);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void Trained_betas_and_cosine_schedules_build_alphas_cumprod()
    {
        double[] trained = Enumerable.Range(0, 10).Select(i => 0.01 + 0.01 * i).ToArray();
        var c = SchedulerConfig.Parse($$"""{"num_train_timesteps": 10, "trained_betas": [{{string.Join(", ", trained)}}]}""");
        double[] ac = NoiseSchedule.AlphasCumprod(c);
        double product = 1;
        for (int i = 0; i < 10; i++)
        {
            product *= 1 - trained[i];
            Assert.Equal(product, ac[i], 6);
        }

        var cosine = NoiseSchedule.AlphasCumprod(new SchedulerConfig { BetaSchedule = "squaredcos_cap_v2" });
        // alpha-bar(t) = f(t) / f(0), f(t) = cos^2(((t / T) + s) / (1 + s) pi / 2), s = 0.008 (Nichol and Dhariwal eq. 17).
        static double F(double t) => Math.Pow(Math.Cos((t / 1000 + 0.008) / 1.008 * Math.PI / 2), 2);
        Assert.Equal(F(500) / F(0), cosine[499], 5);
        Assert.Equal(F(100) / F(0), cosine[99], 5);
    }

    [Fact]
    public void Unknown_scheduler_name_lists_the_known_ones()
    {
        var e = Assert.Throws<ArgumentException>(() => SchedulerFactory.Create("heun", new SchedulerConfig()));
        Assert.Contains("heun", e.Message);
        Assert.Contains("dpmpp_2m_karras", e.Message);
        Assert.Equal(["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "pndm", "lms"], SchedulerFactory.Names);
    }

    [Fact]
    public void Alpha_indexed_samplers_refuse_fractional_or_out_of_range_timesteps()
    {
        var ddim = new DdimScheduler(new SchedulerConfig());
        ddim.SetTimesteps(10);
        var x = new float[4];
        Assert.Throws<ArgumentOutOfRangeException>(() => ddim.Step(x, 500.5, x));
        Assert.Throws<ArgumentOutOfRangeException>(() => ddim.AddNoise(x, x, 1000, x));
        var euler = new EulerDiscreteScheduler(new SchedulerConfig());
        euler.SetTimesteps(10);
        var e = Assert.Throws<ArgumentException>(() => euler.ScaleModelInput(x, 123.0));
        Assert.Contains("123", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => euler.SetTimesteps(0));
    }
}
