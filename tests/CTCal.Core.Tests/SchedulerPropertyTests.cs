using CTCal.Core.Schedulers;
using Xunit;
using Xunit.Abstractions;

namespace CTCal.Core.Tests;

/// <summary>Properties of the samplers that the diffusers fixture does not cover (or covers only for epsilon).</summary>
public sealed class SchedulerPropertyTests(ITestOutputHelper output)
{
    private static readonly SchedulerConfig Sd = SchedulerToyModel.Sd;

    private sealed class ZeroNoise : INoiseSource
    {
        public void NextGaussian(Span<float> destination) => destination.Clear();
    }

    private static IDiffusionScheduler Create(string name, string prediction = "epsilon") =>
        SchedulerFactory.Create(name, Sd with { PredictionType = prediction });

    [Fact]
    public void Ddpm_step_without_noise_is_the_posterior_mean_of_eq_11()
    {
        var ddpm = new DdpmScheduler(Sd);
        ddpm.SetTimesteps(1000);
        float[] x0 = SchedulerToyModel.StartLatent(256, seed: 1), eps = SchedulerToyModel.StartLatent(256, seed: 2);
        foreach (int t in new[] { 999, 500, 37, 1 })
        {
            var xt = new float[x0.Length];
            ddpm.AddNoise(x0, eps, t, xt);
            var stepped = (float[])xt.Clone();
            ddpm.Step(eps, t, stepped, new ZeroNoise());
            // DDPM eq. 11: mu = (x_t - beta_t / sqrt(1 - alpha-bar_t) eps) / sqrt(alpha_t), written with the betas directly.
            double beta = NoiseSchedule.Betas(Sd)[t], alphaBar = ddpm.AlphasCumprod[t];
            for (int i = 0; i < xt.Length; i++)
            {
                double mu = (xt[i] - beta / Math.Sqrt(1 - alphaBar) * eps[i]) / Math.Sqrt(1 - beta);
                Assert.True(Math.Abs(mu - stepped[i]) <= 2e-5 * Math.Max(1, Math.Abs(mu)), $"t={t} i={i}: {stepped[i]} vs {mu}");
            }
        }
    }

    [Fact]
    public void Ddpm_last_step_returns_the_clean_sample_and_needs_no_noise()
    {
        var ddpm = new DdpmScheduler(Sd);
        ddpm.SetTimesteps(1000);
        float[] x0 = SchedulerToyModel.StartLatent(64, 3), eps = SchedulerToyModel.StartLatent(64, 4);
        var x = new float[64];
        ddpm.AddNoise(x0, eps, 0, x);
        ddpm.Step(eps, 0, x, noise: null);
        for (int i = 0; i < x.Length; i++) Assert.Equal(x0[i], x[i], 5);
        Assert.Throws<ArgumentNullException>(() => ddpm.Step(eps, 10, x, noise: null));
    }

    [Fact]
    public void Ddpm_sampling_with_a_perfect_model_keeps_the_forward_marginals()
    {
        // With the exact eps of a fixed x0, x_t ~ N(sqrt(a_t) x0, 1 - a_t) must map to x_{t-1} ~ N(sqrt(a_{t-1}) x0, 1 - a_{t-1}).
        const int n = 40000;
        var ddpm = new DdpmScheduler(Sd);
        ddpm.SetTimesteps(50);
        float[] x0 = Enumerable.Repeat(0.7f, n).ToArray();
        var eps = new float[n];
        new GaussianNoise(11).NextGaussian(eps);
        var x = new float[n];
        int t = (int)ddpm.Timesteps[10], prev = (int)ddpm.Timesteps[11];
        ddpm.AddNoise(x0, eps, t, x);
        ddpm.Step(eps, t, x, new GaussianNoise(12));
        double a = ddpm.AlphasCumprod[prev];
        double[] z = x.Select(v => (v - Math.Sqrt(a) * 0.7) / Math.Sqrt(1 - a)).ToArray();
        double mean = z.Average(), std = Math.Sqrt(z.Select(v => (v - mean) * (v - mean)).Average());
        output.WriteLine($"t {t} -> {prev}: standardised mean {mean:F4}, std {std:F4}");
        Assert.InRange(mean, -0.03, 0.03);
        Assert.InRange(std, 0.97, 1.03);
    }

