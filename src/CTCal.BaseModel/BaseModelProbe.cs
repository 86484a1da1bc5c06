using CTCal.Core.Schedulers;
using CTCal.Synthetic;
using CTCal.Trainer.Training;

namespace CTCal.BaseModel;

/// <summary>Scores of one sampled image.</summary>
public sealed record ProbeSample(string Prompt, PromptCategory Category, long Seed, bool ColoursPresent, double Primary, double Overall);

/// <summary>Accuracies over a probe: colour (every requested colour detected), the category check, and overall.</summary>
public sealed record ProbeReport(IReadOnlyList<ProbeSample> Samples, double ColourAccuracy, double BindingAccuracy, double PrimaryAccuracy,
    double OverallMean, string GridPath);

/// <summary>
/// A quick quality probe of a base model: samples evaluation prompts with <see cref="SamplingValidator"/> (fixed seeds,
/// classifier-free guidance), scores every image with the synthetic world's rule-based <see cref="Evaluator"/>, and writes
/// the images as one PNG grid (one row per seed).
/// </summary>
public static class BaseModelProbe
{
    public static ProbeReport Run(ITrainableDiffusionModel model, SchedulerConfig scheduler, IReadOnlyList<EvalPrompt> prompts, int imageSize,
        string gridPath, int seeds = 2, int steps = 30, double guidance = 5.0, string sampler = "ddim")
    {
        if (prompts.Count == 0) throw new ArgumentException("no prompts to probe", nameof(prompts));
        if (seeds <= 0) throw new ArgumentOutOfRangeException(nameof(seeds), seeds, "seeds must be positive");
        var validator = new SamplingValidator(model, scheduler, prompts.Select(p => p.Prompt).ToList(), imageSize, steps, sampler, guidance);
        var evaluator = new Evaluator();
        var samples = new List<ProbeSample>();
        var rows = new List<float[]>();
        for (int s = 0; s < seeds; s++)
        {
            var row = new List<float[]>();
            for (int i = 0; i < prompts.Count; i++)
            {
                long seed = 1000L * s + i;
                var chw = validator.Sample(prompts[i].Prompt, seed);
                row.Add(chw);
                var score = evaluator.Score(RgbaImage.FromPlanarRgb(imageSize, imageSize, chw), prompts[i].Spec);
                var colours = prompts[i].Spec.Objects.Select(o => o.Color).Distinct();
                bool present = colours.All(c => score.Objects.Any(o => o.Color == c));
                samples.Add(new ProbeSample(prompts[i].Prompt, prompts[i].Category, seed, present, score.Primary(prompts[i].Category), score.Overall));
            }
            rows.Add(Concatenate(row, imageSize));
        }
        SaveRows(rows, imageSize * prompts.Count, imageSize, gridPath);
        var binding = samples.Where(x => x.Category == PromptCategory.Binding).ToList();
        return new ProbeReport(samples, samples.Average(x => x.ColoursPresent ? 1.0 : 0.0),
            binding.Count > 0 ? binding.Average(x => x.Primary) : double.NaN, samples.Average(x => x.Primary), samples.Average(x => x.Overall), gridPath);
    }

    /// <summary>CHW images side by side -> one CHW image of width side·n.</summary>
    private static float[] Concatenate(IReadOnlyList<float[]> images, int side)
    {
        int width = side * images.Count, plane = side * side;
        var result = new float[3 * width * side];
        for (int n = 0; n < images.Count; n++)
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < side; y++)
                    Array.Copy(images[n], c * plane + y * side, result, c * width * side + y * width + n * side, side);
        return result;
    }

    private static void SaveRows(IReadOnlyList<float[]> rows, int width, int rowHeight, string path)
    {
        int height = rowHeight * rows.Count;
        var grid = new float[3 * width * height];
        for (int r = 0; r < rows.Count; r++)
            for (int c = 0; c < 3; c++)
                Array.Copy(rows[r], c * width * rowHeight, grid, c * width * height + r * width * rowHeight, width * rowHeight);
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        CTCal.Trainer.Data.ImageLoader.SavePng(grid, width, height, path);
    }
}
