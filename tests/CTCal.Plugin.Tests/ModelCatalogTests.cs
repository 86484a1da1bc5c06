using System.Text.Json;
using CTCal.Plugin.Models;
using CTCal.Tests;
using Xunit;

namespace CTCal.Plugin.Tests;

/// <summary>The catalog reads each model folder once and again only when the models folder changes, or on Refresh.</summary>
public sealed class ModelCatalogTests : IDisposable
{
    private readonly string _root = TestPaths.NewTempDir("ctcal-catalog");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Models => Path.Combine(_root, "models");

    /// <summary>An SD3 folder (by its model_index.json class) with parts missing is left out, the log naming them.</summary>
    [Fact]
    public void AnIncompleteSD3FolderIsSkippedNamingTheMissingParts()
    {
        string sd3 = Path.Combine(Models, "sd3");
        Directory.CreateDirectory(Path.Combine(sd3, "transformer"));
        File.WriteAllText(Path.Combine(sd3, "model_index.json"), """{"_class_name": "ORTStableDiffusion3Pipeline", "_diffusers_version": "0.29.2"}""");
        File.WriteAllText(Path.Combine(sd3, "transformer", "model.onnx"), "");
        var log = new RecordingLog();

        Assert.Empty(new ModelCatalog(Models, log).Scan());
        string warning = Assert.Single(log.Warnings);
        Assert.Contains("not a complete SD3 ONNX model folder", warning);
        Assert.Contains("text_encoder_2/model.onnx", warning);
        Assert.Contains("scheduler/scheduler_config.json", warning);
        Assert.DoesNotContain("unet", warning);
    }

    [Fact]
    public void ListingsReadTheFoldersOnlyWhenTheModelsFolderChanged()
    {
        TinySdModel.Create(Models, "a");
        TinySdModel.Create(Models, "b");
        var catalog = new ModelCatalog(Models, new RecordingLog());

        Assert.Equal(["a", "b"], catalog.Scan().Select(m => m.Info.Id));
        Assert.Equal(2, catalog.FolderReads);
        for (int i = 0; i < 5; i++) catalog.Find("a"); // generations look their model up: no folder is read again
        Assert.Equal(["a", "b"], catalog.Scan().Select(m => m.Info.Id));
        Assert.Equal(2, catalog.FolderReads);

        TinySdModel.Create(Models, "c"); // a model copied in while the host runs
        Assert.Equal(["a", "b", "c"], catalog.Scan().Select(m => m.Info.Id));
        Assert.Equal(5, catalog.FolderReads);

        Directory.Move(Path.Combine(Models, "b"), Path.Combine(Models, "b2")); // renamed
        Assert.Equal(["a", "b2", "c"], catalog.Scan().Select(m => m.Info.Id));

        Directory.Delete(Path.Combine(Models, "a"), recursive: true); // removed
        Assert.Equal(["b2", "c"], catalog.Scan().Select(m => m.Info.Id));
        Assert.Throws<ArgumentException>(() => catalog.Find("a"));
    }

    [Fact]
    public void RefreshSeesAnEditInsideAModelFolder()
    {
        string folder = TinySdModel.Create(Models, "a");
        var catalog = new ModelCatalog(Models, new RecordingLog());
        Assert.Equal("Tiny a", catalog.Find("a").Info.Name);

        // Rewritten in place: the models folder's own entries do not change, so the cached listing stands until Refresh.
        File.WriteAllText(Path.Combine(folder, "ctcal_manifest.json"), JsonSerializer.Serialize(new { name = "Renamed", family = "sd1", width = 64, height = 64 }));
        catalog.Refresh();
        Assert.Equal("Renamed", catalog.Find("a").Info.Name);
        Assert.Equal(2, catalog.FolderReads);
    }

    [Fact]
    public void TheSchedulerConfigIsParsedOnceWithTheFolder()
    {
        TinySdModel.Create(Models, "a");
        var model = new ModelCatalog(Models, new RecordingLog()).Find("a");
        Assert.NotNull(model.Scheduler);
        Assert.Equal(CTCal.Core.Schedulers.SchedulerConfig.Load(model.SchedulerConfigPath), model.Scheduler);
    }
}
