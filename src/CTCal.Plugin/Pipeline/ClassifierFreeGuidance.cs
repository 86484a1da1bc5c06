namespace CTCal.Plugin.Pipeline;

/// <summary>
/// Classifier-free guidance for any denoiser (UNet noise, SD3 transformer velocity): out = uncond + g * (text - uncond),
/// with both halves from one batch-2 call (negative half first, diffusers' order) or from two batch-1 calls.
/// </summary>
internal static class ClassifierFreeGuidance
{
    /// <param name="batched">One call of batch 2 (<paramref name="both"/>) instead of two of batch 1.</param>
    /// <param name="both">The batch-2 call: [negative; prompt] outputs, each <paramref name="length"/> long.</param>
    /// <param name="uncond">The negative prompt's batch-1 call.</param>
    /// <param name="cond">The prompt's batch-1 call.</param>
    public static float[] Predict(bool batched, int length, Func<float[]> both, Func<float[]> uncond, Func<float[]> cond, float guidance)
    {
        float[] u, c;
        if (batched)
        {
            var outputs = both();
            u = outputs[..length];
            c = outputs[length..];
        }
        else
        {
            u = uncond();
            c = cond();
        }

        Combine(u, c, guidance);
        return c;
    }

    /// <summary>cond = uncond + g * (cond - uncond), in place in <paramref name="cond"/>.</summary>
    public static void Combine(ReadOnlySpan<float> uncond, Span<float> cond, float guidance)
    {
        for (int k = 0; k < cond.Length; k++)
        {
            cond[k] = uncond[k] + guidance * (cond[k] - uncond[k]);
        }
    }

    /// <summary>The two halves of a batch-2 input, [first; second], in one array.</summary>
    public static float[] Stack(float[] first, float[] second)
    {
        var both = new float[first.Length + second.Length];
        first.CopyTo(both, 0);
        second.CopyTo(both, first.Length);
        return both;
    }
}
