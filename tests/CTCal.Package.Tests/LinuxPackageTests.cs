using CTCal.Tests;
using Xunit;

namespace CTCal.Package.Tests;

/// <summary>
/// The linux-x64 package, installed the documented way into a fresh host folder that holds only ctcal-host's own files:
/// its zip extracted into plugins/, one plugins.json entry without trainerPath, PATH without a trainer. The host exports
/// the repository's tiny SD 1.x checkpoint (copied into the host folder) to ONNX, generates, fine-tunes one step through
/// the packaged trainer sidecar and generates with the result. Nothing points into the repository's build tree.
/// </summary>
[Collection(PackageCollection.Name)]
public sealed class LinuxPackageTests : IDisposable
{
    private const string Rid = "linux-x64";

    private readonly PackageFixture _packages;
    private readonly InstalledHost _host = new();

    public LinuxPackageTests(PackageFixture packages) => _packages = packages;

    public void Dispose() => _host.Dispose();

    [SkippableFact]
    public void InstalledByCopyingItGeneratesAndFineTunesThroughThePackagedTrainer()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "runs the linux-x64 package");
        var package = _packages.For(Rid);
        Assert.NotNull(package.Zip);
        string plugin = _host.InstallZip(package.Zip!);
        Assert.Equal(package.Manifest.Id, Path.GetFileName(plugin));
        _host.WritePluginsJson(package.Manifest.Id, plugin, package.Manifest.Assembly);
        var pluginFilesBefore = Snapshot(plugin);

        string checkpoint = Path.Combine(_host.Root, "checkpoints", "tiny-sd1");
        CopyFolder(Path.Combine(TestPaths.Fixtures, "tiny-sd1"), checkpoint);

        var (code, output) = _host.Run("export", "--config", _host.PluginsFile, "--checkpoint", checkpoint, "--id", "tiny-sd1");
        Assert.True(code == 0, output);

        string images = Path.Combine(_host.Root, "out");
        (code, output) = _host.Run("generate", "--config", _host.PluginsFile, "-m", "tiny-sd1", "--prompt", "a red cube",
            "--width", "32", "--height", "32", "--steps", "2", "--seed", "1", "-n", "2", "-o", images);
        Assert.True(code == 0, output);
        Assert.Contains("provider CPU", output);
        Assert.True(File.Exists(Path.Combine(images, "tiny-sd1-1.png")), output);

        // Training data: the two generated images with captions.
        string data = Path.Combine(_host.Root, "data");
        Directory.CreateDirectory(data);
        File.Copy(Path.Combine(images, "tiny-sd1-1.png"), Path.Combine(data, "0.png"));
        File.Copy(Path.Combine(images, "tiny-sd1-2.png"), Path.Combine(data, "1.png"));
        File.WriteAllLines(Path.Combine(data, "metadata.jsonl"),
        [
            """{"file_name": "0.png", "text": "a red cube"}""",
            """{"file_name": "1.png", "text": "a blue sphere"}""",
        ]);

        string run = Path.Combine(_host.Root, "runs", "tuned");
        (code, output) = _host.Run("finetune", "--config", _host.PluginsFile, "--base", checkpoint, "--data", data, "--output", run,
            "--id", "tiny-tuned", "--max-steps", "1", "--", "--resolution", "32", "--batch-size", "1", "--lora-rank", "2", "--save-every", "0");
        Assert.True(code == 0, output);
        Assert.Contains("model tiny-tuned registered", output);
        // The trainer that ran is the package's own (PATH has none).
        Assert.Contains(Path.Combine(plugin, "trainer", "ctcal-train"), output);

        (code, output) = _host.Run("generate", "--config", _host.PluginsFile, "-m", "tiny-tuned", "--prompt", "a red cube",
            "--width", "32", "--height", "32", "--steps", "2", "--seed", "3", "-o", images);
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(images, "tiny-tuned-3.png")), output);

        // Where things went: the trainer's log into the run folder the host named, nothing into the plugin folder, no job
        // file left in the host's temporary folder or beside the run.
        Assert.True(File.Exists(Path.Combine(run, "train.log")), "the trainer's log belongs in its output folder");
        Assert.Equal(pluginFilesBefore, Snapshot(plugin));
        Assert.Empty(Directory.GetFiles(_host.TempFolder, "*ctcal*", SearchOption.AllDirectories));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(run)!, "*ctcal-job*"));

        // Uninstalling is deleting the folder: the host then reports the plugin as missing, and starts.
        Directory.Delete(plugin, recursive: true);
        (code, output) = _host.Run("plugins", "--config", _host.PluginsFile);
        Assert.Contains("not found", output);
    }

    private static List<string> Snapshot(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Select(f => $"{Path.GetRelativePath(folder, f)} {new FileInfo(f).Length}")
            .Order(StringComparer.Ordinal)
            .ToList();

    private static void CopyFolder(string from, string to)
    {
        foreach (string file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
