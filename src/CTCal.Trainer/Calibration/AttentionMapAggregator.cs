using TorchSharp;
using static TorchSharp.torch;

namespace CTCal.Trainer.Calibration;

/// <summary>
/// Turns captured cross-attention probabilities into one map per noun: average over heads, pick the noun's tokens,
/// resize every layer to one square resolution (bilinear when enlarging, area when shrinking), average over layers.
/// </summary>
public static class AttentionMapAggregator
{
    /// <summary>
    /// Aggregates <paramref name="maps"/> (each [B, heads, H*W, tokens], softmax over tokens, H = W) of the given
    /// <paramref name="layers"/> into [B, K, R, R] noun maps, R = <paramref name="resolution"/> or the largest layer side.
    /// The values stay attention probabilities (no normalisation here). The returned tensor belongs to the caller's dispose scope.
    /// </summary>
    public static Tensor Aggregate(IReadOnlyDictionary<string, Tensor> maps, IReadOnlyList<string> layers, Tensor nounWeights, int? resolution = null)
    {
        if (layers.Count == 0) throw new ArgumentException("no attention layers selected for CTCal", nameof(layers));
        var sides = new int[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            if (!maps.TryGetValue(layers[i], out var map))
                throw new KeyNotFoundException($"attention maps of layer '{layers[i]}' were not captured (captured: {string.Join(", ", maps.Keys)})");
            if (map.dim() != 4) throw new ArgumentException($"attention maps of '{layers[i]}' must be [batch, heads, H*W, tokens], got [{string.Join(", ", map.shape)}]");
            long hw = map.shape[2];
            int side = (int)Math.Round(Math.Sqrt(hw));
            if ((long)side * side != hw) throw new ArgumentException($"attention maps of '{layers[i]}' have {hw} pixels, not a square (CTCal trains on square crops)");
            sides[i] = side;
        }
        int r = resolution ?? sides.Max();

        using var outer = NewDisposeScope();
        Tensor? sum = null;
        for (int i = 0; i < layers.Count; i++)
        {
            var map = maps[layers[i]];
            long batch = map.shape[0];
            if (nounWeights.shape[0] != batch || nounWeights.shape[2] != map.shape[3])
                throw new ArgumentException($"noun weights [{string.Join(", ", nounWeights.shape)}] do not match attention maps of '{layers[i]}' [{string.Join(", ", map.shape)}]");
            var perToken = map.mean(new long[] { 1 });                                         // [B, HW, tokens]
            var perNoun = matmul(nounWeights.to(perToken.dtype), perToken.transpose(1, 2));   // [B, K, HW]
            var square = perNoun.reshape(batch, nounWeights.shape[1], sides[i], sides[i]);    // [B, K, h, w]
            if (sides[i] != r)
            {
                var mode = sides[i] < r ? InterpolationMode.Bilinear : InterpolationMode.Area;
                square = nn.functional.interpolate(square, new long[] { r, r }, mode: mode, align_corners: mode == InterpolationMode.Bilinear ? false : null);
            }
            sum = sum is null ? square : sum + square;
        }
        return (sum! / layers.Count).MoveToOuterDisposeScope();
    }
}
