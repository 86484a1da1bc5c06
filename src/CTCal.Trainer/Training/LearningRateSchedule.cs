namespace CTCal.Trainer.Training;

/// <summary>Learning-rate schedules: constant or cosine, both after a linear warmup from 0.</summary>
public enum LrScheduleKind { Constant, Cosine }

/// <summary>
/// lr(step) for optimizer step <c>step</c> (0-based): <c>base·(step+1)/warmup</c> during warmup; then constant, or
/// <c>base·0.5·(1+cos(π·progress))</c> with progress = (step-warmup)/(total-warmup) for cosine (reaching 0 at the last step).
/// The schedule is a pure function of the step, so its position in a checkpoint is the step count.
/// </summary>
public sealed record LearningRateSchedule(LrScheduleKind Kind, double BaseRate, int WarmupSteps, int TotalSteps)
{
    public double At(long step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return BaseRate * (step + 1) / WarmupSteps;
        if (Kind == LrScheduleKind.Constant) return BaseRate;
        double span = Math.Max(1, TotalSteps - WarmupSteps);
        double progress = Math.Clamp((step - WarmupSteps) / span, 0, 1);
        return BaseRate * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