    [Fact]
    public void Add_noise_and_velocity_invert_with_alphas_cumprod()
    {
        var ddpm = new DdpmScheduler(Sd with { PredictionType = "v_prediction" });
        float[] x0 = SchedulerToyModel.StartLatent(128, 5), eps = SchedulerToyModel.StartLatent(128, 6);
        var xt = new float[128];
        var v = new float[128];
        foreach (int t in new[] { 0, 1, 250, 999 })
        {
            ddpm.AddNoise(x0, eps, t, xt);
            ddpm.GetVelocity(x0, eps, t, v);
            double a = ddpm.AlphasCumprod[t], sa = Math.Sqrt(a), sb = Math.Sqrt(1 - a);
            for (int i = 0; i < xt.Length; i++)
            {
                // x0 = sqrt(a) x_t - sqrt(1-a) v and eps = sqrt(1-a) x_t + sqrt(a) v (a rotation by the angle of (sqrt a, sqrt(1-a))).
                Assert.True(Math.Abs(sa * xt[i] - sb * v[i] - x0[i]) < 1e-5, $"x0 t={t}");
                Assert.True(Math.Abs(sb * xt[i] + sa * v[i] - eps[i]) < 1e-5, $"eps t={t}");
            }
        }
        // alphas_cumprod is the running product of 1 - beta, strictly decreasing in (0, 1).
        double[] betas = NoiseSchedule.Betas(Sd);
        Assert.Equal(1 - betas[0], ddpm.AlphasCumprod[0], 7);
        Assert.Equal(ddpm.AlphasCumprod[499] * (1 - betas[500]), ddpm.AlphasCumprod[500], 7);
        Assert.All(ddpm.AlphasCumprod.Zip(ddpm.AlphasCumprod.Skip(1)), p => Assert.True(p.Second < p.First && p.Second > 0));
    }

    public static TheoryData<string> AllNames() => new(SchedulerFactory.Names);

    [Theory]
    [MemberData(nameof(AllNames))]
    public void Epsilon_v_and_sample_predictions_of_the_same_model_give_the_same_result(string name)
    {
        // The same toy model expressed as eps, v and x0: every parameterisation must drive the sampler identically.
        float[] x = SchedulerToyModel.StartLatent();
        float[] Run(string prediction) => SchedulerToyModel.Rollout(Create(name, prediction), 20, x, new GaussianNoise(99));
        float[] eps = Run("epsilon"), v = Run("v_prediction"), sample = Run("sample");
        double dv = SchedulerToyModel.MaxAbsDiff(eps, v), ds = SchedulerToyModel.MaxAbsDiff(eps, sample);
        output.WriteLine($"{name}: |eps - v| {dv:E2}, |eps - sample| {ds:E2}");
        Assert.True(dv < 1e-4, $"{name}: epsilon vs v_prediction differ by {dv:E2}");
        Assert.True(ds < 1e-4, $"{name}: epsilon vs sample differ by {ds:E2}");
    }

    [Fact]
    public void Ddim_and_euler_are_the_same_ode_step()
    {
        // DDIM (eta 0) is Euler's method on x / sqrt(alpha-bar) against sigma = sqrt((1 - alpha-bar) / alpha-bar); with
        // trailing spacing both visit the same integer timesteps, so the rollouts coincide up to float rounding.
        float[] x = SchedulerToyModel.StartLatent();
        foreach (int n in new[] { 10, 25, 50 })
        {
            double d = SchedulerToyModel.MaxAbsDiff(SchedulerToyModel.Rollout(Create("ddim"), n, x), SchedulerToyModel.Rollout(Create("euler"), n, x));
            output.WriteLine($"n={n}: |ddim - euler| {d:E2}");
            Assert.True(d < 1e-4, $"n={n}: {d:E2}");
        }
    }

    [Fact]
    public void Deterministic_samplers_converge_to_the_same_ode_solution()
    {
        // Reference: Richardson extrapolation 2 DDIM(1000) - DDIM(500) of the first-order DDIM solution.
        float[] x = SchedulerToyModel.StartLatent();
        float[] d1000 = SchedulerToyModel.Rollout(Create("ddim"), 1000, x), d500 = SchedulerToyModel.Rollout(Create("ddim"), 500, x);
        float[] reference = d1000.Zip(d500, (a, b) => 2 * a - b).ToArray();
        double Error(string name, int n) => SchedulerToyModel.MaxAbsDiff(SchedulerToyModel.Rollout(Create(name), n, x), reference);

        // The reference is good to ~1e-3: the higher-order samplers at 500 steps agree with it to that (measured 3e-4, 9e-4, 9e-5).
        foreach (var name in new[] { "lms", "dpmpp_2m", "pndm" }) Assert.True(Error(name, 500) < 1e-3, $"{name} at 500 steps");

        // Multistep samplers (order >= 2) at 100 steps: within 1e-2 (measured 2e-3..5e-3); DDIM there is 7.6e-2 off.
        foreach (var name in new[] { "lms", "dpmpp_2m", "dpmpp_2m_karras", "pndm" })
        {
            double e = Error(name, 100);
            output.WriteLine($"{name} at 100 steps: {e:E2}");
            Assert.True(e < 1e-2, $"{name} at 100 steps: {e:E2}");
        }

        // DDIM and Euler are first order: doubling the steps halves the error.
        foreach (var name in new[] { "ddim", "euler" })
        {
            double e100 = Error(name, 100), e200 = Error(name, 200);
            output.WriteLine($"{name}: 100 steps {e100:E2}, 200 steps {e200:E2}");
            Assert.True(e100 < 0.1, $"{name} at 100 steps: {e100:E2}");
            Assert.InRange(e200 / e100, 0.4, 0.6);
        }
    }

