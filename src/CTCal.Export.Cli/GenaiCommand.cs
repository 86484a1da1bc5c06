using System.CommandLine;
using CTCal.Export.Decoder;

namespace CTCal.Export.Cli;

/// <summary>
/// <c>ctcal-export genai --from &lt;folder&gt; --out &lt;folder&gt;</c>: turns the subject model that
/// <c>ctcal-train base subjects-model</c> trained (decoder.safetensors, decoder_config.json, tokenizer.json) into an ONNX
/// Runtime GenAI model folder (model.onnx written by CTCal's ONNX writer, genai_config.json, tokenizer.json,
/// tokenizer_config.json). Exit 0, or 2 naming the missing or bad file.
/// </summary>
internal static class GenaiCommand
{
    public static Command Create()
    {
        var from = new Option<string>("--from") { Description = "folder written by 'ctcal-train base subjects-model'", Required = true };
        var output = new Option<string>("--out") { Description = "GenAI model folder to write", Required = true };
        var maxLength = new Option<int>("--max-length") { Description = "search max_length (prompt + answer tokens); at most the decoder's context length", DefaultValueFactory = _ => 96 };
        var command = new Command("genai", "Write an ONNX Runtime GenAI model folder for CTCal's tiny subject model.") { from, output, maxLength };
        command.SetAction(parse =>
        {
            try
            {
                GenaiModelFolder.WriteFromTraining(parse.GetValue(from)!, parse.GetValue(output)!, parse.GetValue(maxLength));
                long bytes = Directory.EnumerateFiles(parse.GetValue(output)!).Sum(f => new FileInfo(f).Length);
                Console.WriteLine($"genai: {parse.GetValue(output)} ({bytes / 1024} KiB)");
                return 0;
            }
            catch (Exception e) when (e is FileNotFoundException or InvalidDataException or ArgumentException or CTCal.Core.Safetensors.SafetensorsException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
        });
        return command;
    }
}
