using System.Runtime.CompilerServices;
using System.Xml.Linq;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// The project graph keeps its seams (issue #13). Read from the <c>src/*/*.csproj</c> files (and every project they
/// reference, and the <c>Directory.Build.props</c>/<c>.targets</c> between a project and the repository root):
/// <list type="bullet">
/// <item>The trainer (the CTCal.Trainer library, the CTCal.BaseModel recipe and the CTCal.Trainer.Cli executable,
/// ctcal-train) references neither CTCal.Export nor CTCal.Plugin, directly or through another project, in any form: the
/// trainer writes diffusers folders and knows nothing of ONNX or of hosts.</item>
/// <item>The trainer library (CTCal.Trainer) reaches neither CTCal.Synthetic (the synthetic world is the base-model
/// recipe's business: CTCal.BaseModel) nor the command-line packages System.CommandLine and Spectre.Console (those belong
/// to ctcal-train), directly or through a project it references.</item>
/// <item>CTCal.Export (and CTCal.Export.Cli, and everything a host loads: Contracts, Core, Hosting, Plugin, and the
/// reference host) never reaches TorchSharp or libtorch, directly or through a project it references. Every project
/// reference is followed here, build-order-only ones too, because NuGet flows package references through them.</item>
/// <item>No src project references an executable (OutputType Exe) as an assembly: library code lives in libraries. A
/// build-order-only reference (<c>ReferenceOutputAssembly="false"</c>) is allowed: ctcal-main uses one to have ctcal-train
/// and the plugin built, then runs the trainer as a child process and loads a copy of the plugin's output folder, as any
/// host does. Test (and bench) projects may reference executables.</item>
/// </list>
/// </summary>
public sealed class ArchitectureTests
{
    private static readonly Lazy<ProjectGraph> Graph = new(() => ProjectGraph.Load(FindRepoRoot()));

    [Fact]
    public void TheGraphIsReadFromTheSourceProjects()
    {
        var names = Graph.Value.SourceProjects.Select(p => p.Name).ToHashSet();
        foreach (string expected in new[] { "CTCal.BaseModel", "CTCal.Contracts", "CTCal.Core", "CTCal.Export", "CTCal.Export.Cli", "CTCal.Hosting", "CTCal.Host", "CTCal.MainJob", "CTCal.Plugin", "CTCal.Trainer", "CTCal.Trainer.Cli" })
        {
            Assert.Contains(expected, names);
        }

        Assert.False(Graph.Value.Find("CTCal.Trainer")!.IsExe, "CTCal.Trainer should read as a library");
        Assert.False(Graph.Value.Find("CTCal.BaseModel")!.IsExe, "CTCal.BaseModel should read as a library");
        Assert.True(Graph.Value.Find("CTCal.Trainer.Cli")!.IsExe, "CTCal.Trainer.Cli (ctcal-train) should read as an executable");
        Assert.False(Graph.Value.Find("CTCal.Hosting")!.IsExe, "CTCal.Hosting should read as a library");
        Assert.Contains(Graph.Value.Find("CTCal.Trainer")!.Packages, p => p == "TorchSharp");
    }

    [Fact]
    public void TheTrainerReferencesNeitherTheExporterNorThePlugin() =>
        AssertNone(Graph.Value.TrainerViolations());

    [Fact]
    public void TheTrainerLibraryReachesNeitherTheSyntheticWorldNorTheCommandLinePackages() =>
        AssertNone(Graph.Value.TrainerLibraryViolations());

    [Fact]
    public void TheExporterAndWhatAHostLoadsNeverReachTorchSharp() =>
        AssertNone(Graph.Value.TorchSharpViolations());

    [Fact]
    public void NoSourceProjectReferencesAnExecutableAsAnAssembly() =>
        AssertNone(Graph.Value.ExecutableReferenceViolations());