    [Fact]
    public void Euler_ancestral_is_deterministic_per_seed_and_differs_between_seeds()
    {
        float[] x = SchedulerToyModel.StartLatent();
        float[] Run(long seed) => SchedulerToyModel.Rollout(Create("euler_a"), 20, x, new GaussianNoise(seed));
        Assert.Equal(Run(5), Run(5));
        Assert.True(SchedulerToyModel.MaxAbsDiff(Run(5), Run(6)) > 0.1);
        Assert.Throws<ArgumentNullException>(() => SchedulerToyModel.Rollout(Create("euler_a"), 20, x, noise: null));
    }

    [Fact]
    public void Euler_ancestral_with_a_perfect_denoiser_keeps_the_noise_level_of_each_sigma()
    {
        // With D(x) = x0 exactly, x = x0 + sigma z maps to x0 + sigma_down z + sigma_up z' whose std is sigma_next.
        const int n = 40000;
        var s = new EulerAncestralScheduler(Sd);
        s.SetTimesteps(10);
        float[] x0 = Enumerable.Repeat(-0.4f, n).ToArray();
        var x = new float[n];
        var noise = new GaussianNoise(21);
        noise.NextGaussian(x);
        for (int i = 0; i < n; i++) x[i] = x0[i] + x[i] * s.Sigmas[0];
        var sampleOutput = new float[n];
        var perfect = new EulerAncestralScheduler(Sd with { PredictionType = "sample" });
        perfect.SetTimesteps(10);
        for (int step = 0; step < perfect.Timesteps.Count; step++)
        {
            perfect.Step(x0, perfect.Timesteps[step], x, noise);
            double sigmaNext = perfect.Sigmas[step + 1];
            double std = Math.Sqrt(x.Select(v => (v - -0.4) * (v - -0.4)).Average());
            if (sigmaNext == 0) Assert.All(x, v => Assert.Equal(-0.4f, v, 5));
            else Assert.InRange(std / sigmaNext, 0.98, 1.02);
        }
    }

    [Fact]
    public void Ddim_with_eta_one_is_stochastic_and_needs_noise()
    {
        var ddim = new DdimScheduler(Sd) { Eta = 1.0 };
        float[] x = SchedulerToyModel.StartLatent();
        Assert.Throws<ArgumentNullException>(() => SchedulerToyModel.Rollout(ddim, 10, x, noise: null));
        var a = SchedulerToyModel.Rollout(ddim, 10, x, new GaussianNoise(1));
        var b = SchedulerToyModel.Rollout(ddim, 10, x, new GaussianNoise(1));
        var c = SchedulerToyModel.Rollout(ddim, 10, x, new GaussianNoise(2));
        Assert.Equal(a, b);
        Assert.True(SchedulerToyModel.MaxAbsDiff(a, c) > 1e-2);
    }

    [Fact]
    public void Set_timesteps_resets_multistep_history()
    {
        float[] x = SchedulerToyModel.StartLatent();
        foreach (var name in new[] { "pndm", "lms", "dpmpp_2m", "dpmpp_2m_karras", "euler" })
        {
            var s = Create(name);
            var first = SchedulerToyModel.Rollout(s, 15, x);
            var again = SchedulerToyModel.Rollout(s, 15, x); // same instance, SetTimesteps inside
            Assert.Equal(first, again);
        }
    }

