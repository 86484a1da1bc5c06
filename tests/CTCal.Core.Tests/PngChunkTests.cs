using CTCal.Core.IO;
using Xunit;

namespace CTCal.Core.Tests;

/// <summary>
/// The PNG chunk writer and reader that the plugin's PNG encoder and decoder and the host's text chunks share: what
/// <see cref="PngChunk.Write"/> writes, <see cref="PngChunk.ReadAll"/> finds again; bad files are refused naming the byte.
/// </summary>
public sealed class PngChunkTests
{
    private static byte[] File(params (string Type, byte[] Data)[] chunks)
    {
        using var output = new MemoryStream();
        output.Write(PngChunk.Signature);
        foreach (var (type, data) in chunks)
        {
            PngChunk.Write(output, type, data);
        }

        return output.ToArray();
    }

    [Fact]
    public void ReadAllFindsTheWrittenChunksUpToIend()
    {
        byte[] png = [.. File(("IHDR", new byte[13]), ("tEXt", "k\0v"u8.ToArray()), ("IEND", [])), 1, 2, 3]; // bytes after IEND are not read
        var chunks = PngChunk.ReadAll(png, checkCrc: true);
        Assert.Equal(["IHDR", "tEXt", "IEND"], chunks.Select(c => c.Type));
        Assert.Equal((8, 13), (chunks[0].Offset, chunks[0].Length));
        Assert.Equal("k\0v"u8.ToArray(), png.AsSpan(chunks[1].DataOffset, chunks[1].Length).ToArray());
    }

    [Fact]
    public void BadFilesAreRefusedNamingWhatAndWhere()
    {
        Assert.Equal("Not a PNG file (bad signature)", Assert.Throws<InvalidDataException>(() => PngChunk.ReadAll(new byte[12], checkCrc: false)).Message);
        Assert.Equal("Init image is not a PNG file (bad signature)", Assert.Throws<InvalidDataException>(() => PngChunk.ReadAll(new byte[12], checkCrc: false, "Init image")).Message);

        byte[] png = File(("IHDR", new byte[13]), ("IEND", []));
        Assert.Equal("PNG chunk at byte 8 runs past the end of the file",
            Assert.Throws<InvalidDataException>(() => PngChunk.ReadAll(png.AsSpan(0, 20), checkCrc: false)).Message);

        png[20] ^= 1; // a data byte of IHDR
        Assert.Equal(2, PngChunk.ReadAll(png, checkCrc: false).Count);
        Assert.Equal("PNG chunk IHDR at byte 8 has a bad CRC", Assert.Throws<InvalidDataException>(() => PngChunk.ReadAll(png, checkCrc: true)).Message);
    }
}
