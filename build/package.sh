#!/usr/bin/env bash
# Builds the installable plugin packages (docs/packaging.md): per runtime identifier a folder <out>/<rid>/ctcal.onnx
# (plugin, its dependencies, ONNX Runtime under runtimes/<rid>/native, ctcal-plugin.json, the self-contained trainer in
# trainer/) and <out>/ctcal.onnx-<version>-<rid>.zip. Same as: dotnet run -c Release --project build/CTCal.Package -- ARGS
# (which also works on Windows).
# Usage: build/package.sh [linux-x64] [win-x64] [--out DIR] [--no-ready-to-run] [--gpu None|DirectML|Cuda] [--framework TFM] [--no-zip]
#        default: both RIDs into artifacts/package
set -euo pipefail
cd "$(dirname "$0")/.."
exec dotnet run -c Release --project build/CTCal.Package -- "$@"
