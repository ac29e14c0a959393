#!/usr/bin/env bash
# The SFT and GRPO benchmarks on a CUDA machine, on a Qwen2.5-VL-3B-shaped random model, in one go.
#
#   bash bench/gpu.sh MODEL_DIR [OUT_DIR]
#
# MODEL_DIR: a Qwen2.5-VL checkpoint folder (random weights are fine: the figures are throughput);
# when it does not exist, a random-init Qwen2.5-VL-3B-shaped model is built there first
# (`medlib build-tiny MODEL_DIR --shape 3b`, bf16, offline, about 7.5 GB).
# Each benchmark prints its table; everything is also written to OUT_DIR/bench-gpu.log.
# Runs, in order (not yet timed on a GPU; the anchors suggest well under 30 minutes on an H100):
#   1. SFT at the anchor setting (batch 8, gradient checkpointing), medlib vs plain transformers+peft;
#   2. SFT spending memory instead: batch 16, no gradient checkpointing, 4 loader workers (vision cache on);
#   3. GRPO, LoRA, 448 px, 64 new tokens: TRL's eager generate vs medlib (batched rollouts + cache);
#   4. the same with compiled static-cache rollouts.
set -euo pipefail
model=${1:?usage: bash bench/gpu.sh MODEL_DIR [OUT_DIR]}
out=${2:-${OUT:-.}}
mkdir -p "$out"
log="$out/bench-gpu.log"
run() { echo "== $*" | tee -a "$log"; "$@" 2>&1 | grep -v -E "^\{|Warning|warn\(|^\s*$" | tail -12 | tee -a "$log"; }
py=${PYTHON:-python3}
if [ ! -e "$model/config.json" ]; then
  "$py" -m medlib build-tiny "$model" --shape 3b --image-size 448 2>&1 | tail -1 | tee -a "$log"
fi
run "$py" bench/sft.py --model "$model" --image-size 448 --batch-size 8 --steps 6 --epochs 2 --gradient-checkpointing
run "$py" bench/sft.py --model "$model" --image-size 448 --batch-size 16 --steps 6 --epochs 2 --dataloader-workers 4
run "$py" bench/grpo.py --checkpoint "$model" --image-size 448 --finetune lora --batch-size 8 --num-generations 4 \
    --max-completion-length 64 --steps 12 --rollout-engine eager --rollout-batch-steps 4
run "$py" bench/grpo.py --checkpoint "$model" --image-size 448 --finetune lora --batch-size 8 --num-generations 4 \
    --max-completion-length 64 --steps 12 --rollout-engine compiled --rollout-batch-steps 4
