#!/usr/bin/env bash
# GPU checks and benchmarks for METASERVE_DEVICE=cuda, in one run on a lent GPU machine whose
# Python has PyTorch but not the service's web/database packages: those travel as wheels in
# .whl/ (made here by scripts/device_wheels.sh). Writes at most 8 files to $OUT (JSON and logs;
# the plots are redrawn from the JSON afterwards):
#   1. the device tests (tests/engine/test_device.py: every learner on the GPU = on the CPU);
#   2. omniglot-maml single-task compute on the GPU against raw autograd on the GPU;
#   3. latency over HTTP, METASERVE_DEVICE=cuda, then =cpu on the same machine (the baseline);
#   4. throughput under 1 and 32 clients, batching on and off, cuda then cpu.
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
python3 -m pytest -q -p no:cacheprovider tests/engine/test_device.py 2>&1 | tee "$OUT/tests.txt" | tail -5 | tee -a "$log"

step "omniglot-maml compute"
python3 -m benchmarks.omniglot_compute --device cuda --repeats 20 \
  --out "$OUT/omniglot_compute-cuda.json" 2>&1 | tail -12 | tee -a "$log"

LEARNERS="sinusoid-maml@1.0.0 sinusoid-hypernet omniglot-protonet omniglot-maml omniglot-anil"
for device in cuda cpu; do
  step "latency $device"
  METASERVE_DEVICE=$device python3 -m benchmarks.latency --requests 60 --only $LEARNERS \
    --out "$OUT" --label "$device" 2>&1 | tee -a "$log"
done
for device in cuda cpu; do
  step "throughput $device"
  python3 -m benchmarks.throughput --device "$device" --seconds "$SECONDS_PER_POINT" --clients 1 32 \
    --only sinusoid-maml omniglot-protonet omniglot-maml --out "$OUT" --label "$device" 2>&1 | tee -a "$log"
done
rm -f "$OUT"/*.png  # redrawn from the JSON where the results are read
step "done"
