#!/usr/bin/env bash
# The fine-tune speed comparison on a CUDA machine, with the real Florence-2-base architecture (random weights,
# built offline: no download) - our loop (bf16, workers) versus the tutorial-style loop (fp32, processor in the
# main process, no workers), and batched versus one-at-a-time prediction. Appends its figures, with the GPU named,
# to benchmarks/RESULTS.md. Needs only torch (CUDA), transformers, peft, accelerate, pillow, numpy, pyyaml,
# pydantic: no FiftyOne. Runs in well under 8 minutes on one H100.
#
#   bash benchmarks/gpu.sh [IMAGES] [BATCH]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: no CUDA device')"
gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))")
echo "gpu.sh: $gpu"
printf '\n## GPU run: %s (%s)\n' "$gpu" "$(date -u +%Y-%m-%d)" >> benchmarks/RESULTS.md
timeout 470 "$PY" -m benchmarks.bench_finetune --size base --device cuda --images "${1:-64}" --batch "${2:-8}" \
  --epochs 2 --results benchmarks/RESULTS.md
