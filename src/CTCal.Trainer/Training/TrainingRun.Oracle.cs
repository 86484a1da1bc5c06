using static TorchSharp.torch;

namespace CTCal.Trainer.Training;

/// <summary>The <see cref="TeacherSource.Oracle"/> teacher of <see cref="TrainingRun"/>: the calibrated samples' subject masks as teacher maps.</summary>
public sealed partial class TrainingRun
{
    /// <summary>Made (and the dataset's masks checked) in the constructor when the run is CTCal with the oracle teacher.</summary>
    private OracleTeacher? _oracleTeacher;

    /// <summary>Teacher maps of the calibrated samples (batch positions <paramref name="calibrated"/>) from their records' masks.</summary>
    private IReadOnlyDictionary<string, Tensor> OracleTeacherMaps(List<int> indices, List<int> calibrated, NoisedBatch batch)
    {
        _oracleTeacher ??= new OracleTeacher(_model, _data, _ctcal!.Layers);
        return _oracleTeacher.Maps(calibrated.Select(b => indices[b]).ToList(), calibrated.Select(b => batch.Prompts[b].Nouns).ToList(),
            (int)batch.Context.Hidden.shape[1], batch.Latents.device);
    }
}
