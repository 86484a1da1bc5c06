using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("CTCal.Export.Tests")]
[assembly: InternalsVisibleTo("ctcal-export")]
