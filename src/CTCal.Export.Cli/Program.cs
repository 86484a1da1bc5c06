using System.CommandLine;
using CTCal.Export.Cli;

var root = new RootCommand("ctcal-export: turn a diffusers Stable Diffusion checkpoint (safetensors) into an ONNX model folder (Optimum/OnnxStack layout).");
root.Subcommands.Add(ExportCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(MakeModelCommand.Create());
root.Subcommands.Add(GenaiCommand.Create());
return root.Parse(args).Invoke();
