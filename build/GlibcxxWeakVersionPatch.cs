// Marks a missing libstdc++ symbol version as weak in an ELF shared library, so glibc's loader accepts it.
//
// Why: TorchSharp 0.107's libLibTorchSharp.so was linked by GCC 13 and lists GLIBCXX_3.4.32 in its version-needs
// (.gnu.version_r) only because <iostream> references std::ios_base_library_init(), which nothing calls. Debian 12's
// libstdc++ stops at GLIBCXX_3.4.30, so the loader refuses the library. Setting VER_FLG_WEAK (0x2) on that Vernaux
// entry turns the hard failure into a "weak version not found" note; every other symbol resolves as before.
//
// This one file is compiled twice: as the MSBuild inline task of build/TorchSharpLinuxFix.targets (RoslynCodeTaskFactory
// compiles a single source file), and into the tests with CTCAL_NO_MSBUILD_TASK defined (no MSBuild references there).
// It must stay self-contained C# (no project types, no external packages).
#nullable enable
using System;
using System.IO;
using System.Text;

namespace CTCal.Build
{
    public static class GlibcxxWeakVersionPatch
    {
        public const ushort VerFlgWeak = 0x2;
        private const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>Result of inspecting or patching one ELF file.</summary>
        public enum Outcome { Patched, AlreadyWeak, VersionNotReferenced }

        /// <summary>True when the libstdc++ the loader would use lacks <paramref name="version"/>; null when no libstdc++ was found.</summary>
        public static bool? SystemLibstdcxxLacks(string version)
        {
            string[] candidates =
            {
                "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
                "/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
                "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
            };
            foreach (string path in candidates)
            {
                if (!File.Exists(path)) continue;
                byte[] bytes = File.ReadAllBytes(path);
                return IndexOf(bytes, Encoding.ASCII.GetBytes(version + "\0")) < 0;
            }
            return null;
        }

        /// <summary>
        /// Sets VER_FLG_WEAK on every Vernaux entry named <paramref name="version"/> in <paramref name="elf"/>, in memory.
        /// Throws InvalidDataException naming <paramref name="fileForErrors"/> when the bytes are not a well-formed ELF64 LE file.
        /// </summary>
        public static Outcome PatchBytes(byte[] elf, string version, string fileForErrors)
        {
            Check(elf.Length >= 64 && elf[0] == 0x7f && elf[1] == (byte)'E' && elf[2] == (byte)'L' && elf[3] == (byte)'F', fileForErrors, "not an ELF file");
            Check(elf[4] == 2 && elf[5] == 1, fileForErrors, "only 64-bit little-endian ELF is supported");
            ulong shoff = U64(elf, 0x28, fileForErrors);
            ushort shentsize = U16(elf, 0x3A, fileForErrors);
            ushort shnum = U16(elf, 0x3C, fileForErrors);
            Check(shentsize >= 64, fileForErrors, "section header entries too small");

            bool referenced = false, changed = false;
            for (int i = 0; i < shnum; i++)
            {
                long sh = checked((long)shoff + (long)i * shentsize);
                if (U32(elf, sh + 4, fileForErrors) != ShtGnuVerneed) continue;
                long secOffset = checked((long)U64(elf, sh + 0x18, fileForErrors));
                uint link = U32(elf, sh + 0x28, fileForErrors);
                uint count = U32(elf, sh + 0x2C, fileForErrors);
                Check(link < shnum, fileForErrors, "version-needs section links to a missing string table");
                long strOffset = checked((long)U64(elf, checked((long)shoff + (long)link * shentsize) + 0x18, fileForErrors));

                long vn = secOffset;
                for (uint n = 0; n < count; n++)
                {
                    ushort auxCount = U16(elf, vn + 2, fileForErrors);
                    long aux = vn + U32(elf, vn + 8, fileForErrors);
                    for (int a = 0; a < auxCount; a++)
                    {
                        uint nameOffset = U32(elf, aux + 8, fileForErrors);
                        if (ReadCString(elf, strOffset + nameOffset, fileForErrors) == version)
                        {
                            referenced = true;
                            ushort flags = U16(elf, aux + 4, fileForErrors);
                            if ((flags & VerFlgWeak) == 0)
                            {
                                ushort newFlags = (ushort)(flags | VerFlgWeak);
                                elf[aux + 4] = (byte)(newFlags & 0xff);
                                elf[aux + 5] = (byte)(newFlags >> 8);
                                changed = true;
                            }
                        }
                        uint next = U32(elf, aux + 12, fileForErrors);
                        if (next == 0) break;
                        aux += next;
                    }
                    uint vnNext = U32(elf, vn + 12, fileForErrors);
                    if (vnNext == 0) break;
                    vn += vnNext;
                }
            }
            return !referenced ? Outcome.VersionNotReferenced : changed ? Outcome.Patched : Outcome.AlreadyWeak;
        }

