using System.Diagnostics;
using System.Globalization;

namespace CTCal.Core.Diagnostics;

/// <summary>
/// Named places where a process can be made to die on purpose, so that crash-consistency tests land every kind of kill
/// every time instead of racing a file watcher. Inert unless the environment variable <c>CTCAL_FAULT_KILL</c> is set when
/// the process starts: <c>CTCAL_FAULT_KILL=&lt;point&gt;[#&lt;n&gt;]</c> kills this process with SIGKILL (no
/// <c>finally</c>, no flush, no exit handler runs) the <c>n</c>-th time (default 1) it reaches a point whose name matches.
/// A pattern ending in <c>*</c> matches every name with that prefix. The point names are listed in docs/hardening.md.
/// When the variable is unset, <see cref="Reached"/> is a read of one static field.
/// </summary>
public static class FaultPoints
{
    /// <summary>The environment variable read once at start-up.</summary>
    public const string Variable = "CTCAL_FAULT_KILL";

    private static readonly Spec? Armed = Load();
    private static int _hits;

    /// <summary>True when a kill point was armed through <see cref="Variable"/>.</summary>
    public static bool IsArmed => Armed is not null;

    /// <summary>Marks that the process has reached the point <paramref name="name"/>; kills it when that is the armed hit.</summary>
    public static void Reached(string name)
    {
        var spec = Armed;
        if (spec is null || !spec.Matches(name)) return;
        if (Interlocked.Increment(ref _hits) != spec.Hit) return;
        try
        {
            // One line for the test's log (stderr is unbuffered), then SIGKILL: nothing of the process's own shutdown runs.
            Console.Error.WriteLine($"fault injection: killed at '{name}' (hit {spec.Hit})");
        }
        catch (IOException)
        {
        }
        using var self = Process.GetCurrentProcess();
        self.Kill();
        Thread.Sleep(Timeout.Infinite); // Kill is asynchronous on some systems: never run past the point.
    }

    /// <summary>
    /// Reads <see cref="Variable"/>. A malformed value ends the process with exit status 2 and a message naming the variable
    /// the first time any point is reached: a typo must never silently disarm a crash test.
    /// </summary>
    private static Spec? Load()
    {
        try
        {
            return Spec.Parse(Environment.GetEnvironmentVariable(Variable));
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            Environment.Exit(2);
            return null;
        }
    }

    /// <summary>The parsed value of <see cref="Variable"/>.</summary>
    internal sealed record Spec(string Pattern, int Hit)
    {
        public bool Matches(string name) => Pattern.EndsWith('*')
            ? name.StartsWith(Pattern[..^1], StringComparison.Ordinal)
            : string.Equals(Pattern, name, StringComparison.Ordinal);

        /// <exception cref="ArgumentException">a malformed value, naming the variable: a typo must not silently disarm a test.</exception>
        public static Spec? Parse(string? value)
        {
            if (string.IsNullOrWhiteSpace(value)) return null;
            int hash = value.LastIndexOf('#');
            string pattern = (hash < 0 ? value : value[..hash]).Trim();
            int hit = 1;
            if (hash >= 0 && (!int.TryParse(value[(hash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out hit) || hit < 1))
                throw new ArgumentException($"{Variable}='{value}': the part after '#' must be a whole number of at least 1");
            if (pattern.Length == 0) throw new ArgumentException($"{Variable}='{value}': no point name before '#'");
            return new Spec(pattern, hit);
        }
    }
}
