"""glibc's allocator thresholds against its defaults (``METASERVE_MALLOC_TRIM_THRESHOLD_BYTES``).

Each measurement runs in a fresh process (the thresholds are process-wide), the two settings
alternating: omniglot-protonet's prediction of 25 queries (the Conv4 forward without autograd)
and omniglot-maml's 5-way 1-shot 10-step adaptation, one PyTorch thread, medians of
``--repeats`` calls after two warm-ups.

    python -m benchmarks.allocator [--rounds 3] [--repeats 30] [--out benchmarks/results/allocator.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def measure(trim_threshold: int, repeats: int) -> dict[str, float]:
    """Runs inside the child process."""
    import torch

    from app.core.config import Settings
    from app.engine.allocator import keep_freed_memory
    from app.engine.registry import load_registry

    keep_freed_memory(trim_threshold)
    torch.set_num_threads(1)
    registry = load_registry(REPO / "models")
    g = torch.Generator().manual_seed(0)
    support, queries = torch.rand(5, 1, 28, 28, generator=g), torch.rand(25, 1, 28, 28, generator=g)
    labels = torch.arange(5)
    out = {"trim_threshold": trim_threshold, "default_threshold": Settings().malloc_trim_threshold_bytes}
    proto = registry.resolve("omniglot-protonet").learner
    state = proto.adapt(support, labels, 5)
    maml = registry.resolve("omniglot-maml").learner
    for name, call, n in (("protonet_predict_25_ms", lambda: proto.predict(state, queries), repeats),
                          ("maml_adapt_ms", lambda: maml.adapt(support, labels, 5), max(repeats // 3, 5))):
        times = []
        for i in range(n + 2):
            t0 = time.perf_counter()
            call()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[name] = round(1000 * statistics.median(times), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=RESULTS / "allocator.json")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.repeats)))
        return
    from app.core.config import Settings

    tuned = Settings().malloc_trim_threshold_bytes
    runs: dict[str, list[dict]] = {"glibc_defaults": [], "tuned": []}
    for _ in range(args.rounds):
        for label, value in (("glibc_defaults", 0), ("tuned", tuned)):
            child = subprocess.run([sys.executable, "-m", "benchmarks.allocator", "--child", str(value),
                                    "--repeats", str(args.repeats)], cwd=REPO, check=True,
                                   capture_output=True, text=True)
            row = json.loads(child.stdout.strip().splitlines()[-1])
            runs[label].append(row)
            print(f"{label:15s} protonet predict 25: {row['protonet_predict_25_ms']:7.2f} ms   "
                  f"maml adapt: {row['maml_adapt_ms']:7.2f} ms", flush=True)
    report = {"runs": runs, "medians": {
        label: {key: round(statistics.median(r[key] for r in rows), 3)
                for key in ("protonet_predict_25_ms", "maml_adapt_ms")} for label, rows in runs.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["medians"], indent=2))


if __name__ == "__main__":
    main()
