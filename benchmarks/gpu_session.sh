#!/usr/bin/env bash
# The GPU measurements of benchmarks/NOTES.md, in parts that each fit a 10-minute device call:
#   bash benchmarks/gpu_session.sh throughput   # all models (auto forms), PyTorch beside them
#   bash benchmarks/gpu_session.sh variants     # V2 with the shifted depthwise (the BatchNorm change alone),
#                                               # cuDNN autotune levels 0 and 2 (compile time vs step time)
#   bash benchmarks/gpu_session.sh profile      # V2's kernel profile and the depthwise forms alone
# JSON goes to benchmarks/results/ and, where $OUT is set (the device tool), to $OUT too.
# The GPU machine lacks ml_collections: carry its wheel (see the device tool's README).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
part=${1:?"usage: gpu_session.sh throughput|variants|profile"}
start=$(mktemp)
case "$part" in
  throughput)
    python -m benchmarks.throughput --models mobilenet_v2 mobilenet_v3_large mobilenet_v3_small xception ;;
  variants)
    python -m benchmarks.throughput --models mobilenet_v2 --depthwise-impl shifted --torch off
    for level in 0 2; do
      XLA_FLAGS="--xla_gpu_autotune_level=$level" python -m benchmarks.throughput --models mobilenet_v2 --torch off
    done ;;
  profile)
    python -m benchmarks.profile --model mobilenet_v2
    python -m benchmarks.depthwise --batch 256 --scale 7 ;;
  *) echo "error: unknown part '$part' (throughput, variants or profile)" >&2; exit 2 ;;
esac
if [ -n "${OUT:-}" ]; then find benchmarks/results -name "*.json" -newer "$start" -exec cp {} "$OUT"/ \; ; fi
