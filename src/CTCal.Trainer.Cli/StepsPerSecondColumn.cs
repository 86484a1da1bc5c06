using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace CTCal.Trainer.Cli;

/// <summary>Progress column showing optimizer steps per second.</summary>
public sealed class StepsPerSecondColumn : ProgressColumn
{
    public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
        new Text(task.Speed is { } speed ? string.Create(CultureInfo.InvariantCulture, $"{speed:F2} it/s") : "-- it/s");
}

/// <summary>Progress column showing "step/total".</summary>
public sealed class StepCountColumn : ProgressColumn
{
    public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
        new Text(string.Create(CultureInfo.InvariantCulture, $"{task.Value:F0}/{task.MaxValue:F0}"));
}
