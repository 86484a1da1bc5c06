namespace CTCal.Core.Schedulers;

/// <summary>The model-output parameterisations, converted to the predicted clean sample x0 and noise eps.</summary>
internal static class Prediction
{
    public enum Kind { Epsilon, VPrediction, Sample }

    public static Kind Parse(SchedulerConfig config) => config.PredictionType switch
    {
        "epsilon" => Kind.Epsilon,
        "v_prediction" => Kind.VPrediction,
        "sample" => Kind.Sample,
        var p => throw new ArgumentException($"{config.File}: prediction_type '{p}' is not supported"),
    };

    /// <summary>
    /// Variance-preserving form x_t = sqrt(a) x0 + sqrt(1 - a) eps (a = alpha-bar_t): returns (x0, eps) for one element.
    /// epsilon: x0 = (x_t - sqrt(1-a) eps) / sqrt(a) (DDPM eq. 15); v (Salimans and Ho 2022): x0 = sqrt(a) x_t - sqrt(1-a) v,
    /// eps = sqrt(a) v + sqrt(1-a) x_t; sample: eps = (x_t - sqrt(a) x0) / sqrt(1-a).
    /// </summary>
    public static (double X0, double Eps) FromAlpha(Kind kind, double output, double sample, double sqrtAlpha, double sqrtOneMinusAlpha) => kind switch
    {
        Kind.Epsilon => ((sample - sqrtOneMinusAlpha * output) / sqrtAlpha, output),
        Kind.VPrediction => (sqrtAlpha * sample - sqrtOneMinusAlpha * output, sqrtAlpha * output + sqrtOneMinusAlpha * sample),
        _ => (output, (sample - sqrtAlpha * output) / sqrtOneMinusAlpha),
    };

    /// <summary>
    /// Variance-exploding form x = x0 + sigma eps used by the Euler family (Karras et al. 2022): the predicted x0.
    /// The v form applies to the model input x / sqrt(sigma^2 + 1): x0 = -sigma / sqrt(sigma^2 + 1) v + x / (sigma^2 + 1).
    /// </summary>
    public static double X0FromSigma(Kind kind, double output, double sample, double sigma) => kind switch
    {
        Kind.Epsilon => sample - sigma * output,
        Kind.VPrediction => output * (-sigma / Math.Sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1),
        _ => output,
    };
}
