#!/usr/bin/env bash
# Times the first generation through installed plugin packages (docs/packaging.md, "Startup"): for each package folder
# given, a host folder is laid out in a temporary directory (the built ctcal-host, the package copied into plugins/, one
# plugins.json entry, the repository's tiny SD 1.x checkpoint exported to ONNX); then RUNS fresh processes of
# `ctcal-host generate` (64x64, 10 steps) are timed wall-clock, packages interleaved run by run, and the medians printed, with
# what a fresh `ctcal-host bench` process says about its first image: milliseconds since its process started, and how many
# methods the JIT compiled by then and in how many milliseconds (the part ReadyToRun code replaces; CPU time, so it is
# far less disturbed by other load on the machine than wall-clock time).
# Usage: build/measure-first-generation.sh PACKAGE_FOLDER [PACKAGE_FOLDER ...]   (RUNS=7 by default)
# Needs: dotnet build src/CTCal.Host -c Release; packages from build/package.sh (e.g. with and without --no-ready-to-run).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-7}
hostbin=src/CTCal.Host/bin/Release/net10.0
[ -f "$hostbin/ctcal-host.dll" ] || { echo "error: build the host first: dotnet build src/CTCal.Host -c Release" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

i=0
for package in "$@"; do
  host="$work/host$i"
  mkdir -p "$host/plugins"
  cp -r "$hostbin/." "$host/"
  cp -r "$package" "$host/plugins/ctcal.onnx"
  cat > "$host/plugins.json" <<JSON
{ "version": 1, "plugins": [ { "id": "ctcal.onnx", "path": "plugins/ctcal.onnx", "assembly": "CTCal.Plugin.dll",
  "settings": { "modelsFolder": "models", "executionProviders": ["cpu"], "intraOpThreads": 1 } } ] }
JSON
  (cd "$host" && dotnet ctcal-host.dll export --checkpoint "$OLDPWD/tests/data/fixtures/tiny-sd1" --id tiny-sd1 >/dev/null 2>&1)
  i=$((i + 1))
done

declare -A wall start jit jitms
for run in $(seq 1 "$runs"); do
  i=0
  for package in "$@"; do
    host="$work/host$i"
    t0=$(date +%s%N)
    (cd "$host" && dotnet ctcal-host.dll generate -m tiny-sd1 --prompt "a red cube" --width 64 --height 64 --steps 10 --seed "$run" -o out >/dev/null 2>&1)
    t1=$(date +%s%N)
    wall[$i]+="$(( (t1 - t0) / 1000000 )) "
    line=$(cd "$host" && dotnet ctcal-host.dll bench -m tiny-sd1 --size 64 --steps 10 --runs 1 --concurrency 1 2>/dev/null | grep '^first image ')
    start[$i]+="$(echo "$line" | sed -n 's/^first image \([0-9]*\) ms after process start.*/\1/p') "
    jit[$i]+="$(echo "$line" | sed -n 's/.*JIT so far: \([0-9]*\) methods.*/\1/p') "
    jitms[$i]+="$(echo "$line" | sed -n 's/.*methods, \([0-9]*\) ms compiling.*/\1/p') "
    i=$((i + 1))
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
i=0
for package in "$@"; do
  echo "$package"
  echo "  generate process, wall ms:             ${wall[$i]}-> median $(echo "${wall[$i]}" | median)"
  echo "  bench: first image after start, ms:    ${start[$i]}-> median $(echo "${start[$i]}" | median)"
  echo "  bench: methods JIT-compiled by then:   ${jit[$i]}-> median $(echo "${jit[$i]}" | median)"
  echo "  bench: JIT compile time by then, ms:   ${jitms[$i]}-> median $(echo "${jitms[$i]}" | median)"
  i=$((i + 1))
done
