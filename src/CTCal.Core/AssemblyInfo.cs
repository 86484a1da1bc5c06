using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("CTCal.Core.Tests")]
