using CTCal.Trainer.Data;
using static TorchSharp.torch;

namespace CTCal.BaseModel;

/// <summary>Pixel batches from an <see cref="ImageCaptionDataset"/> (images that fail to decode are skipped with the dataset's report).</summary>
internal static class BaseTrainingData
{
    /// <summary>[count, 3, r, r] in [-1, 1] from records <paramref name="indices"/>; undecodable ones are left out.</summary>
    public static (Tensor Pixels, List<int> Used) Pixels(ImageCaptionDataset data, IEnumerable<int> indices)
    {
        var used = new List<int>();
        var values = new List<float>();
        foreach (int i in indices)
        {
            var image = data.LoadImage(i);
            if (image is null) continue;
            used.Add(i);
            values.AddRange(image);
        }
        if (used.Count == 0) throw new DatasetException($"{data.Folder}: none of the requested images could be decoded");
        int r = data.Resolution;
        return (tensor(values.ToArray(), new long[] { used.Count, 3, r, r }), used);
    }
}
