using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("CTCal.Trainer.Tests")]
