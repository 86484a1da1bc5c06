using CTCal.Core.Models;
using CTCal.Tests;
using Xunit;

namespace CTCal.Core.Tests;

public sealed class PathGuardTests : IDisposable
{
    private readonly string _root;
    private readonly string _outside;
    private readonly string _parent = TestPaths.NewTempDir();

    public PathGuardTests()
    {
        _root = Path.Combine(_parent, "root");
        _outside = Path.Combine(_parent, "outside");
        Directory.CreateDirectory(Path.Combine(_root, "plugins", "a"));
        Directory.CreateDirectory(_outside);
        File.WriteAllText(Path.Combine(_root, "plugins", "a", "plugin.dll"), "x");
        File.WriteAllText(Path.Combine(_outside, "secret.txt"), "x");
    }

    public void Dispose() => Directory.Delete(_parent, recursive: true);

    [Theory]
    [InlineData("plugins/a/plugin.dll")]
    [InlineData("plugins\\a\\plugin.dll")]
    [InlineData("./plugins/a/plugin.dll")]
    [InlineData("not/created/yet.json")]
    public void PlainRelativePathsResolveInside(string relative)
    {
        string resolved = PathGuard.ResolveInside(_root, relative);
        Assert.StartsWith(_root + Path.DirectorySeparatorChar, resolved);
        Assert.Equal(Path.GetFullPath(Path.Combine(_root, relative.Replace('\\', '/'))), resolved);
    }

    [Theory]
    [InlineData("../outside/secret.txt")]
    [InlineData("plugins/../../outside/secret.txt")]
    [InlineData("plugins/..")]
    [InlineData("..\\outside\\secret.txt")]
    [InlineData("..")]
    public void DotDotIsRefused(string relative)
    {
        var ex = Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, relative));
        Assert.Contains(relative, ex.Message);
        Assert.Contains("..", ex.Message);
        Assert.Equal(relative, ex.RelativePath);
        Assert.Equal(_root, ex.Root);
    }

    [Theory]
    [InlineData("/etc/passwd")]
    [InlineData("\\windows\\system32")]
    [InlineData("C:\\Windows\\system.ini")]
    [InlineData("C:relative")]
    public void AbsolutePathsAreRefused(string relative)
    {
        var ex = Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, relative));
        Assert.Contains("absolute", ex.Message);
    }

    [Fact]
    public void FullPathOfAFileInsideIsStillRefused() =>
        Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, Path.Combine(_root, "plugins", "a", "plugin.dll")));

    [Theory]
    [InlineData("")]
    [InlineData("  ")]
    [InlineData("a\0b")]
    public void EmptyOrNulIsRefused(string relative) => Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, relative));

    [Fact]
    public void DirectoryLinkEscapingTheRootIsRefused()
    {
        Directory.CreateSymbolicLink(Path.Combine(_root, "plugins", "evil"), _outside);
        var ex = Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, "plugins/evil/secret.txt"));
        Assert.Contains("link", ex.Message);
        Assert.Contains(_outside, ex.Message);
    }

    [Fact]
    public void FileLinkEscapingTheRootIsRefused()
    {
        File.CreateSymbolicLink(Path.Combine(_root, "manifest.json"), Path.Combine(_outside, "secret.txt"));
        Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, "manifest.json"));
    }

    [Fact]
    public void RelativeLinkEscapingTheRootIsRefused()
    {
        File.CreateSymbolicLink(Path.Combine(_root, "plugins", "up.txt"), "../../outside/secret.txt");
        Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, "plugins/up.txt"));
    }

    [Fact]
    public void ChainedLinksEndingOutsideAreRefused()
    {
        Directory.CreateSymbolicLink(Path.Combine(_root, "hop2"), _outside);
        Directory.CreateSymbolicLink(Path.Combine(_root, "hop1"), Path.Combine(_root, "hop2"));
        Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, "hop1/secret.txt"));
    }

    [Fact]
    public void BrokenLinkPointingOutsideIsRefused()
    {
        File.CreateSymbolicLink(Path.Combine(_root, "dangling.json"), Path.Combine(_outside, "not-there.json"));
        Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(_root, "dangling.json"));
    }

    [Fact]
    public void LinksStayingInsideAreAllowed()
    {
        Directory.CreateSymbolicLink(Path.Combine(_root, "alias"), Path.Combine(_root, "plugins", "a"));
        string resolved = PathGuard.ResolveInside(_root, "alias/plugin.dll");
        Assert.Equal(Path.Combine(_root, "alias", "plugin.dll"), resolved);
    }

    [Fact]
    public void RootGivenThroughALinkStillWorks()
    {
        string linkToRoot = Path.Combine(_parent, "root-link");
        Directory.CreateSymbolicLink(linkToRoot, _root);
        Assert.Equal(Path.Combine(linkToRoot, "plugins", "a", "plugin.dll"), PathGuard.ResolveInside(linkToRoot, "plugins/a/plugin.dll"));
        Directory.CreateSymbolicLink(Path.Combine(_root, "evil"), _outside);
        Assert.Throws<UnsafePathException>(() => PathGuard.ResolveInside(linkToRoot, "evil/secret.txt"));
    }
}