    /// <summary>The rules catch what they are meant to, on a made-up repository (so they cannot pass by reading nothing).</summary>
    [Fact]
    public void EachRuleFailsOnAForbiddenReference()
    {
        string root = Path.Combine(Path.GetTempPath(), $"ctcal-arch-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllText(Path.Combine(Directory.CreateDirectory(root).FullName, "CTCal.sln"), "");
            void Project(string name, bool exe, string items) =>
                File.WriteAllText(
                    Path.Combine(Directory.CreateDirectory(Path.Combine(root, "src", name)).FullName, name + ".csproj"),
                    $"""
                    <Project Sdk="Microsoft.NET.Sdk">
                      <PropertyGroup>{(exe ? "<OutputType>Exe</OutputType>" : "")}</PropertyGroup>
                      <ItemGroup>{items}</ItemGroup>
                    </Project>
                    """);
            string Ref(string name, bool assembly = true) =>
                $"""<ProjectReference Include="..\{name}\{name}.csproj"{(assembly ? "" : " ReferenceOutputAssembly=\"false\"")} />""";

            Project("CTCal.Core", false, "");
            Project("CTCal.Torchy", false, """<PackageReference Include="TorchSharp" />""");
            Project("CTCal.Export", false, Ref("CTCal.Core") + Ref("CTCal.Torchy", assembly: false)); // reaches TorchSharp through a project
            Project("CTCal.Plugin", false, Ref("CTCal.Export"));
            Project("CTCal.Synthetic", false, Ref("CTCal.Core"));
            Project("CTCal.Words", false, Ref("CTCal.Synthetic", assembly: false) + """<PackageReference Include="System.CommandLine" />""");
            Project("CTCal.Trainer", false, Ref("CTCal.Core") + Ref("CTCal.Plugin", assembly: false) + Ref("CTCal.Words") + """<PackageReference Include="Spectre.Console" />""");
            Project("CTCal.BaseModel", false, Ref("CTCal.Trainer") + Ref("CTCal.Synthetic") + Ref("CTCal.Export")); // Synthetic allowed here, Export not
            Project("CTCal.Trainer.Cli", true, Ref("CTCal.BaseModel") + """<PackageReference Include="System.CommandLine" /><PackageReference Include="Spectre.Console" />""");
            Project("CTCal.Host", true, Ref("CTCal.Core"));
            Project("CTCal.MainJob", true, Ref("CTCal.Host") + Ref("CTCal.Trainer.Cli", assembly: false)); // the first is forbidden, the second allowed

            var graph = ProjectGraph.Load(root);
            Assert.Contains(graph.TrainerViolations(), v => v.Contains("CTCal.Trainer") && v.Contains("CTCal.Plugin"));
            Assert.Contains(graph.TrainerViolations(), v => v.StartsWith("CTCal.Trainer references CTCal.Export", StringComparison.Ordinal)); // through the plugin
            Assert.Contains(graph.TrainerViolations(), v => v.StartsWith("CTCal.BaseModel references CTCal.Export", StringComparison.Ordinal));
            Assert.Contains(graph.TrainerViolations(), v => v.StartsWith("CTCal.Trainer.Cli references CTCal.Export", StringComparison.Ordinal)); // through the recipe
            var library = graph.TrainerLibraryViolations();
            Assert.Contains(library, v => v.Contains("CTCal.Synthetic") && v.Contains("CTCal.Words")); // through another project, build-order only
            Assert.Contains(library, v => v.Contains("System.CommandLine") && v.Contains("CTCal.Words"));
            Assert.Contains(library, v => v.Contains("Spectre.Console"));
            Assert.All(library, v => Assert.StartsWith("CTCal.Trainer ", v)); // BaseModel and the CLI may use them
            Assert.Equal(3, library.Count);
            Assert.Contains(graph.TorchSharpViolations(), v => v.StartsWith("CTCal.Export ", StringComparison.Ordinal) && v.Contains("CTCal.Torchy"));
            Assert.Contains(graph.TorchSharpViolations(), v => v.StartsWith("CTCal.Plugin ", StringComparison.Ordinal));
            var exe = Assert.Single(graph.ExecutableReferenceViolations());
            Assert.Contains("CTCal.MainJob", exe);
            Assert.Contains("CTCal.Host", exe);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static void AssertNone(List<string> violations) =>
        Assert.True(violations.Count == 0, string.Join(Environment.NewLine, violations));

    /// <summary>The folder holding CTCal.sln, above the test's output folder or, failing that, above this source file.</summary>
    private static string FindRepoRoot([CallerFilePath] string sourceFile = "")
    {
        foreach (string start in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(sourceFile) ?? "" })
        {
            for (var dir = string.IsNullOrEmpty(start) ? null : new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "CTCal.sln")))
                {
                    return dir.FullName;
                }
            }
        }

        throw new DirectoryNotFoundException($"CTCal.sln not found above {AppContext.BaseDirectory} or {sourceFile}");
    }
}

