#!/usr/bin/env bash
# The full-size benchmark of issue #15, on a generated full-size model (published configs, seeded random weights):
#   1. ctcal-export make-model     writes the diffusers folder (skipped when it is already there)
#   2. ctcal-train bench step      one LoRA training step (CTCal on, batch 1), with and without gradient checkpointing,
#                                  alternating in one process: seconds per step, peak RSS, activation memory
#   3. ctcal-export bench          export to ONNX fp32, then fp16: time and peak RSS against the weight bytes
#   4. CTCal.Bench.Inference       one generation through the loaded plugin on CPU (2 steps): seconds per step, peak RSS
# Each part prints its own figures (key=value or RESULT lines); nothing here is timed by the script itself, except that
# each step runs under /usr/bin/time (when present), which adds its wall time and the whole process's maximum RSS.
#
# sd3-medium: the SD3-medium transformer alone (stabilityai/stable-diffusion-3-medium-diffusers' transformer config, 2.03 B
# parameters, 8.3 GB fp32); no training step (2 is skipped), and 4 runs the exported transformer in ONNX Runtime for one
# step at <resolution>/8 latents, batch 1 (default 1024 px = 128x128 latents; SD3_STEP_SIZE=512 for 64x64), needing
# about 1.5x the weights in memory. Needs about 2.6x the fp32 weights free on disk (22 GB).
#
# usage: bench/full-size.sh [sd15|sd21|sd21-base|sd3-medium] [work folder] [training steps per mode]
# Needs about 3x the fp32 weights free on disk (SD 1.5: 4.3 GB each for the folder and the export) and, for SD 1.5 at
# 512 px, about 8 GB of memory (docs/trainer.md, "Memory"). Build first: dotnet build CTCal.sln -c Release
set -euo pipefail
kind=${1:-sd15}
work=${2:-${TMPDIR:-/tmp}/ctcal-full-size}
steps=${3:-1}
case "$kind" in
  sd15|sd21-base) resolution=512 ;;
  sd21) resolution=768 ;;
  sd3-medium) resolution=${SD3_STEP_SIZE:-1024} ;;
  *) echo "full-size.sh: kind '$kind' is not sd15, sd21, sd21-base or sd3-medium" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
bin() { echo "$root/src/$1/bin/Release/net10.0/$2"; }
export_cli=$(bin CTCal.Export.Cli ctcal-export.dll)
train_cli=$(bin CTCal.Trainer.Cli ctcal-train.dll)
inference="$root/bench/CTCal.Bench.Inference/bin/Release/net10.0/CTCal.Bench.Inference.dll"
for f in "$export_cli" "$train_cli" "$inference"; do
  [ -f "$f" ] || { echo "full-size.sh: $f not built; run: dotnet build CTCal.sln -c Release" >&2; exit 2; }
done
# timed <command...>: runs it, adding its wall time and maximum RSS (the whole process, /usr/bin/time) when available.
timed() {
  if [ -x /usr/bin/time ]; then /usr/bin/time -f "  /usr/bin/time: %e s wall, maximum RSS %M kB (whole process)" "$@"; else "$@"; fi
}
mkdir -p "$work"
model="$work/$kind"
echo "== $kind at ${resolution} px in $work; $(nproc) CPUs; $(free -g | awk '/Mem:/ {print $2}') GiB memory; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$kind" = sd3-medium ]; then
  if [ ! -f "$model/transformer/config.json" ]; then
    echo "== 1. make-model (transformer only)"
    timed dotnet "$export_cli" make-model --kind sd3-medium --out "$model" --seed 1
  fi
  echo "== 2. (no SD3 training-step bench)"
  echo "== 3. export fp32 and fp16 (transformer)"
  rm -rf "$work/export-fp32" "$work/export-fp16"
  timed dotnet "$export_cli" bench --model "$model" --parts transformer --dir "$work/export-fp32" --keep
  timed dotnet "$export_cli" bench --model "$model" --parts transformer --dir "$work/export-fp16" --keep --fp16
  rm -rf "$work/export-fp16"   # disk: the fp16 export was only measured
  echo "== 4. the fp32 export in ONNX Runtime (CPU): one step at $((resolution / 8))x$((resolution / 8)) latents, batch 1"
  timed dotnet "$inference" --family sd3 --onnx "$work/export-fp32/onnx" --size "$resolution" --batch 1 --runs 1
  echo "== done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi
if [ ! -f "$model/model_index.json" ]; then
  echo "== 1. make-model"
  timed dotnet "$export_cli" make-model --kind "$kind" --out "$model" --tokenizer "$root/tests/data/fixtures/clip-tokenizer" --seed 1
fi
echo "== 2. training step, batch 1, LoRA rank 4, CTCal on: without and with gradient checkpointing"
timed dotnet "$train_cli" bench step --model "$model" --resolution "$resolution" --batch 1 --steps "$steps" --warmup 1 --compare
echo "== 3. export fp32 and fp16"
rm -rf "$work/export-fp32" "$work/export-fp16"
timed dotnet "$export_cli" bench --model "$model" --parts all --dir "$work/export-fp32" --keep
timed dotnet "$export_cli" bench --model "$model" --parts all --dir "$work/export-fp16" --keep --fp16
echo "== 4. one ${resolution}x${resolution} generation through the plugin, CPU, 2 steps"
rm -rf "$work/host" && mkdir -p "$work/host/models" && mv "$work/export-fp32/onnx" "$work/host/models/$kind"
rm -rf "$work/export-fp16"   # disk: the fp16 export was only measured
timed dotnet "$inference" --pipeline --onnx "$work/host/models/$kind" --size "$resolution" --steps 2 --runs 1 --providers cpu --dir "$work/pipeline"
echo "== done; load average $(cut -d' ' -f1-3 /proc/loadavg)"
