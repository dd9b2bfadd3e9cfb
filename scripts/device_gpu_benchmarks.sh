#!/usr/bin/env bash
# GPU checks and benchmarks for METASERVE_DEVICE=cuda, in one run on a lent GPU machine whose
# Python has PyTorch but not the service's web/database packages: those travel as wheels in
# .whl/ (made here by scripts/device_wheels.sh). Writes 8 files to $OUT (JSON and one log; the
# plots are redrawn from the JSON afterwards), each step's as soon as it ends, most wanted first:
#   1. the device tests (tests/engine/test_device.py: every learner on the GPU = on the CPU);
#   2. in-process batched vs looped adaptation with the garbage collector's pauses
#      (benchmarks.vmap_floor): GPU and CPU, collector as is and frozen, CPU threads default and 1;
#   3. throughput under 32 clients, batching on / off / auto: cuda, cpu, and cpu with one
#      PyTorch thread (METASERVE_TORCH_THREADS=1);
#   4. latency over HTTP, METASERVE_DEVICE=cuda, then =cpu on the same machine (the baseline);
#   5. omniglot-maml single-task compute on the GPU against raw autograd on the GPU.
# Usage (repository root): OUT=/some/dir bash scripts/device_gpu_benchmarks.sh [seconds]
set -uo pipefail
SECONDS_PER_POINT="${1:-4}"
OUT="${OUT:?set OUT to a folder for the results}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
log="$OUT/log.txt"
{
  date -u
  nvidia-smi -L
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$log"
step() { echo "=== $* ($(date -u +%T))" | tee -a "$log"; }

step "device tests"
python3 -m pytest -q -p no:cacheprovider tests/engine/test_device.py 2>&1 | tail -5 | tee -a "$log"

step "vmap floor"
for args in "--device cuda --gc default" "--device cuda --gc frozen" "--device cpu --gc default" \
    "--device cpu --gc frozen" "--device cpu --gc frozen --threads 1"; do
  python3 -m benchmarks.vmap_floor $args --rounds 3 --out "$OUT/vmap_floor.jsonl" 2>&1 | grep -v Warning | tee -a "$log"
done

run_throughput() {  # label device [env...]
  local label=$1 device=$2; shift 2
  step "throughput $label"
  env "$@" python3 -m benchmarks.throughput --device "$device" --seconds "$SECONDS_PER_POINT" \
    --clients 32 --batching on off auto --floor-seconds 2 --only sinusoid-maml omniglot-maml \
    --out "$OUT" --label "$label" 2>&1 | grep -v Warning | tee -a "$log"
  rm -f "$OUT"/*.png
}
run_throughput cuda cuda
run_throughput cpu cpu
run_throughput cpu-1thread cpu METASERVE_TORCH_THREADS=1

LEARNERS="sinusoid-maml@1.0.0 sinusoid-hypernet omniglot-protonet omniglot-maml omniglot-anil"
for device in cuda cpu; do
  step "latency $device"
  METASERVE_DEVICE=$device python3 -m benchmarks.latency --requests 60 --only $LEARNERS \
    --out "$OUT" --label "$device" 2>&1 | tee -a "$log"
  rm -f "$OUT"/*.png
done

step "omniglot-maml compute"
python3 -m benchmarks.omniglot_compute --device cuda --repeats 20 \
  --out "$OUT/omniglot_compute-cuda.json" 2>&1 | tail -12 | tee -a "$log"
step "done"
