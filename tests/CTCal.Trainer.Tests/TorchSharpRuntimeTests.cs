using CTCal.Build;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace CTCal.Trainer.Tests;

/// <summary>TorchSharp initialises on this machine from a plain build (the libstdc++ fix runs in the build) and trains.</summary>
public sealed class TorchSharpRuntimeTests
{
    [Fact]
    public void TorchInitialisesAndRunsABackwardPass()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var conv = nn.Conv2d(3, 4, 3, padding: 1);
        var x = randn(2, 3, 8, 8);
        var loss = conv.forward(x).pow(2).mean();
        loss.backward();

        Assert.NotNull(conv.weight!.grad);
        Assert.True(conv.weight.grad!.abs().sum().item<float>() > 0f);
        Assert.True(float.IsFinite(loss.item<float>()));
    }

    [SkippableFact]
    public void OutputCopyOfLibTorchSharpIsLoadableOnThisSystem()
    {
        string library = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Skip.IfNot(OperatingSystem.IsLinux(), "the libstdc++ patch applies to the linux-x64 library only");
        Assert.True(File.Exists(library), $"{library} missing from the test output");
        byte[] bytes = File.ReadAllBytes(library);
        var outcome = GlibcxxWeakVersionPatch.PatchBytes(bytes, "GLIBCXX_3.4.32", library);
        // Where the system lacks the version the build must already have made it weak; elsewhere it may be untouched.
        if (GlibcxxWeakVersionPatch.SystemLibstdcxxLacks("GLIBCXX_3.4.32") == true)
            Assert.Equal(GlibcxxWeakVersionPatch.Outcome.AlreadyWeak, outcome);
        else
            Assert.NotEqual(GlibcxxWeakVersionPatch.Outcome.VersionNotReferenced, outcome);
    }

    [SkippableFact]
    public void PatchIsIdempotentAndTouchesOnlyTheFlagBytes()
    {
        string cached = Path.Combine(Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"),
            "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        string source = File.Exists(cached) ? cached : Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Skip.IfNot(File.Exists(source), $"no linux-x64 libLibTorchSharp.so in this restore ({source})");
        byte[] original = File.ReadAllBytes(source);
        byte[] once = (byte[])original.Clone();
        var first = GlibcxxWeakVersionPatch.PatchBytes(once, "GLIBCXX_3.4.32", source);
        byte[] twice = (byte[])once.Clone();
        var second = GlibcxxWeakVersionPatch.PatchBytes(twice, "GLIBCXX_3.4.32", source);

        Assert.Equal(GlibcxxWeakVersionPatch.Outcome.AlreadyWeak, second);
        Assert.Equal(once, twice);
        int changed = Enumerable.Range(0, original.Length).Count(i => original[i] != once[i]);
        if (first == GlibcxxWeakVersionPatch.Outcome.Patched) Assert.Equal(1, changed); // the low byte of vna_flags
        else Assert.Equal(0, changed);
        Assert.Equal(GlibcxxWeakVersionPatch.Outcome.VersionNotReferenced,
            GlibcxxWeakVersionPatch.PatchBytes((byte[])original.Clone(), "GLIBCXX_9.9.99", source));
    }

    [Fact]
    public void NonElfInputIsRejectedWithTheFileName()
    {
        var e = Assert.Throws<InvalidDataException>(() => GlibcxxWeakVersionPatch.PatchBytes(new byte[100], "GLIBCXX_3.4.32", "bogus.so"));
        Assert.Contains("bogus.so", e.Message);
    }
}
