using CsCheck;
using CTCal.Core.Models;
using Xunit;

namespace CTCal.Fuzz.Tests;

/// <summary>
/// PathGuard.ResolveInside: for any relative string the outcome is a path inside the root or UnsafePathException. A
/// returned path is checked lexically (Path.GetFullPath) and physically (every symbolic link along it followed) against
/// a root that holds links pointing inside, outside, to links, in a loop, and relative links that climb out.
/// </summary>
public sealed class PathGuardFuzzTests : IDisposable
{
    private static readonly Type[] Documented = [typeof(UnsafePathException)];
    private readonly TempFolder _temp = new("ctcal-fuzz-path");
    private readonly string _root;
    private readonly string _rootLink;

    public PathGuardFuzzTests()
    {
        _root = Path.Combine(_temp.Path, "root");
        string outside = Path.Combine(_temp.Path, "outside");
        Directory.CreateDirectory(Path.Combine(_root, "sub", "deeper"));
        Directory.CreateDirectory(outside);
        File.WriteAllText(Path.Combine(_root, "sub", "file.txt"), "x");
        File.WriteAllText(Path.Combine(outside, "secret.txt"), "x");
        File.CreateSymbolicLink(Path.Combine(_root, "in"), Path.Combine(_root, "sub"));
        Directory.CreateSymbolicLink(Path.Combine(_root, "out"), outside);
        File.CreateSymbolicLink(Path.Combine(_root, "outfile"), Path.Combine(outside, "secret.txt"));
        File.CreateSymbolicLink(Path.Combine(_root, "loop"), Path.Combine(_root, "loop"));
        File.CreateSymbolicLink(Path.Combine(_root, "chain"), Path.Combine(_root, "in"));
        File.CreateSymbolicLink(Path.Combine(_root, "chainout"), Path.Combine(_root, "out"));
        File.CreateSymbolicLink(Path.Combine(_root, "rel_out"), "../outside");
        File.CreateSymbolicLink(Path.Combine(_root, "sub", "up"), "..");
        File.CreateSymbolicLink(Path.Combine(_root, "sub", "upup"), "../..");
        File.CreateSymbolicLink(Path.Combine(_root, "dangling"), Path.Combine(_temp.Path, "missing"));
        _rootLink = Path.Combine(_temp.Path, "rootlink");
        Directory.CreateSymbolicLink(_rootLink, _root);
    }

    public void Dispose() => _temp.Dispose();

    private static readonly string[] Segments =
    [
        "sub", "deeper", "file.txt", "in", "out", "outfile", "loop", "chain", "chainout", "rel_out", "up", "upup", "dangling",
        "secret.txt", ".", "", "..", "...", ". .", " ..", ".. ", "~", "%2e%2e", "..\u2215..", "\u2024\u2024", "ｏｕｔ", "C:", ":",
        "\0", "a\0b", " ", "\t", "new", new string('n', 300), "\u00e9", "🎉", "\ud800", "*", "?", "$HOME",
    ];

    private static readonly Gen<string> Relative =
        from parts in Gen.OneOf(Gen.OneOf(Segments), Gen.String[Gen.Char["./\\:~ a"], 0, 6], Gen.String).Array[0, 6]
        from separator in Gen.OneOf("/", "\\", "//", "/./")
        from prefix in Gen.OneOf("", "", "", "/", "\\", "C:", "./", "//")
        from suffix in Gen.OneOf("", "", "/", "\\", "/.")
        select prefix + string.Join(separator, parts) + suffix;

    /// <summary>The path with every symbolic link along it followed (components that do not exist are appended as they are).</summary>
    private static string Physical(string fullPath)
    {
        string root = Path.GetPathRoot(fullPath)!;
        string current = root;
        foreach (string part in fullPath[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            string next = Path.Combine(current, part);
            FileSystemInfo info = Directory.Exists(next) ? new DirectoryInfo(next) : new FileInfo(next);
            if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target)
                next = Physical(Path.GetFullPath(target.FullName));
            current = next;
        }
        return Path.TrimEndingDirectorySeparator(current);
    }

    private static bool IsInside(string path, string root) =>
        path == root || path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    [Fact]
    public void Resolved_paths_never_leave_the_root_lexically_or_through_links()
    {
        string physicalRoot = Physical(Path.GetFullPath(_root));
        Gen.Select(Relative, Gen.Int[0, 2]).Run((relative, rootForm) =>
        {
            string root = rootForm switch { 0 => _root, 1 => _root + Path.DirectorySeparatorChar, _ => _rootLink };
            var outcome = FuzzBounds.Check(() => PathGuard.ResolveInside(root, relative), $"{FuzzBounds.Describe(relative)} under {root}", Documented);
            if (outcome.Value is not { } full) return;
            Assert.Equal(Path.GetFullPath(full), full);
            Assert.True(IsInside(Path.TrimEndingDirectorySeparator(full), Path.TrimEndingDirectorySeparator(Path.GetFullPath(root))),
                $"{full} is outside {root} for {FuzzBounds.Describe(relative)}");
            string physical = Physical(full);
            Assert.True(IsInside(physical, physicalRoot), $"{full} reaches {physical}, outside {physicalRoot}, for {FuzzBounds.Describe(relative)}");
        }, iter: FuzzBounds.Iterations * 2);
    }

    [Fact]
    public void Corpus_paths_replay()
    {
        // Each line of escape.txt must be refused; each line of inside.txt must resolve inside the root.
        foreach (string line in File.ReadAllLines(Path.Combine(Corpus.Folder("path-guard"), "escape.txt")).Where(l => l.Length > 0))
        {
            string relative = line.Replace("\\0", "\0");
            var outcome = FuzzBounds.Check(() => PathGuard.ResolveInside(_root, relative), FuzzBounds.Describe(relative), Documented);
            Assert.False(outcome.Succeeded, $"'{line}' resolved to {outcome.Value}");
        }
        foreach (string line in File.ReadAllLines(Path.Combine(Corpus.Folder("path-guard"), "inside.txt")).Where(l => l.Length > 0))
        {
            var outcome = FuzzBounds.Check(() => PathGuard.ResolveInside(_root, line), line, Documented);
            Assert.True(outcome.Succeeded, $"'{line}': {outcome.Error?.Message}");
            Assert.True(IsInside(Physical(outcome.Value!), Physical(_root)));
        }
    }
}
