using CTCal.Tests;
using NLog;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary>
/// The shipped nlog.config with <see cref="RunLog"/>: each run's lines go to its own main.log, work the run starts
/// (Task.Run) included, and nothing logged after its scope ends reaches its folder, so a finished run's folder can be
/// deleted while other work in the process goes on logging (the end-to-end test once failed deleting its folder because
/// another test's lines were still being written into it).
/// </summary>
public sealed class RunLogTests : IDisposable
{
    private readonly string _dir = TestPaths.NewTempDir("ctcal-runlog");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task EachRunLogsIntoItsOwnFolderAndNothingAfterItsScopeEnds()
    {
        Assert.NotNull(LogManager.Configuration); // nlog.config copied beside the tests from CTCal.MainJob
        var log = LogManager.GetLogger("ctcal-main.test");
        string tag = Guid.NewGuid().ToString("N");
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");

        async Task Run(string folder, string name)
        {
            Directory.CreateDirectory(folder);
            using var scope = RunLog.To(folder);
            for (int i = 0; i < 20; i++)
            {
                log.Info("{0} {1} line {2}", tag, name, i);
                await Task.Run(() => log.Info("{0} {1} worker {2}", tag, name, i));
                await Task.Yield();
            }
        }

        await Task.WhenAll(Run(a, "run-a"), Run(b, "run-b"));
        log.Info("{0} after both runs", tag);
        LogManager.Flush();

        string[] linesA = File.ReadAllLines(Path.Combine(a, "main.log")).Where(l => l.Contains(tag)).ToArray();
        string[] linesB = File.ReadAllLines(Path.Combine(b, "main.log")).Where(l => l.Contains(tag)).ToArray();
        Assert.Equal(40, linesA.Length);
        Assert.Equal(40, linesB.Length);
        Assert.All(linesA, l => Assert.Contains("run-a", l));
        Assert.All(linesB, l => Assert.Contains("run-b", l));
        Assert.DoesNotContain(linesA.Concat(linesB), l => l.Contains("after both runs"));
    }

    /// <summary>
    /// Commands run in one process (as these tests run them) each log their error into their own run's main.log, and lines
    /// logged after a command has returned reach no run's folder: the command's folder is scoped to its flow, not a
    /// process-wide variable that would send other tests' lines into a folder being deleted.
    /// </summary>
    [Fact]
    public async Task CommandsLogTheirErrorsIntoTheirOwnFoldersAndNothingAfterThem()
    {
        var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings { Out = new Spectre.Console.AnsiConsoleOutput(new StringWriter()) });
        var log = LogManager.GetLogger("ctcal-main.test");
        string tag = Guid.NewGuid().ToString("N");
        string a = Path.Combine(_dir, "a"), b = Path.Combine(_dir, "b");
        string missingA = Path.Combine(_dir, "no-base-a"), missingB = Path.Combine(_dir, "no-base-b");
        int[] codes = await Task.WhenAll(
            Task.Run(() => MainJobCli.RunAsync(["renders", "--quick", "--base", missingA, "--out", a], console, CancellationToken.None)),
            Task.Run(() => MainJobCli.RunAsync(["renders", "--quick", "--base", missingB, "--out", b], console, CancellationToken.None)));
        Assert.All(codes, c => Assert.Equal(ExitCodes.Failure, c));
        log.Info("{0} after both commands", tag);
        LogManager.Flush();
        string logA = File.ReadAllText(Path.Combine(a, "main.log"));
        string logB = File.ReadAllText(Path.Combine(b, "main.log"));
        Assert.Contains($"base model folder {missingA} not found", logA);
        Assert.Contains($"base model folder {missingB} not found", logB);
        Assert.DoesNotContain(missingB, logA);
        Assert.DoesNotContain(missingA, logB);
        Assert.Contains("ctcal-main: failed", logA); // the command's own error line, logged after the run's scope ended
        Assert.Contains("ctcal-main: failed", logB);
        Assert.DoesNotContain(tag, logA + logB);
    }
}
