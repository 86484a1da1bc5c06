namespace CTCal.Core.Models;

/// <summary>Rules for weight files: only safetensors is loaded; pickle-based formats are refused with an explanation.</summary>
public static class WeightFiles
{
    /// <summary>Extensions of PyTorch/pickle checkpoints, which this project never opens.</summary>
    public static readonly IReadOnlyList<string> PickleExtensions = [".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle"];

    /// <summary>True when the file name ends in a pickle-based checkpoint extension.</summary>
    public static bool IsPickle(string path) =>
        PickleExtensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

    /// <summary>Why a pickle file is refused and what to do instead (one sentence naming the file).</summary>
    public static string PickleRefusal(string path) =>
        $"'{path}' is a pickle-based PyTorch checkpoint; loading pickle can execute arbitrary code, so it is not read. " +
        "Convert it to safetensors (e.g. diffusers' save_pretrained(..., safe_serialization=True), or safetensors.torch.save_file on the state dict) and use the .safetensors file.";

    /// <summary>Refuses anything that is not a <c>.safetensors</c> file name.</summary>
    /// <exception cref="ModelFolderException">a pickle-based or unknown weight format.</exception>
    public static void EnsureSafetensors(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (IsPickle(path)) throw new ModelFolderException(path, [PickleRefusal(path)]);
        if (!path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new ModelFolderException(path, [$"'{path}' is not a .safetensors file; weights are loaded from safetensors only"]);
    }
}
