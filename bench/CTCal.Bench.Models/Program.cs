// Forward+backward cost of cross-attention capture on the tiny SD1 UNet, and resident memory over a training-like loop.
using System.Diagnostics;
using CTCal.Core.Diffusers;
using CTCal.Trainer.Networks;
using TorchSharp;
using static TorchSharp.torch;

int runs = 30, warmup = 5, iterations = 200, batch = 2, threads = 0;
string? folder = null;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--runs": runs = int.Parse(Next()); break;
        case "--warmup": warmup = int.Parse(Next()); break;
        case "--iterations": iterations = int.Parse(Next()); break;
        case "--batch": batch = int.Parse(Next()); break;
        case "--unet": folder = Next(); break;
        case "--threads": threads = int.Parse(Next()); break;
        case "-h" or "--help":
            Console.WriteLine("ctcal bench models [--runs 30] [--warmup 5] [--iterations 200] [--batch 2] [--threads N] [--unet <diffusers unet folder>]");
            return 0;
        default: Console.Error.WriteLine($"unknown argument '{args[i]}'"); return 2;
    }
}
folder ??= FindTinyUNet();

if (threads > 0) set_num_threads(threads);
var device = DeviceSelector.Select("auto");
using var unet = new UNet2DConditionModel(UNetConfig.Load(Path.Combine(folder, "config.json")));
DiffusersWeights.Load(unet, folder);
unet.to(device);
var config = unet.Config;
int latent = config.SampleSize;
manual_seed(0);
using var sample = randn(new long[] { batch, config.InChannels, latent, latent }, device: device);
using var context = randn(new long[] { batch, 77, config.CrossAttentionDim }, device: device);
using var timestep = tensor(500L, device: device);
var paths = unet.CrossAttentionPaths.Select(l => l.Path).ToList();

Console.WriteLine($"UNet {folder}: {unet.parameters().Sum(p => p.numel()):N0} parameters, sample [{batch}, {config.InChannels}, {latent}, {latent}], " +
    $"device {device}, torch threads {get_num_threads()}, captured layers {paths.Count}");

// One training-like step: forward, loss (noise MSE stand-in plus, with capture, a term on every map), backward.
void Step(bool capture)
{
    using var scope = NewDisposeScope();
    foreach (var p in unet.parameters()) p.grad?.zero_();
    using var cap = capture ? new AttentionCapture(paths) : null;
    var output = unet.forward(sample, timestep, context, cap);
    var loss = output.pow(2).mean();
    if (cap is not null)
        foreach (var map in cap.Maps.Values) loss = loss.add(map.pow(2).mean());
    loss.backward();
}

double Median(List<double> xs) { xs.Sort(); return xs.Count % 2 == 1 ? xs[xs.Count / 2] : (xs[xs.Count / 2 - 1] + xs[xs.Count / 2]) / 2; }

List<double> Time(bool capture, int count)
{
    var ms = new List<double>();
    for (int i = 0; i < count; i++)
    {
        var sw = Stopwatch.StartNew();
        Step(capture);
        if (device.type == DeviceType.CUDA) cuda.synchronize();
        ms.Add(sw.Elapsed.TotalMilliseconds);
    }
    return ms;
}

for (int i = 0; i < warmup; i++) { Step(false); Step(true); }
// Alternate short off/on rounds so drift from other load on the machine affects both alike.
var off = new List<double>();
var on = new List<double>();
const int rounds = 5;
for (int round = 0; round < rounds; round++)
{
    int count = runs / rounds + (round < runs % rounds ? 1 : 0);
    off.AddRange(Time(capture: false, count));
    on.AddRange(Time(capture: true, count));
}
double mOff = Median(off), mOn = Median(on);
Console.WriteLine($"forward+backward, capture off: median {mOff:F2} ms over {off.Count} runs (min {off.Min():F2}, max {off.Max():F2})");
Console.WriteLine($"forward+backward, capture on : median {mOn:F2} ms over {on.Count} runs (min {on.Min():F2}, max {on.Max():F2})");
Console.WriteLine($"capture on / off ratio: {mOn / mOff:F3}");

long RssKiB()
{
    foreach (string line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0]);
    return -1;
}

GC.Collect();
long start = RssKiB();
var checkpoints = new List<(int Iteration, long Rss)> { (0, start) };
for (int i = 1; i <= iterations; i++)
{
    Step(capture: true);
    if (i % 50 == 0) { GC.Collect(); checkpoints.Add((i, RssKiB())); }
}
long end = checkpoints[^1].Rss;
Console.WriteLine($"VmRSS over {iterations} forward+backward iterations with capture on: " +
    string.Join(", ", checkpoints.Select(c => $"it {c.Iteration}: {c.Rss / 1024.0:F1} MiB")));
Console.WriteLine($"VmRSS start {start / 1024.0:F1} MiB, end {end / 1024.0:F1} MiB, change {(end - start) / 1024.0:+0.0;-0.0} MiB " +
    $"({(end - start) / (double)Math.Max(1, iterations):F1} KiB per iteration)");
return 0;

static string FindTinyUNet()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        string candidate = Path.Combine(dir.FullName, "tests", "data", "fixtures", "tiny-sd1", "unet");
        if (File.Exists(Path.Combine(dir.FullName, "CTCal.sln")) && Directory.Exists(candidate)) return candidate;
    }
    throw new DirectoryNotFoundException("tests/data/fixtures/tiny-sd1/unet not found above the executable; pass --unet <folder>");
}
