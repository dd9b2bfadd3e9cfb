"""Text meta-learners over HTTP: adaptation of 10 intents x 10 shots and prediction of 32
sentences (p50/p99) for each synchronous learner, its versions side by side (requests
alternate between them, the same task for each), each fine-tuning job's wall clock from POST
to ready and its adapted model's prediction of 32 sentences, and the server's resident memory
with every text learner loaded.

    python -m benchmarks.text_latency [--requests 40] [--jobs 5]
        [--learners text-protonet@1.0.0,text-protonet@1.1.0]
        [--job-learners text-protonet-finetune,text-encoder-finetune,text-encoder-finetune-mpnet]
        [--job-torch-threads N] [--out FILE]

Sentences are CLINC150 test utterances (new sentences in every request, so that nothing is
served from a cache); writes ``benchmarks/results/text_latency.json``, or with
``--job-torch-threads N`` (the server's METASERVE_JOB_TORCH_THREADS: a job thread's intra-op
threads, as in a worker process) ``text_latency_job_threads_N.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import httpx

from benchmarks.latency import percentiles
from benchmarks.server import BenchServer
from metaserve_train.config import text_dir
from metaserve_train.tasks.text import load_clinc150

RESULTS = Path(__file__).resolve().parent / "results"


def tasks(n: int, ways: int = 10, shots: int = 10, queries: int = 32, seed: int = 0):
    split = load_clinc150(text_dir(), "test")
    by_intent: dict[str, list[str]] = {}
    for sentence, intent in zip(split.sentences, split.intents, strict=True):
        by_intent.setdefault(intent, []).append(sentence)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        intents = rng.sample(sorted(by_intent), ways)
        inputs, targets, pool = [], [], []
        for intent in intents:
            picked = rng.sample(by_intent[intent], shots + 4)
            inputs += picked[:shots]
            targets += [intent] * shots
            pool += picked[shots:]
        out.append(({"inputs": inputs, "targets": targets}, {"inputs": rng.sample(pool, queries)}))
    return out


def cpu_model() -> str:
    """The CPU's model name and whether it has int8 dot-product instructions (VNNI), which set
    the int8 encoder's speed; "" where /proc/cpuinfo is not there."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    return f"{name}, {'with' if 'vnni' in info else 'without'} VNNI"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--learners", default="text-protonet@1.0.0,text-protonet@1.1.0",
                        help="synchronous text learners (name@version), measured alternately")
    parser.add_argument("--job-learners",
                        default="text-protonet-finetune,text-encoder-finetune,text-encoder-finetune-mpnet",
                        help="text learners served as jobs")
    parser.add_argument("--job-torch-threads", type=int, default=0,
                        help="METASERVE_JOB_TORCH_THREADS of the server (0: its default)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the results file (default: results/text_latency.json, or "
                        "text_latency_job_threads_N.json with --job-torch-threads N)")
    args = parser.parse_args()
    learners = args.learners.split(",")
    work = tasks(args.requests + 3 + args.jobs)
    bench = BenchServer(METASERVE_AUTH_ENABLED="false", METASERVE_JOB_TORCH_THREADS=str(args.job_torch_threads))
    with bench as url, httpx.Client(base_url=url, timeout=120) as client:
        timings = {ref: ([], [], []) for ref in learners}  # adapt, predict, adapt compute (ms)
        for i, (support, query) in enumerate(work[: args.requests + 3]):
            for ref in learners[i % len(learners):] + learners[: i % len(learners)]:  # rotate who goes first
                t0 = time.perf_counter()
                r = client.post("/v1/adapted-models", json={"meta_learner": ref, "support": support})
                elapsed = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                ident = r.json()["id"]
                t0 = time.perf_counter()
                p = client.post(f"/v1/adapted-models/{ident}/predictions", json=query)
                predicted = (time.perf_counter() - t0) * 1000
                p.raise_for_status()
                if i >= 3:  # warm-up
                    for series, value in zip(timings[ref], (elapsed, predicted,
                                                            r.json()["adaptation"]["duration_ms"]), strict=True):
                        series.append(value)
        memory_synchronous = rss_mb(bench.proc.pid)  # the synchronous learners loaded and used
        # POST to ready (s), compute (ms), predict 32 sentences over HTTP (ms)
        jobs = {ref: ([], [], []) for ref in args.job_learners.split(",")}
        for support, query in work[args.requests + 3:]:
            for ref, (job_s, job_compute_ms, job_predict_ms) in jobs.items():
                t0 = time.perf_counter()
                r = client.post("/v1/adapted-models", json={"meta_learner": ref, "support": support})
                assert r.status_code == 202, r.text
                where = f"/v1/adapted-models/{r.json()['id']}"
                while (body := client.get(where).json())["status"] not in ("ready", "failed"):
                    time.sleep(0.02)
                assert body["status"] == "ready", body
                job_s.append(time.perf_counter() - t0)
                job_compute_ms.append(body["adaptation"]["duration_ms"])
                t0 = time.perf_counter()
                client.post(f"{where}/predictions", json=query).raise_for_status()
                job_predict_ms.append((time.perf_counter() - t0) * 1000)
        memory = rss_mb(bench.proc.pid)  # every text learner has now been loaded and used
    report = {
        "meta": {"machine": platform.machine(), "cpu": cpu_model(), "cpus": __import__("os").cpu_count(),
                 "python": platform.python_version(), "requests": args.requests, "jobs": args.jobs,
                 "job_torch_threads": args.job_torch_threads or "default", "date": time.strftime("%Y-%m-%d")},
        **{ref: {"adapt_10x10_http": percentiles(adapt), "adapt_compute": percentiles(compute),
                 "predict_32_http": percentiles(predict)} for ref, (adapt, predict, compute) in timings.items()},
        **{ref: {"job_post_to_ready_s": {"p50": round(sorted(job_s)[len(job_s) // 2], 3),
                                         "max": round(max(job_s), 3), "n": len(job_s)},
                 "compute_ms_p50": sorted(job_compute_ms)[len(job_compute_ms) // 2],
                 "predict_32_http": percentiles(job_predict_ms)}
           for ref, (job_s, job_compute_ms, job_predict_ms) in jobs.items()},
        "server_rss_mb_synchronous_learners_used": round(memory_synchronous, 1),
        "server_rss_mb": round(memory, 1),
    }
    name = f"text_latency_job_threads_{args.job_torch_threads}" if args.job_torch_threads else "text_latency"
    out = args.out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