    [Fact]
    public void Timestep_spacings_follow_diffusers()
    {
        var c = Sd with { StepsOffset = 1 };
        Assert.Equal([901.0, 801, 701, 601, 501, 401, 301, 201, 101, 1], Timesteps("ddim", c with { TimestepSpacing = "leading" }, 10));
        Assert.Equal([999.0, 888, 777, 666, 555, 444, 333, 222, 111, 0], Timesteps("ddim", c with { TimestepSpacing = "linspace" }, 10));
        Assert.Equal([999.0, 899, 799, 699, 599, 499, 399, 299, 199, 99], Timesteps("ddpm", c with { TimestepSpacing = "trailing" }, 10));
        // numpy.arange(1000, 0, -1000/3).round() - 1
        Assert.Equal([999.0, 666, 332], Timesteps("ddim", c with { TimestepSpacing = "trailing" }, 3));
        // DPM-Solver: linspace over n + 1 points with the last dropped (499.5 rounds to even 500 after float error: 500).
        Assert.Equal([999.0, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50],
            Timesteps("dpmpp_2m", c with { TimestepSpacing = "linspace" }, 20));
        // DPM-Solver leading: ratio N // (n + 1) = 90, the last of n + 1 points dropped, + steps_offset.
        Assert.Equal([901.0, 811, 721, 631, 541, 451, 361, 271, 181, 91], Timesteps("dpmpp_2m", c with { TimestepSpacing = "leading" }, 10));
        Assert.Equal([999.0, 949, 899], Timesteps("euler", c with { TimestepSpacing = "trailing" }, 20).Take(3));
        Assert.Equal([901.0, 801], Timesteps("lms", c with { TimestepSpacing = "leading" }, 10).Take(2));
        // PNDM with Runge-Kutta warm-up: 12 PRK timesteps around the first four, then PLMS.
        Assert.Equal([901.0, 851, 851, 801, 801, 751, 751, 701, 701, 651, 651, 601, 601, 501, 401, 301, 201, 101, 1],
            Timesteps("pndm", c with { TimestepSpacing = "leading", SkipPrkSteps = false }, 10));
    }

    private static IReadOnlyList<double> Timesteps(string name, SchedulerConfig c, int n)
    {
        var s = SchedulerFactory.Create(name, c);
        s.SetTimesteps(n);
        return s.Timesteps;
    }

    [Fact]
    public void Pndm_with_runge_kutta_warm_up_converges_like_plms()
    {
        float[] x = SchedulerToyModel.StartLatent();
        var prk = new PndmScheduler(Sd with { SkipPrkSteps = false, TimestepSpacing = "leading" });
        var plms = new PndmScheduler(Sd with { SkipPrkSteps = true, TimestepSpacing = "leading" });
        double d = SchedulerToyModel.MaxAbsDiff(SchedulerToyModel.Rollout(prk, 50, x), SchedulerToyModel.Rollout(plms, 50, x));
        output.WriteLine($"|prk - plms| at 50 steps: {d:E2}");
        Assert.True(d < 2e-2, $"{d:E2}");
        Assert.Equal(12 + 50 - 3, prk.Timesteps.Count); // 12 PRK evaluations replace the first 3 PLMS steps
    }

    [Fact]
    public void Sigma_samplers_start_at_the_largest_sigma_and_end_at_zero()
    {
        foreach (var name in new[] { "euler", "euler_a", "lms" })
        {
            var s = SchedulerFactory.Create(name, Sd with { TimestepSpacing = "leading", StepsOffset = 1 });
            s.SetTimesteps(25);
            IReadOnlyList<float> sigmas = s switch { EulerDiscreteScheduler e => e.Sigmas, EulerAncestralScheduler a => a.Sigmas, LmsDiscreteScheduler l => l.Sigmas, _ => [] };
            Assert.Equal(26, sigmas.Count);
            Assert.Equal(0f, sigmas[^1]);
            // leading spacing: init sigma is sqrt(sigma_max^2 + 1) (diffusers' rule for VP-trained models).
            Assert.Equal(Math.Sqrt(sigmas[0] * (double)sigmas[0] + 1), s.InitNoiseSigma, 4);
        }
    }

    [Fact]
    public void Karras_euler_uses_karras_sigmas_and_fractional_timesteps()
    {
        var s = new EulerDiscreteScheduler(Sd with { UseKarrasSigmas = true, TimestepSpacing = "linspace" });
        s.SetTimesteps(20);
        var dpm = new DpmSolverMultistepScheduler(Sd with { TimestepSpacing = "linspace" }, useKarrasSigmas: true);
        dpm.SetTimesteps(20);
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal(dpm.Sigmas[i], s.Sigmas[i], 5);
            Assert.Equal(dpm.Timesteps[i], Math.Round(s.Timesteps[i]));
        }
        Assert.Contains(s.Timesteps, t => t != Math.Round(t));
    }

    [Fact]
    public void Buffers_of_different_lengths_are_refused()
    {
        foreach (var name in SchedulerFactory.Names)
        {
            var s = Create(name);
            s.SetTimesteps(10);
            var e = Assert.Throws<ArgumentException>(() => s.Step(new float[3], s.Timesteps[0], new float[4], new GaussianNoise(1)));
            Assert.Contains("modelOutput", e.Message);
            Assert.Throws<ArgumentException>(() => s.AddNoise(new float[4], new float[5], s.Timesteps[0], new float[4]));
        }
    }
}
