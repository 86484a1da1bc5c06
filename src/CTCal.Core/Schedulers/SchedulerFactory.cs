namespace CTCal.Core.Schedulers;

/// <summary>Creates samplers by their short names (the names the trainer's and plugin's options use).</summary>
public static class SchedulerFactory
{
    private static readonly Dictionary<string, Func<SchedulerConfig, IDiffusionScheduler>> Factories = new(StringComparer.OrdinalIgnoreCase)
    {
        ["ddpm"] = c => new DdpmScheduler(c),
        ["ddim"] = c => new DdimScheduler(c),
        // Euler and LMS honour the config's use_karras_sigmas; the two DPM++ names fix it.
        ["euler"] = c => new EulerDiscreteScheduler(c),
        ["euler_a"] = c => new EulerAncestralScheduler(c),
        ["dpmpp_2m"] = c => new DpmSolverMultistepScheduler(c, useKarrasSigmas: false),
        ["dpmpp_2m_karras"] = c => new DpmSolverMultistepScheduler(c, useKarrasSigmas: true),
        ["pndm"] = c => new PndmScheduler(c),
        ["lms"] = c => new LmsDiscreteScheduler(c),
        // Flow matching (SD3): the velocity sampler, under diffusers' class name; not one of Names (see FlowMatchNames).
        [FlowMatchEulerDiscreteScheduler.ClassName] = c => new FlowMatchEulerDiscreteScheduler(c),
    };

    /// <summary>
    /// The samplers of noise-prediction (epsilon / v / sample) models such as the SD 1.x/2.x UNets: ddpm, ddim, euler,
    /// euler_a, dpmpp_2m, dpmpp_2m_karras, pndm, lms. These are the names the trainer's and plugin's options offer.
    /// </summary>
    public static IReadOnlyList<string> Names { get; } = ["ddpm", "ddim", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "pndm", "lms"];

    /// <summary>
    /// The samplers of flow-matching (velocity) models such as SD3: FlowMatchEulerDiscreteScheduler. Kept apart from
    /// <see cref="Names"/> because they are meaningless for a noise-prediction model's output.
    /// </summary>
    public static IReadOnlyList<string> FlowMatchNames { get; } = [FlowMatchEulerDiscreteScheduler.ClassName];

    /// <summary>A new scheduler instance (one per generation: multistep samplers keep history).</summary>
    public static IDiffusionScheduler Create(string name, SchedulerConfig config)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(config);
        return Factories.TryGetValue(name.Trim(), out var factory)
            ? factory(config)
            : throw new ArgumentException($"unknown scheduler '{name}'; known: {string.Join(", ", Names.Concat(FlowMatchNames))}", nameof(name));
    }
}
