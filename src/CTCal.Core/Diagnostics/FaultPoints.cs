using System.Diagnostics;
using System.Globalization;

namespace CTCal.Core.Diagnostics;

/// <summary>
/// Named places where a process can be made to die on purpose, so that crash-consistency tests land every kind of kill
/// every time instead of racing a file watcher. Inert unless the environment variable <c>CTCAL_FAULT_KILL</c> is set when
/// the process starts: <c>CTCAL_FAULT_KILL=&lt;point&gt;[#&lt;n&gt;]</c> kills this process with SIGKILL (no
/// <c>finally</c>, no flush, no exit handler runs) the <c>n</c>-th time (default 1) it reaches a point whose name matches.
/// A pattern ending in <c>*</c> matches every name with that prefix. The point names are listed in docs/hardening.md.
/// When the variable is unset, <see cref="Reached(string)"/> is a read of one static field.
/// <para>Points given a release token (<see cref="Reached(string, CancellationToken)"/>) can also be held:
/// <c>CTCAL_FAULT_PAUSE=&lt;point&gt;[#&lt;n&gt;]</c> makes the process stop the <c>n</c>-th time it reaches a matching
/// point and wait there until the token is cancelled (in the trainer, by Ctrl+C or SIGTERM), so that a test can deliver a
/// signal at exactly that point instead of racing the process.</para>
/// </summary>
public static class FaultPoints
{
    /// <summary>The environment variable read once at start-up.</summary>
    public const string Variable = "CTCAL_FAULT_KILL";

    /// <summary>The environment variable, read once at start-up, that arms a pause (see <see cref="Reached(string, CancellationToken)"/>).</summary>
    public const string PauseVariable = "CTCAL_FAULT_PAUSE";

    private static readonly Spec? Armed = Load(Variable);
    private static readonly Spec? ArmedPause = Load(PauseVariable);
    private static int _hits;
    private static int _pauseHits;

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
    /// <see cref="Reached(string)"/> at a point where the process can also be held: when <see cref="PauseVariable"/> names
    /// it and this is the armed hit, writes <c>fault injection: paused at '&lt;point&gt;' (hit &lt;n&gt;)</c> to stderr and
    /// waits until <paramref name="release"/> is cancelled, then carries on.
    /// </summary>
    public static void Reached(string name, CancellationToken release)
    {
        Reached(name);
        var spec = ArmedPause;
        if (spec is null || !spec.Matches(name)) return;
        if (Interlocked.Increment(ref _pauseHits) != spec.Hit) return;
        try
        {
            Console.Error.WriteLine($"fault injection: paused at '{name}' (hit {spec.Hit})");
        }
        catch (IOException)
        {
        }
        release.WaitHandle.WaitOne();
    }

    /// <summary>
    /// Reads <paramref name="variable"/>. A malformed value ends the process with exit status 2 and a message naming the
    /// variable the first time any point is reached: a typo must never silently disarm a crash test.
    /// </summary>
    private static Spec? Load(string variable)
    {
        try
        {
            return Spec.Parse(Environment.GetEnvironmentVariable(variable), variable);
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
        public static Spec? Parse(string? value, string variable = Variable)
        {
            if (string.IsNullOrWhiteSpace(value)) return null;
            int hash = value.LastIndexOf('#');
            string pattern = (hash < 0 ? value : value[..hash]).Trim();
            int hit = 1;
            if (hash >= 0 && (!int.TryParse(value[(hash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out hit) || hit < 1))
                throw new ArgumentException($"{variable}='{value}': the part after '#' must be a whole number of at least 1");
            if (pattern.Length == 0) throw new ArgumentException($"{variable}='{value}': no point name before '#'");
            return new Spec(pattern, hit);
        }
    }
}
