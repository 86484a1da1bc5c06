#!/usr/bin/env bash
# Times the first generation through installed plugin packages (docs/packaging.md, "Startup"): for each package folder
# given, a host folder is laid out in a temporary directory (the built ctcal-host, the package copied into plugins/, one
# plugins.json entry, the repository's tiny SD 1.x checkpoint exported to ONNX); then RUNS fresh processes of
# `ctcal-host generate` (64x64, 10 steps) are timed wall-clock, packages interleaved run by run, and the median printed, with
# the in-process "first call (loads sessions)" of `ctcal-host bench` for each run.
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
  "settings": { "modelsFolder": "models", "executionProviders": ["cpu"] } } ] }
JSON
  (cd "$host" && dotnet ctcal-host.dll export --checkpoint "$OLDPWD/tests/data/fixtures/tiny-sd1" --id tiny-sd1 >/dev/null 2>&1)
  i=$((i + 1))
done

declare -A wall first
for run in $(seq 1 "$runs"); do
  i=0
  for package in "$@"; do
    host="$work/host$i"
    start=$(date +%s%N)
    (cd "$host" && dotnet ctcal-host.dll generate -m tiny-sd1 --prompt "a red cube" --width 64 --height 64 --steps 10 --seed "$run" -o out >/dev/null 2>&1)
    end=$(date +%s%N)
    wall[$i]+="$(( (end - start) / 1000000 )) "
    ms=$(cd "$host" && dotnet ctcal-host.dll bench -m tiny-sd1 --size 64 --steps 10 --runs 1 --concurrency 1 2>/dev/null | sed -n 's/^first call (loads sessions): \([0-9]*\) ms$/\1/p')
    first[$i]+="$ms "
    i=$((i + 1))
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
i=0
for package in "$@"; do
  echo "$package"
  echo "  generate process, wall ms: ${wall[$i]}-> median $(echo "${wall[$i]}" | median)"
  echo "  bench first call, ms:      ${first[$i]}-> median $(echo "${first[$i]}" | median)"
  i=$((i + 1))
done
