using Xunit;

namespace CTCal.Package.Tests;

/// <summary>The tests that share one <see cref="PackageFixture"/> (each package is built once per test run).</summary>
[CollectionDefinition(Name)]
public sealed class PackageCollection : ICollectionFixture<PackageFixture>
{
    public const string Name = "packages";
}
