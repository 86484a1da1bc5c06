namespace CTCal.Trainer.Training;

/// <summary>
/// Opens a model for training by what it is: a diffusers folder whose <c>model_index.json</c> names
/// <see cref="SD3TrainableModel.PipelineClass"/> as an <see cref="SD3TrainableModel"/>; any other folder or single file as
/// a <see cref="DiffusersTrainableModel"/> (SD 1.x/2.x).
/// </summary>
public static class TrainableModels
{
    /// <summary>Loads <paramref name="path"/> (see the class).</summary>
    public static ITrainableDiffusionModel Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return SD3TrainableModel.IsSD3Folder(path) ? SD3TrainableModel.Load(path) : DiffusersTrainableModel.Load(path);
    }

    /// <summary>The model <paramref name="folder"/>'s configs describe, with random weights from <paramref name="seed"/> (benchmarks).</summary>
    public static ITrainableDiffusionModel RandomFromConfigs(string folder, long seed) =>
        SD3TrainableModel.IsSD3Folder(folder) ? SD3TrainableModel.RandomFromConfigs(folder, seed) : DiffusersTrainableModel.RandomFromConfigs(folder, seed);
}
