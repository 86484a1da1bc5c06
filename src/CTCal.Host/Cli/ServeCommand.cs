using System.CommandLine;
using CTCal.Host.Web;
using CTCal.Hosting;

namespace CTCal.Host.Cli;

/// <summary>
/// <c>ctcal-host serve</c>: the web front end (models, generate, gallery, compare, fine-tune, export) on
/// <c>http://127.0.0.1:7860/</c> until Ctrl+C or SIGTERM (exit code 0). A refused address or token is exit code 2,
/// before anything binds; a port in use is exit code 2 too.
/// </summary>
internal static class ServeCommand
{
    public static Command Create(TextWriter output, Func<ParseResult, PluginHost> loadPlugins)
    {
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => WebOptions.DefaultPort };
        var bind = new Option<string>("--bind") { Description = "Address to listen on (loopback only unless --allow-remote)", DefaultValueFactory = _ => "127.0.0.1" };
        var allowRemote = new Option<bool>("--allow-remote") { Description = "Allow a non-loopback --bind (needs --token)" };
        var token = new Option<string?>("--token") { Description = $"Secret every request must carry (header X-CTCal-Token or ?token=; at least {WebOptions.MinTokenLength} characters)" };
        var outDir = new Option<string>("--out", "-o") { Description = "Gallery folder for the generated images", DefaultValueFactory = _ => "gallery" };
        var command = new Command("serve", "Serve the web front end: models, generate, gallery, compare, fine-tune, export");
        foreach (var o in new Option[] { port, bind, allowRemote, token, outDir })
        {
            command.Options.Add(o);
        }

        command.SetAction((parse, ct) => HostCommands.RunAsync(output, async () =>
        {
            var options = new WebOptions(parse.GetValue(bind)!, parse.GetValue(port), parse.GetValue(outDir)!, parse.GetValue(allowRemote), parse.GetValue(token));
            options.Check();
            using var plugins = loadPlugins(parse);
            WebServer server;
            try
            {
                server = await WebServer.StartAsync(options, plugins, ct);
            }
            catch (IOException ex)
            {
                throw new InvalidOperationException($"cannot listen on {options.Bind}:{options.Port}: {ex.Message}", ex);
            }

            await using (server)
            {
                output.WriteLine($"listening on {server.Address}{(options.Token is null ? "" : " (token required)")}");
                output.WriteLine($"gallery: {Path.GetFullPath(options.OutputFolder)}");
                output.Flush();
                try
                {
                    await Task.Delay(Timeout.Infinite, ct);
                }
                catch (OperationCanceledException)
                {
                    output.WriteLine("stopping");
                }
            }

            return 0;
        }));
        return command;
    }
}
