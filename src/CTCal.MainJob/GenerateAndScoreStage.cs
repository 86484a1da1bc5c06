using System.Globalization;
using CTCal.Contracts;
using CTCal.Core.IO;
using CTCal.Synthetic;

namespace CTCal.MainJob;

/// <summary>One generated evaluation image, where it is and how it scored.</summary>
public sealed record ImageResult(string Model, int PromptIndex, long Seed, string File, ImageScore Score);

/// <summary>
/// Stage e and f: every selected evaluation prompt x image seeds for one model through the plugin's
/// <see cref="IImageGenerator"/> (image i of a request uses seed base + i), PNGs saved under
/// <c>images/&lt;model&gt;/</c>, each scored by the synthetic <see cref="Evaluator"/> and, per prompt, the spread
/// across seeds measured with <see cref="Diversity"/>.
/// </summary>
internal static class GenerateAndScoreStage
{
    /// <summary>File name of one image: prompt index in eval_prompts.json and seed.</summary>
    public static string ImageFileName(int promptIndex, long seed) =>
        string.Create(CultureInfo.InvariantCulture, $"p{promptIndex:000}-s{seed}.png");

    /// <summary>
    /// Runs <paramref name="request"/> and writes each image atomically to <paramref name="fileOf"/>(its seed); returns
    /// them decoded, in the generator's order. The one way the main job, the study's evaluations and its GORS data save
    /// generated images.
    /// </summary>
    public static async Task<IReadOnlyList<(long Seed, string File, RgbaImage Image)>> GenerateToFilesAsync(
        IImageGenerator generator, GenerationRequest request, Func<long, string> fileOf, CancellationToken ct)
    {
        var result = await generator.GenerateAsync(request, null, ct);
        return result.Images.Select(image =>
        {
            string file = fileOf(image.Seed);
            AtomicFile.WriteBytes(file, image.Png);
            return (image.Seed, file, RgbaImage.Decode(image.Png, file));
        }).ToList();
    }

    public static async Task<ModelScores> GenerateAndScoreAsync(
        IImageGenerator generator, string model, IReadOnlyList<(int Index, EvalPrompt Prompt)> prompts, MainJobRecipe recipe,
        string imagesFolder, int parallel, Evaluator evaluator, Action onImage, CancellationToken ct)
    {
        string folder = Path.Combine(imagesFolder, model);
        Directory.CreateDirectory(folder);
        using var gate = new SemaphoreSlim(parallel);
        var perPrompt = await Task.WhenAll(prompts.Select(async p =>
        {
            await gate.WaitAsync(ct);
            try
            {
                var request = new GenerationRequest
                {
                    Model = model,
                    Prompt = p.Prompt.Prompt,
                    Width = recipe.Resolution,
                    Height = recipe.Resolution,
                    Steps = recipe.SamplingSteps,
                    GuidanceScale = recipe.Guidance,
                    Seed = recipe.ImageSeedBase,
                    BatchCount = recipe.ImageSeeds,
                    Scheduler = recipe.Scheduler,
                };
                var saved = await GenerateToFilesAsync(generator, request, seed => Path.Combine(folder, ImageFileName(p.Index, seed)), ct);
                var images = saved.Select(x => x.Image).ToList();
                var scored = new List<ImageResult>();
                foreach (var (seed, file, rgba) in saved)
                {
                    scored.Add(new ImageResult(model, p.Index, seed, file, evaluator.Score(rgba, p.Prompt.Spec)));
                    onImage();
                }

                DiversityScore? diversity = images.Count >= 2 ? Diversity.Measure(images, evaluator) : null;
                return (p.Prompt, Images: scored, Diversity: diversity);
            }
            finally
            {
                gate.Release();
            }
        }));
        generator.UnloadModel(model);

        var report = EvaluationReport.Build(
            perPrompt.SelectMany(x => x.Images.Select(i => (x.Prompt, i.Score))),
            perPrompt.Where(x => x.Diversity is not null).Select(x => (x.Prompt, x.Diversity!)));
        return new ModelScores(model, Metrics.Flatten(report), perPrompt.SelectMany(x => x.Images).ToList());
    }
}

/// <summary>A model's scores: flat metrics (see <see cref="Metrics"/>) and the per-image results.</summary>
public sealed record ModelScores(string Model, IReadOnlyDictionary<string, double> Metrics, IReadOnlyList<ImageResult> Images);
