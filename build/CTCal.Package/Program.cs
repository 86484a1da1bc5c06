using CTCal.Package;

// ctcal-package [rid ...] [--out DIR] [--no-ready-to-run] [--gpu None|DirectML|Cuda] [--framework TFM] [--no-zip]
// Default: linux-x64 and win-x64 into artifacts/package. See docs/packaging.md.
var rids = new List<string>();
string output = "";
bool readyToRun = true;
bool zip = true;
string gpu = "None";
string? framework = null;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--out" when i + 1 < args.Length:
            output = args[++i];
            break;
        case "--gpu" when i + 1 < args.Length:
            gpu = args[++i];
            break;
        case "--framework" when i + 1 < args.Length:
            framework = args[++i];
            break;
        case "--no-ready-to-run":
            readyToRun = false;
            break;
        case "--no-zip":
            zip = false;
            break;
        case "-h" or "--help":
            Console.WriteLine("usage: ctcal-package [rid ...] [--out DIR] [--no-ready-to-run] [--gpu None|DirectML|Cuda] [--framework TFM] [--no-zip]");
            Console.WriteLine($"  rids: {string.Join(", ", PackageLayout.SupportedRids)} (default: all); DIR default: <repo>/artifacts/package");
            Console.WriteLine("  --framework: build the plugin for TFM instead of net8.0 (e.g. net10.0: its ReadyToRun code is then used by .NET 10 hosts, and only .NET 10+ hosts load it)");
            return 0;
        case { } rid when !rid.StartsWith('-'):
            rids.Add(rid);
            break;
        default:
            Console.Error.WriteLine($"error: unknown or incomplete option '{args[i]}' (see --help)");
            return 2;
    }
}

if (gpu is not ("None" or "DirectML" or "Cuda"))
{
    Console.Error.WriteLine($"error: --gpu must be None, DirectML or Cuda, not '{gpu}'");
    return 2;
}

try
{
    var options = new PackageOptions(rids.Count > 0 ? rids : PackageLayout.SupportedRids, output, readyToRun, gpu, zip, framework);
    if (output.Length == 0)
    {
        options = options with { OutputFolder = Path.Combine(options.RepoRoot, "artifacts", "package") };
    }

    foreach (var result in new PackageBuilder(options, Console.Out).BuildAll())
    {
        Console.WriteLine(result);
    }

    return 0;
}
catch (PackageException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 1;
}