        /// <summary>
        /// Patches the file at <paramref name="path"/> through a temporary file and a rename, so a hard link into a
        /// package cache is replaced, never written through.
        /// </summary>
        public static Outcome PatchFile(string path, string version)
        {
            byte[] bytes = File.ReadAllBytes(path);
            Outcome outcome = PatchBytes(bytes, version, path);
            if (outcome != Outcome.Patched) return outcome;
            string temp = path + ".weak-patch.tmp";
            File.WriteAllBytes(temp, bytes);
            // A rename (not a write through the old path): a hard link into a package cache is replaced, not modified.
            // netstandard API only: the MSBuild inline task compiles against it.
            File.Replace(temp, path, null);
            return outcome;
        }

        private static void Check(bool ok, string file, string message)
        {
            if (!ok) throw new InvalidDataException($"{file}: {message}");
        }

        private static ushort U16(byte[] b, long at, string file)
        {
            Check(at >= 0 && at + 2 <= b.Length, file, $"offset {at} outside the file");
            return (ushort)(b[at] | b[at + 1] << 8);
        }

        private static uint U32(byte[] b, long at, string file)
        {
            Check(at >= 0 && at + 4 <= b.Length, file, $"offset {at} outside the file");
            return BitConverter.ToUInt32(b, (int)at);
        }

        private static ulong U64(byte[] b, long at, string file)
        {
            Check(at >= 0 && at + 8 <= b.Length, file, $"offset {at} outside the file");
            return BitConverter.ToUInt64(b, (int)at);
        }

        private static string ReadCString(byte[] b, long at, string file)
        {
            Check(at >= 0 && at < b.Length, file, $"string offset {at} outside the file");
            long end = at;
            while (end < b.Length && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)at, (int)(end - at));
        }

        private static int IndexOf(byte[] haystack, byte[] needle)
        {
            for (int i = 0; i + needle.Length <= haystack.Length; i++)
            {
                int j = 0;
                while (j < needle.Length && haystack[i + j] == needle[j]) j++;
                if (j == needle.Length) return i;
            }
            return -1;
        }
    }

#if !CTCAL_NO_MSBUILD_TASK
    /// <summary>MSBuild task: patch every libLibTorchSharp.so below <see cref="Folder"/> when the system needs it.</summary>
    public sealed class CTCalPatchTorchSharpNative : Microsoft.Build.Utilities.Task
    {
        public const string Version = "GLIBCXX_3.4.32";

        [Microsoft.Build.Framework.Required]
        public string Folder { get; set; } = "";

        public override bool Execute()
        {
            if (!Directory.Exists(Folder)) return true;
            string[] libraries = Directory.GetFiles(Folder, "libLibTorchSharp.so", SearchOption.AllDirectories);
            if (libraries.Length == 0) return true;
            bool? lacks = GlibcxxWeakVersionPatch.SystemLibstdcxxLacks(Version);
            if (lacks == false)
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low, $"System libstdc++ provides {Version}: TorchSharp needs no patch.");
                return true;
            }
            foreach (string library in libraries)
            {
                var outcome = GlibcxxWeakVersionPatch.PatchFile(library, Version);
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, $"{library}: {Version} requirement {outcome}.");
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