/// <summary>One project file as read: its references (with whether they reference the assembly) and package names.</summary>
internal sealed record ProjectNode(string Name, string FilePath, bool IsExe, IReadOnlyList<(string FilePath, bool ReferencesAssembly)> References, IReadOnlyList<string> Packages);

/// <summary>The projects under <c>src/</c> and everything they reference, read from the project files (no MSBuild evaluation).</summary>
internal sealed class ProjectGraph
{
    /// <summary>Projects that must never reach TorchSharp: the exporter, its CLI, and everything a host loads.</summary>
    public static readonly string[] TorchSharpFree = ["CTCal.Export", "CTCal.Export.Cli", "CTCal.Contracts", "CTCal.Core", "CTCal.Hosting", "CTCal.Plugin", "CTCal.Host"];

    private readonly Dictionary<string, ProjectNode> _byPath = new(StringComparer.Ordinal);
    private readonly string _root;

    private ProjectGraph(string root) => _root = root;

    public List<ProjectNode> SourceProjects { get; } = [];

    public static ProjectGraph Load(string root)
    {
        var graph = new ProjectGraph(Path.GetFullPath(root));
        string src = Path.Combine(graph._root, "src");
        foreach (string file in Directory.EnumerateFiles(src, "*.csproj", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            graph.SourceProjects.Add(graph.Read(file));
        }

        if (graph.SourceProjects.Count == 0)
        {
            throw new InvalidOperationException($"no project files under {src}");
        }

        return graph;
    }

    public ProjectNode? Find(string name) => SourceProjects.FirstOrDefault(p => p.Name == name);

    /// <summary>Every project reachable from <paramref name="from"/>, with the chain that reaches it.</summary>
    public IEnumerable<(ProjectNode Project, string Path)> Reachable(ProjectNode from, bool assemblyReferencesOnly)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal) { from.FilePath };
        var queue = new Queue<(ProjectNode, string)>();
        queue.Enqueue((from, from.Name));
        while (queue.Count > 0)
        {
            var (node, path) = queue.Dequeue();
            foreach (var (file, assembly) in node.References)
            {
                if ((assemblyReferencesOnly && !assembly) || !seen.Add(file))
                {
                    continue;
                }

                var next = Read(file);
                string nextPath = $"{path} -> {next.Name}";
                yield return (next, nextPath);
                queue.Enqueue((next, nextPath));
            }
        }
    }

    /// <summary>The trainer's projects: the library, the base-model recipe and the command line (ctcal-train).</summary>
    public static readonly string[] TrainerProjects = ["CTCal.Trainer", "CTCal.BaseModel", "CTCal.Trainer.Cli"];

    /// <summary>Packages of the command line, which the trainer library must not reach.</summary>
    public static readonly string[] CommandLinePackages = ["System.CommandLine", "Spectre.Console"];

    public List<string> TrainerViolations()
    {
        _ = Find("CTCal.Trainer") ?? throw new InvalidOperationException("src/CTCal.Trainer/CTCal.Trainer.csproj not found");
        return SourceProjects.Where(p => TrainerProjects.Contains(p.Name))
            .SelectMany(project => Reachable(project, assemblyReferencesOnly: false)
                .Where(r => r.Project.Name is "CTCal.Export" or "CTCal.Plugin")
                .Select(r => $"{project.Name} references {r.Project.Name} ({r.Path}); the trainer must not know the exporter or the plugin"))
            .ToList();
    }

    public List<string> TrainerLibraryViolations()
    {
        var trainer = Find("CTCal.Trainer") ?? throw new InvalidOperationException("src/CTCal.Trainer/CTCal.Trainer.csproj not found");
        var violations = new List<string>();
        foreach (var (node, path) in new[] { (trainer, trainer.Name) }.Concat(Reachable(trainer, assemblyReferencesOnly: false)))
        {
            if (node.Name == "CTCal.Synthetic")
            {
                violations.Add($"CTCal.Trainer references CTCal.Synthetic ({path}); the synthetic world belongs to CTCal.BaseModel");
            }

            foreach (string package in node.Packages.Where(p => CommandLinePackages.Contains(p, StringComparer.OrdinalIgnoreCase)))
            {
                violations.Add($"CTCal.Trainer reaches {package} ({path} -> package {package}); command-line code belongs to CTCal.Trainer.Cli");
            }
        }

        return violations;
    }

    public List<string> TorchSharpViolations()
    {
        var violations = new List<string>();
        foreach (var project in SourceProjects.Where(p => TorchSharpFree.Contains(p.Name)))
        {
            foreach (var (node, path) in new[] { (project, project.Name) }.Concat(Reachable(project, assemblyReferencesOnly: false)))
            {
                foreach (string package in node.Packages.Where(IsTorch))
                {
                    violations.Add($"{project.Name} reaches {package} ({path} -> package {package}); it must stay TorchSharp-free");
                }
            }
        }

        return violations;
    }

    public List<string> ExecutableReferenceViolations()
    {
        var violations = new List<string>();
        foreach (var project in SourceProjects)
        {
            foreach (var (file, assembly) in project.References.Where(r => r.ReferencesAssembly))
            {
                var target = Read(file);
                if (target.IsExe)
                {
                    violations.Add($"{project.Name} references the executable {target.Name} as an assembly; move the shared code into a library " +
                                   "(or make it a build-order-only reference: ReferenceOutputAssembly=\"false\")");
                }
            }
        }

        return violations;
    }

    private static bool IsTorch(string package) =>
        package.StartsWith("TorchSharp", StringComparison.OrdinalIgnoreCase) || package.StartsWith("libtorch", StringComparison.OrdinalIgnoreCase);

    private ProjectNode Read(string file)
    {
        file = Path.GetFullPath(file);
        if (_byPath.TryGetValue(file, out var known))
        {
            return known;
        }

        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"referenced project {file} does not exist", file);
        }

        string folder = Path.GetDirectoryName(file)!;
        var project = XDocument.Load(file);
        var documents = new List<(XDocument Document, string Folder)> { (project, folder) };

        // Directory.Build.props/.targets from the project's folder up to the repository root apply to it as well.
        for (var dir = new DirectoryInfo(folder); dir is not null && dir.FullName.Length >= _root.Length; dir = dir.Parent)
        {
            foreach (string name in new[] { "Directory.Build.props", "Directory.Build.targets" })
            {
                string candidate = Path.Combine(dir.FullName, name);
                if (File.Exists(candidate))
                {
                    documents.Add((XDocument.Load(candidate), dir.FullName));
                }
            }
        }

        // Items with the folder their paths are relative to (the file that declares them).
        IEnumerable<(XElement Item, string Folder)> Items(string name) =>
            documents.SelectMany(d => d.Document.Descendants().Where(e => e.Name.LocalName == name).Select(e => (e, d.Folder)));

        bool isExe = project.Descendants().Any(e => e.Name.LocalName == "OutputType" && e.Value.Trim() is "Exe" or "WinExe");
        var references = Items("ProjectReference")
            .Select(i => (
                FilePath: Path.GetFullPath(Path.Combine(i.Folder, ((string?)i.Item.Attribute("Include") ?? "").Replace('\\', Path.DirectorySeparatorChar))),
                ReferencesAssembly: !string.Equals(MetadataOf(i.Item, "ReferenceOutputAssembly"), "false", StringComparison.OrdinalIgnoreCase)))
            .ToList();
        var packages = Items("PackageReference").Select(i => (string?)i.Item.Attribute("Include")).OfType<string>().Distinct().ToList();
        var node = new ProjectNode(Path.GetFileNameWithoutExtension(file), file, isExe, references, packages);
        _byPath[file] = node;
        return node;
    }

    /// <summary>Item metadata written as an attribute or as a child element.</summary>
    private static string? MetadataOf(XElement item, string name) =>
        (string?)item.Attribute(name) ?? item.Elements().FirstOrDefault(c => c.Name.LocalName == name)?.Value.Trim();
}
