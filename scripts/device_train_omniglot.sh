#!/usr/bin/env bash
# Meta-train the four Omniglot meta-learners in parallel on one GPU, each for a fixed
# wall-clock budget, and pack the results into $OUT (used with the project's lent GPU machine;
# the same configs train on CPU with `metaserve train configs/omniglot-*.toml`, only slower).
# Needs: METASERVE_OMNIGLOT_DIR holding images_background.zip; MINUTES (default 7).
set -u
MINUTES=${MINUTES:-7}
OUT=${OUT:-runs/device-out}
RUNS=${RUNS:-runs/device}
mkdir -p "$RUNS" "$OUT"
export PYTHONUNBUFFERED=1 METASERVE_CACHE_DIR=${METASERVE_CACHE_DIR:-/tmp/metaserve-cache}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -c "
from app.meta.runtime import cache_dir
from metaserve_train.config import omniglot_dir
from metaserve_train.tasks.omniglot import load_split
print(load_split(omniglot_dir(), 'background', cache_dir()).images.shape)"
for name in "$@"; do
  mkdir -p "$RUNS/$name"
  OMP_NUM_THREADS=4 python3 -m app.cli train "configs/$name.toml" --out "$RUNS/$name" \
    --device "${DEVICE:-cuda}" --max-minutes "$MINUTES" --no-progress > "$RUNS/$name/train.log" 2>&1 &
done
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
wait
for name in "$@"; do echo "== $name"; tail -c 600 "$RUNS/$name/train.log"; tail -n 1 "$RUNS/$name/training_log.jsonl"; done
tar czf "$OUT/omniglot-runs.tgz" -C "$RUNS" .
