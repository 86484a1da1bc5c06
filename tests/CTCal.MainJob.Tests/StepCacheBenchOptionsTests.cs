using CTCal.Tests;
using Spectre.Console;
using Xunit;

namespace CTCal.MainJob.Tests;

/// <summary><c>ctcal-main stepcache</c> refuses bad options as bad usage, naming the option, before it exports or generates anything.</summary>
public sealed class StepCacheBenchOptionsTests
{
    [Theory]
    [InlineData("--intervals 2,3", "--intervals: whole numbers from 1 to 100, starting with 1 (the reference), got 2,3")]
    [InlineData("--intervals 1,x", "--intervals: 'x' is not a whole number")]
    [InlineData("--branch 9", "--branches: each must be 1 to 4")]
    [InlineData("--branches 0,1", "--branches: each must be 1 to 4")]
    [InlineData("--test-seeds 0", "--validation-seeds and --test-seeds must be >= 1")]
    public async Task Bad_options_are_bad_usage_naming_the_option_and_nothing_is_written(string args, string message)
    {
        var output = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output), Ansi = AnsiSupport.No });
        console.Profile.Width = 4000;
        string dir = TestPaths.NewTempDir("ctcal-main-stepcache");
        try
        {
            string @out = Path.Combine(dir, "out");
            int code = await MainJobCli.RunAsync(["stepcache", "--out", @out, .. args.Split(' ')], console, CancellationToken.None);
            Assert.Equal(ExitCodes.BadUsage, code);
            Assert.Contains(message, output.ToString(), StringComparison.Ordinal);
            Assert.False(Directory.Exists(@out));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
