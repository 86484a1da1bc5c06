using CsCheck;
using CTCal.Core.Models;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// ModelFolder.Open over generated folder layouts (any subset of configs, safetensors, variant and pickle weights,
/// folders where files belong, links, random variants): the outcome is a ModelFolder whose every resolved file exists,
/// or ModelFolderException (ArgumentException only for a variant that is not a plain name, as documented).
/// </summary>
public sealed class ModelFolderFuzzTests : IDisposable
{
    private readonly TempFolder _temp = new("ctcal-fuzz-folder");

    public void Dispose() => _temp.Dispose();

    private static readonly string[] Candidates =
    [
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin", "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.ckpt",
        "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors", "text_encoder/pytorch_model.bin",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json", "unet/diffusion_pytorch_model.ema.safetensors",
    ];

    private static readonly Gen<string?> Variant = Gen.OneOf<string?>(null, null, "fp16", "ema", "", "a/b", "..", "x.y", "\\", "ü", " ");

    private static readonly Gen<ModelComponents> Required = Gen.Int[0, 31].Select(i => (ModelComponents)i);

    [Fact]
    public void Generated_layouts_open_or_throw_ModelFolderException()
    {
        Gen.Select(Gen.Bool.Array[Candidates.Length], Gen.Bool.Array[Candidates.Length], Required, Variant).Run((present, asFolder, required, variant) =>
        {
            string root = Path.Combine(_temp.Path, Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(root);
            for (int i = 0; i < Candidates.Length; i++)
            {
                if (!present[i]) continue;
                string path = Path.Combine(root, Candidates[i]);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                if (asFolder[i] && i % 3 == 0) Directory.CreateDirectory(path); // a folder where a file belongs
                else if (asFolder[i]) File.CreateSymbolicLink(path, Path.Combine(_temp.Path, "blob-" + i)); // a dangling link
                else File.WriteAllText(path, "{}");
            }
            var documented = variant is not null && (variant.Length == 0 || variant.IndexOfAny(['/', '\\', '.']) >= 0)
                ? new[] { typeof(ArgumentException) }
                : [typeof(ModelFolderException)];
            var outcome = FuzzBounds.Check(() => ModelFolder.Open(root, required, variant),
                $"{string.Join(",", Candidates.Where((_, i) => present[i]))} required {required} variant '{variant}'", documented);
            if (outcome.Value is { } folder)
            {
                Assert.Equal(required, folder.Available & required);
                var files = new List<string>();
                if (folder.Available.HasFlag(ModelComponents.Unet)) files.AddRange([folder.Unet.ConfigPath, folder.Unet.WeightsPath]);
                if (folder.Available.HasFlag(ModelComponents.Vae)) files.AddRange([folder.Vae.ConfigPath, folder.Vae.WeightsPath]);
                if (folder.Available.HasFlag(ModelComponents.TextEncoder)) files.AddRange([folder.TextEncoder.ConfigPath, folder.TextEncoder.WeightsPath]);
                if (folder.Available.HasFlag(ModelComponents.Tokenizer)) files.AddRange([folder.Tokenizer.VocabPath, folder.Tokenizer.MergesPath]);
                if (folder.Available.HasFlag(ModelComponents.Scheduler)) files.Add(folder.SchedulerConfigPath);
                foreach (string f in files)
                {
                    Assert.True(File.Exists(f), $"{f} resolved but is not a file");
                    Assert.StartsWith(folder.Root + Path.DirectorySeparatorChar, f);
                    if (f.EndsWith(".safetensors", StringComparison.Ordinal)) WeightFiles.EnsureSafetensors(f);
                }
            }
            Directory.Delete(root, recursive: true);
        }, iter: FuzzBounds.Scaled(0.4));
    }
}
