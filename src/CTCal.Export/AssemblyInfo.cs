using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("CTCal.Export.Tests")]
