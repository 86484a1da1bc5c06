using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("CTCal.Plugin.Tests")]
