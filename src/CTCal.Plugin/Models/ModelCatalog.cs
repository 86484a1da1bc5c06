using CTCal.Contracts;
using CTCal.Export;

namespace CTCal.Plugin.Models;

/// <summary>
/// The models in the plugin's models folder, read once and kept until the folder changes. Each listing takes a cheap
/// fingerprint of the folder (its entry names, and each entry's last-write time: one directory read and one stat per
/// entry) and reads the model folders again only when it differs, so a model exported, copied in, removed or renamed while
/// the host runs appears or goes without a restart. Edits inside a model folder's subfolders (a config rewritten in place)
/// are not seen by the fingerprint: <see cref="Refresh"/> forgets the cache (the plugin's exporter calls it after every
/// export). Broken folders are logged (once per change) and left out.
/// </summary>
internal sealed class ModelCatalog
{
    private readonly ILogSink _log;
    private readonly object _gate = new();
    private string? _fingerprint;
    private IReadOnlyList<OnnxModelFolder> _cached = Array.Empty<OnnxModelFolder>();

    /// <summary>How many times a model folder was read (for tests: a cached listing reads none).</summary>
    public int FolderReads { get; private set; }

    /// <summary>Forgets the cached listing: the next one reads every model folder again.</summary>
    public void Refresh()
    {
        lock (_gate)
        {
            _fingerprint = null;
        }
    }

    /// <summary>The models, read again only when the folder's fingerprint changed since the last listing.</summary>
    public IReadOnlyList<OnnxModelFolder> Scan()
    {
        if (!Directory.Exists(ModelsFolder))
        {
            _log.Log(LogSeverity.Warning, $"Models folder {ModelsFolder} does not exist");
            return Array.Empty<OnnxModelFolder>();
        }

        Recover();
        lock (_gate)
        {
            string fingerprint = Fingerprint();
            if (fingerprint != _fingerprint)
            {
                _cached = ReadAll();
                _fingerprint = fingerprint;
            }

            return _cached;
        }
    }

    /// <summary>Entry names and last-write times (UTC ticks) of the models folder's entries, in name order.</summary>
    private string Fingerprint()
    {
        var text = new System.Text.StringBuilder();
        foreach (string entry in Directory.EnumerateFileSystemEntries(ModelsFolder).Order(StringComparer.Ordinal))
        {
            text.Append(Path.GetFileName(entry)).Append('|').Append(Directory.GetLastWriteTimeUtc(entry).Ticks).Append('\n');
        }

        return text.ToString();
    }

    public ModelCatalog(string modelsFolder, ILogSink log)
    {
        ModelsFolder = modelsFolder;
        _log = log;
    }

    public string ModelsFolder { get; }

    private IReadOnlyList<OnnxModelFolder> ReadAll()
    {
        var models = new List<OnnxModelFolder>();
        foreach (string dir in Directory.EnumerateDirectories(ModelsFolder).Order(StringComparer.Ordinal))
        {
            if (Path.GetFileName(dir).StartsWith('.'))
            {
                // Hidden folders are never models: the exporter stages a new model as '.<id>.partial-…' and moves a replaced
                // one aside as '.<id>.old-…'; while an export runs (or after one was killed and before Recover) either may be
                // there, complete-looking or not.
                continue;
            }

            if (new DirectoryInfo(dir).LinkTarget is not null)
            {
                _log.Log(LogSeverity.Warning, $"Skipping {dir}: symbolic links are not followed in the models folder");
                continue;
            }

            if (!OnnxModelFolder.LooksLikeModel(dir))
            {
                continue;
            }

            try
            {
                FolderReads++;
                var model = OnnxModelFolder.Load(dir);
                if (model.InferredDefaults is { } inferred)
                {
                    _log.Log(LogSeverity.Information, inferred);
                }

                models.Add(model);
            }
            catch (Exception ex) when (ex is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                _log.Log(LogSeverity.Warning, $"Skipping model folder: {ex.Message}", ex);
            }
        }

        return models;
    }

    /// <summary>
    /// Finishes or undoes what killed exports left in the models folder (a model moved aside by an export killed between
    /// its two renames is listed again) and removes their hidden folders, through the exporter's own
    /// <see cref="ModelFolderSwap.Recover"/>: folders of an export that is still running, in this process or another,
    /// are never touched. Problems are logged, never thrown: a listing must not fail because of a leftover.
    /// </summary>
    /// <param name="id">Only this model's leftovers; null: all.</param>
    public void Recover(string? id = null)
    {
        try
        {
            foreach (var note in ModelFolderSwap.Recover(ModelsFolder, id))
            {
                _log.Log(note.Failed ? LogSeverity.Warning : LogSeverity.Information, $"Models folder: {note.Message}");
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _log.Log(LogSeverity.Warning, $"Could not check {ModelsFolder} for what killed exports left behind: {ex.Message}", ex);
        }
    }

    /// <summary>The model with id <paramref name="id"/>; the error lists the models that exist.</summary>
    public OnnxModelFolder Find(string id)
    {
        if (string.IsNullOrWhiteSpace(id) || id.IndexOfAny(new[] { '/', '\\' }) >= 0 || id is "." or "..")
        {
            throw new ArgumentException($"Invalid model id '{id}'", nameof(id));
        }

        var all = Scan();
        return all.FirstOrDefault(m => m.Info.Id == id)
            ?? throw new ArgumentException(
                $"Unknown model '{id}' in {ModelsFolder} (available: {(all.Count == 0 ? "none" : string.Join(", ", all.Select(m => m.Info.Id)))})",
                nameof(id));
    }
}
