#!/usr/bin/env bash
# One short check of the CUDA path on one GPU machine, start to end in under 8 minutes:
# Unsloth vs transformers+peft on SFT, GRPO and batched generation, one table + JSON
# (see bench/gpu_check.py for what each row measures).
#
#   bash bench/gpu_check.sh MODEL_DIR [OUT_DIR] [bench/gpu_check.py options]
#
# MODEL_DIR: a Qwen2.5-VL checkpoint folder; when it has no config.json, a random-init
# Qwen2.5-VL-3B-shaped model is built there first (`medlib build-tiny --shape 3b`, bf16, offline;
# GPU_CHECK_SHAPE=tiny builds the tiny model instead, as the CPU smoke test does).
# The time the build takes comes off the check's budget (GPU_CHECK_TOTAL_S, default 450 s).
# OUT_DIR (default gpu-check): gpu_check.json, gpu-check.log, one log and JSON per backend, the data.
# Offline machines: see the README's GPU section for bringing the GPU packages there first.
set -euo pipefail
model=${1:?usage: bash bench/gpu_check.sh MODEL_DIR [OUT_DIR] [options]}
out=${2:-gpu-check}
shift $(( $# > 1 ? 2 : 1 ))
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1 \
  PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
total=${GPU_CHECK_TOTAL_S:-450}
start=$(date +%s)
mkdir -p "$out"
if [ ! -e "$model/config.json" ]; then
  echo "[gpu-check] building a random-init ${GPU_CHECK_SHAPE:-3b} Qwen2.5-VL at $model" | tee "$out/gpu-check.log"
  # what `medlib build-tiny MODEL_DIR --shape 3b --image-size 448` does, without the CLI's other imports
  "$py" -c "import sys; from medlib.models.tiny import build_tiny_model; \
print(build_tiny_model(sys.argv[1], shape=sys.argv[2], image_size=448))" "$model" "${GPU_CHECK_SHAPE:-3b}" 2>&1 \
    | tail -1 | tee -a "$out/gpu-check.log"
fi
left=$(( total - ($(date +%s) - start) ))
"$py" "$repo/bench/gpu_check.py" --model "$model" --out "$out" --budget-s "$left" "$@" 2>&1 | tee -a "$out/gpu-check.log"
