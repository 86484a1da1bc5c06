#!/usr/bin/env bash
# The full-size benchmark of issue #15, on a generated full-size model (published configs, seeded random weights):
#   1. ctcal-export make-model     writes the diffusers folder (skipped when it is already there)
#   2. ctcal-train bench step      one LoRA training step (CTCal on, batch 1), with and without gradient checkpointing,
#                                  alternating in one process: seconds per step, peak RSS, activation memory
#   3. ctcal-export bench          export to ONNX fp32, then fp16: time and peak RSS against the weight bytes
#   4. CTCal.Bench.Inference       one generation through the loaded plugin on CPU (2 steps): seconds per step, peak RSS
# Each part prints its own figures (key=value or RESULT lines); nothing here is timed by the script itself.
#
# usage: bench/full-size.sh [sd15|sd21|sd21-base] [work folder] [training steps per mode]
# Needs about 3x the fp32 weights free on disk (SD 1.5: 4.3 GB each for the folder and the export) and, for SD 1.5 at
# 512 px, about 8 GB of memory (docs/trainer.md, "Memory"). Build first: dotnet build CTCal.sln -c Release
set -euo pipefail
kind=${1:-sd15}
work=${2:-${TMPDIR:-/tmp}/ctcal-full-size}
steps=${3:-1}
case "$kind" in
  sd15|sd21-base) resolution=512 ;;
  sd21) resolution=768 ;;
  *) echo "full-size.sh: kind '$kind' is not sd15, sd21 or sd21-base" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
bin() { echo "$root/src/$1/bin/Release/net10.0/$2"; }
export_cli=$(bin CTCal.Export.Cli ctcal-export.dll)
train_cli=$(bin CTCal.Trainer.Cli ctcal-train.dll)
inference="$root/bench/CTCal.Bench.Inference/bin/Release/net10.0/CTCal.Bench.Inference.dll"
for f in "$export_cli" "$train_cli" "$inference"; do
  [ -f "$f" ] || { echo "full-size.sh: $f not built; run: dotnet build CTCal.sln -c Release" >&2; exit 2; }
done
mkdir -p "$work"
model="$work/$kind"
echo "== $kind at ${resolution} px in $work; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ ! -f "$model/model_index.json" ]; then
  echo "== 1. make-model"
  dotnet "$export_cli" make-model --kind "$kind" --out "$model" --tokenizer "$root/tests/data/fixtures/clip-tokenizer" --seed 1
fi
echo "== 2. training step, batch 1, LoRA rank 4, CTCal on: without and with gradient checkpointing"
dotnet "$train_cli" bench step --model "$model" --resolution "$resolution" --batch 1 --steps "$steps" --warmup 1 --compare
echo "== 3. export fp32 and fp16"
rm -rf "$work/export-fp32" "$work/export-fp16"
dotnet "$export_cli" bench --model "$model" --parts all --dir "$work/export-fp32" --keep
dotnet "$export_cli" bench --model "$model" --parts all --dir "$work/export-fp16" --keep --fp16
echo "== 4. one ${resolution}x${resolution} generation through the plugin, CPU, 2 steps"
rm -rf "$work/host" && mkdir -p "$work/host/models" && mv "$work/export-fp32/onnx" "$work/host/models/$kind"
rm -rf "$work/export-fp16"   # disk: the fp16 export was only measured
dotnet "$inference" --pipeline --onnx "$work/host/models/$kind" --size "$resolution" --steps 2 --runs 1 --providers cpu --dir "$work/pipeline"
echo "== done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
