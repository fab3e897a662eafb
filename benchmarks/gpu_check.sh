#!/usr/bin/env bash
# Every CUDA benchmark and the CUDA paths of the tests (the dataset pass's device metrics among
# them), in under 8 minutes on one GPU: each step has its own limit and the whole run a budget of
# 460 s; a step that would pass the budget is cut short (or not started) and said so.
# Run on a machine with a GPU (for example through the `device` tool) from the repository root:
#   bash benchmarks/gpu_check.sh            # writes figures to ${OUT:-gpu-figures}/
# Then record the card and the figures in the README ("GPU figures").
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-figures}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
status=0
deadline=$((SECONDS + 460))
run() {  # name, timeout in seconds, command...
  local name=$1 limit=$2; shift 2
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 20 ]; then echo "!! $name not run: the 8-minute budget is spent"; status=1; return; fi
  [ "$limit" -le "$left" ] || limit=$left
  echo "== $name (at most ${limit} s)"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "!! $name exited $rc"; status=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
run cuda-tests 120 env VITAUDIT_CUDA_TESTS=1 "$py" -m pytest tests/cuda -q -p no:cacheprovider
run bench-explain 70 "$py" benchmarks/bench_explain.py --device cuda --repeat 3 --json "$out/explain.json"
run bench-measure 60 "$py" benchmarks/bench_measure.py --images 1000 --device cuda
run bench-dataset 110 "$py" benchmarks/bench_dataset.py --sizes 1000 --gpu --gpu-images 1000
# The Ray executor with one GPU actor (a local Ray started by the run; needs vitaudit[ray]):
# a 1,000-image ViT-B/16 + ResNet-50 audit like bench-dataset's GPU case, timed end to end.
run ray-gpu 100 "$py" benchmarks/bench_dataset.py --sizes 200 --gpu --gpu-images 1000 \
  --pytest-args="--audit-executor ray --audit-ray-address local --audit-ray-workers 1 --audit-ray-gpus-per-worker 1"
exit $status
