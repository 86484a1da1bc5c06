using System.CommandLine;
using CTCal.Core.Probes;
using CTCal.Contracts;
using CTCal.Trainer.Calibration;
using CTCal.Trainer.Data;
using CTCal.Trainer.Training;

namespace CTCal.Trainer.Cli;

/// <summary>
/// <c>ctcal-train probe</c>: the premise probe (<see cref="PremiseProbe"/>): how much of each subject noun's
/// cross-attention lies inside the subject's mask at each timestep and layer, against chance. Writes
/// <c>probe.json</c> and <c>probe.md</c> into <c>--out</c>. <paramref name="args"/> is the whole command line, quoted in the files.
/// </summary>
internal sealed class ProbeVerb(CliContext context, string[] args)
{
    public Command Build()
    {
        var model = new Option<string>("--model") { Description = "diffusers model folder", Required = true };
        var data = new Option<string>("--data") { Description = "dataset folder whose metadata.jsonl records carry 'masks' (ctcal-train base dataset --with-masks)", Required = true };
        var output = new Option<string>("--out") { Description = "folder for probe.json and probe.md", Required = true };
        var records = new Option<int>("--records") { Description = "records probed (the first ones with masks)", DefaultValueFactory = _ => 64 };
        var timesteps = new Option<int[]>("--timesteps")
        {
            Description = "timesteps probed; the smallest is the teacher", AllowMultipleArgumentsPerToken = true,
            DefaultValueFactory = _ => [.. new PremiseProbeOptions().Timesteps],
        };
        var resolution = new Option<int>("--resolution") { Description = "image side the records are cropped and resized to", DefaultValueFactory = _ => FineTuneJob.Defaults.Resolution };
        var seed = new Option<long>("--seed") { Description = "seed of the VAE sample and noise of each record", DefaultValueFactory = _ => 1 };
        var threads = new Option<int>("--threads") { Description = "torch CPU threads (0: library default)", DefaultValueFactory = _ => 0 };
        var command = new Command("probe", "Premise probe: attention mass of each subject noun inside its mask per timestep and layer, against chance (probe.json, probe.md).");
        foreach (var o in new Option[] { model, data, output, records, timesteps, resolution, seed, threads }) command.Options.Add(o);
        command.SetAction(parse => context.Guarded(() =>
        {
            string modelFolder = parse.GetValue(model)!, dataFolder = parse.GetValue(data)!;
            string outFolder = Path.GetFullPath(parse.GetValue(output)!);
            CliContext.RefuseOverlap(outFolder, modelFolder, "--model");
            CliContext.RefuseOverlap(outFolder, dataFolder, "--data");
            var options = new PremiseProbeOptions { Records = parse.GetValue(records), Timesteps = parse.GetValue(timesteps)!, Seed = parse.GetValue(seed) };
            if (options.Records <= 0) throw new UsageException($"--records must be positive, got {options.Records}");
            if (options.Timesteps.Distinct().Count() < 2) throw new UsageException("--timesteps needs at least two distinct values (the smallest is the teacher)");
            int side = parse.GetValue(resolution);
            if (side is < FineTuneJob.MinResolution or > FineTuneJob.MaxResolution)
                throw new UsageException($"--resolution must be in {FineTuneJob.MinResolution}..{FineTuneJob.MaxResolution}, got {side}");
            CliContext.SetThreads(parse.GetValue(threads));

            var dataset = ImageCaptionDataset.Open(dataFolder, side);
            foreach (var problem in dataset.Report.Problems) context.Info($"dataset: {problem} (skipped)");
            using var diffusion = context.LoadModel(modelFolder);
            if (side % diffusion.VaeScaleFactor != 0)
                throw new UsageException($"--resolution {side} is not a multiple of the model's VAE scale factor {diffusion.VaeScaleFactor}");
            int trainTimesteps = diffusion.CreateObjective(new TrainingOptions()).NumTrainTimesteps;
            foreach (int t in options.Timesteps)
                if (t < 0 || t >= trainTimesteps) throw new UsageException($"--timesteps {t} is outside the model's 0..{trainTimesteps - 1}");

            var result = PremiseProbe.Run(diffusion, dataset, options,
                (done, total) => { if (done % 16 == 0 || done == total) context.Info($"probe: {done}/{total} records"); },
                context.Cancellation.Token);
            result.Write(outFolder, "ctcal-train " + string.Join(' ', args));
            foreach (var v in result.Verdicts.Where(v => v.Layer == PremiseProbeResult.AllLayers))
                context.Out.WriteLine($"{v.Resolution}x{v.Resolution}: teacher mass {v.TeacherMass:F3}, large-t mass {v.LargeTMass:F3}, chance {v.Chance:F3}: premise {(v.Holds ? "holds" : "does not hold")}");
            context.Out.WriteLine($"probe: {result.Records} records, {result.Nouns} nouns -> {Path.Combine(outFolder, PremiseProbeResult.MarkdownFileName)}");
            return ExitCodes.Ok;
        }));
        return command;
    }
}
