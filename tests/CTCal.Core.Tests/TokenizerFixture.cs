using CTCal.Core.Text;

namespace CTCal.Core.Tests;

/// <summary>Loads the CLIP vocabulary (~1 MB) once for all tokenizer tests.</summary>
public sealed class TokenizerFixture
{
    public TokenizerFixture()
    {
        string dir = Path.Combine(CTCal.Tests.TestPaths.Fixtures, "clip-tokenizer");
        Sd1 = ClipTokenizer.FromFiles(Path.Combine(dir, "vocab.json"), Path.Combine(dir, "merges.txt"));
    }

    /// <summary>Pads with &lt;|endoftext|&gt; (SD1); pass padId 0 for SD2.</summary>
    public ClipTokenizer Sd1 { get; }
}
