namespace CTCal.Host.Tests;

/// <summary>
/// A stand-in for <c>ctcal-train</c> speaking its progress protocol (JSON events on stdout, <c>docs/trainer.md</c>): a
/// POSIX shell script the plugin runs through <c>settings.trainerPath</c>, so the fine-tune flow is tested without
/// libtorch. The script body gets the job file as <c>$cfg</c>, and its <c>model</c> and <c>out</c> values as
/// <c>$base</c> and <c>$out</c>.
/// </summary>
internal static class StandInTrainer
{
    /// <summary>Writes the script at <paramref name="path"/> (made executable) and returns the path.</summary>
    public static string Write(string path, string body)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, ("""
            #!/bin/sh
            cfg=""; while [ $# -gt 0 ]; do [ "$1" = "--config" ] && cfg="$2"; shift; done
            base=$(sed -n 's/^ *"model": "\(.*\)",\{0,1\}$/\1/p' "$cfg")
            out=$(sed -n 's/^ *"out": "\(.*\)",\{0,1\}$/\1/p' "$cfg")

            """ + body).Replace("\r", ""));
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        return path;
    }

    /// <summary>
    /// A trainer that reports <paramref name="steps"/> steps with a falling loss (<paramref name="delay"/> seconds apart,
    /// as <c>sleep</c> takes it) and "trains" by copying the base UNet weights as its final weights.
    /// </summary>
    public static string CopyingBaseUnet(string path, int steps, string delay = "0")
    {
        string events = string.Join("\n", Enumerable.Range(1, steps).Select(i =>
            $$"""sleep {{delay}}; echo '{"event":"step","step":{{i}},"totalSteps":{{steps}},"loss":{{(0.5 / i).ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)}}}'"""));
        return Write(path, $$"""
            echo '{"event":"start","totalSteps":{{steps}},"method":"ctcal"}'
            {{events}}
            mkdir -p "$out/unet"
            cp "$base/unet/diffusion_pytorch_model.safetensors" "$out/unet/"
            echo '{"event":"checkpoint","step":{{steps}},"path":"checkpoints/step-{{steps:D7}}.safetensors"}'
            echo "{\"event\":\"done\",\"steps\":{{steps}},\"final_weights\":\"$out/unet/diffusion_pytorch_model.safetensors\",\"cancelled\":false,\"exit_code\":0}"
            """);
    }
}
