using CTCal.Host.Cli;
using CTCal.Hosting;
using NLog;

// ctcal-host: logging comes from the nlog.config copied beside the executable (build/nlog.config: console + rolling file).
try
{
    var root = HostCommands.Build(Console.Out, new NLogSink("ctcal-host"), id => new NLogSink($"plugin.{id}"));
    using var cancel = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        cancel.Cancel();
    };
    return await root.Parse(args).InvokeAsync(cancellationToken: cancel.Token);
}
finally
{
    LogManager.Shutdown();
}
