#!/usr/bin/env bash
# Every CUDA benchmark and the CUDA paths of the tests (the dataset pass's device metrics among
# them), in under 10 minutes on one GPU.
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
run() {  # name, timeout in seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] || { echo "!! $name exited $rc"; status=1; }
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
run cuda-tests 150 env VITAUDIT_CUDA_TESTS=1 "$py" -m pytest tests/cuda -q -p no:cacheprovider
run bench-explain 120 "$py" benchmarks/bench_explain.py --device cuda --repeat 5 --json "$out/explain.json"
run bench-measure 150 "$py" benchmarks/bench_measure.py --images 2000 --device cuda
run bench-dataset 200 "$py" benchmarks/bench_dataset.py --sizes 1000 --gpu
# The Ray executor with one GPU actor (a local Ray started by the run; needs vitaudit[ray]):
# the same 2,000-image ViT-B/16 + ResNet-50 audit as bench-dataset's GPU case, timed end to end.
run ray-gpu 240 "$py" benchmarks/bench_dataset.py --sizes 200 --gpu --gpu-images 2000 \
  --pytest-args="--audit-executor ray --audit-ray-address local --audit-ray-workers 1 --audit-ray-gpus-per-worker 1"
exit $status
