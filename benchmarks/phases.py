"""Where a request's wall time goes inside the server: probes around each phase.

Starts the service (uvicorn + SQLite; authentication off, like ``benchmarks.peer``, unless
``--auth on``: an API key on every request, as deployed) in a child
process whose phases are wrapped with wall-clock probes — the ASGI app as a whole, the thread-pool
hops, body parsing, the service functions, the engine's steps, the algorithm's ``adapt`` and
``predict``, the artifact write, the tenant counter, the row INSERT, commits — then runs
sequential tasks against it and prints each probe's median, with the client's own times.

    python -m benchmarks.phases [--tasks 300] [--learner sinusoid-maml|omniglot-protonet]
        [--auth on|off] [--out benchmarks/results/phases.json]

The probes themselves cost a few microseconds each; compare phases within one run. For where
the CPU goes rather than the wall time, sample the same server with py-spy
(``py-spy record --pid PID --rate 500 --format raw --nonblocking``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
_times: dict[str, list[float]] = defaultdict(list)
_lock = threading.Lock()


def _record(name: str, seconds: float) -> None:
    with _lock:
        _times[name].append(seconds)


def _probe(owner: object, attribute: str, name: str | None = None, key=None) -> None:  # noqa: ANN001
    """Wrap ``owner.attribute`` with a wall-clock probe (``key(args)`` may refine the name)."""
    original = getattr(owner, attribute)
    label = name or f"{getattr(owner, '__name__', owner)}.{attribute}"

    @functools.wraps(original)
    def probed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _record(label if key is None else f"{label}[{key(args)}]", time.perf_counter() - t0)

    setattr(owner, attribute, probed)


def _install_probes() -> None:
    from sqlalchemy.orm import Session

    import app.api.adapted_models.router as router
    import app.api.adapted_models.service as service
    import app.api.lean_call as lean_call
    import app.engine.engine as engine
    import app.engine.preparation as preparation
    import app.engine.states as states
    import app.meta.algorithms.base as base
    import app.meta.codecs as codecs
    import app.storage.artifacts as artifacts

    for name in ("create", "predict", "get", "insert_ready"):
        _probe(service, name, f"service.{name}")
    _probe(service, "claim_model_row", "tenant counter (claim_model_row)")
    _probe(router, "parse_body", "parse_body (validation)")
    _probe(lean_call, "tenant_of", "authentication (tenant_of)")
    for name in ("prepare", "adapt", "predict", "_adapt_many"):
        _probe(engine.ServingEngine, name, f"engine.{name}")
    _probe(states.StoredStates, "keep", "states.keep (encode, durable write, cache)")
    for module in (engine, preparation):  # each calls it by its own global name
        _probe(module, "decode_inputs", "decode_inputs")
    _probe(engine.ServingEngine, "_predict_many", "engine._predict_many", key=lambda a: a[2][0][2].shape[0])
    _probe(base.MetaLearner, "adapt", "learner.adapt")
    _probe(base.MetaLearner, "predict", "learner.predict", key=lambda a: a[2].shape[0])
    _probe(codecs.InputCodec, "decode", "codec.decode", key=lambda a: len(a[1]))
    _probe(artifacts.LocalArtifactStore, "put", "artifact store put (durable write)")
    _probe(Session, "commit", "Session.commit")

    original_hop = lean_call.run_in_threadpool

    async def hop(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        t0 = time.perf_counter()
        marks: dict[str, float] = {}

        def inner():  # noqa: ANN202
            marks["in"] = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                marks["out"] = time.perf_counter()

        result = await original_hop(inner)
        _record("thread hop in", marks["in"] - t0)
        _record("thread hop out", time.perf_counter() - marks["out"])
        _record("thread-pool function", marks["out"] - marks["in"])
        return result

    lean_call.run_in_threadpool = hop


def _timed_app(app):  # noqa: ANN001, ANN202
    async def asgi(scope, receive, send):  # noqa: ANN001, ANN202
        if scope["type"] != "http":
            return await app(scope, receive, send)
        t0 = time.perf_counter()
        path = scope["path"].rstrip("/")
        kind = ("predict" if path.endswith("/predictions")
                else "create" if path == "/v1/adapted-models" else path)

        async def timed_send(message):  # noqa: ANN001, ANN202
            if message["type"] == "http.response.body" and not message.get("more_body"):
                _record(f"ASGI app: {scope['method']} {kind}", time.perf_counter() - t0)
            return await send(message)

        return await app(scope, receive, timed_send)

    return asgi


def serve(out: Path) -> None:
    """The child process: the service with probes, dumping the probes' times every second."""
    import uvicorn

    from app.core.config import get_settings
    from app.main import create_app

    _install_probes()
    settings = get_settings()

    def dump() -> None:
        while True:
            time.sleep(1.0)
            with _lock:
                snapshot = {k: list(v) for k, v in _times.items()}
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(snapshot))
            tmp.replace(out)

    threading.Thread(target=dump, daemon=True).start()
    uvicorn.run(_timed_app(create_app(settings)), host="127.0.0.1", port=settings.port,
                log_level="warning", access_log=False, limit_concurrency=settings.max_connections,
                timeout_keep_alive=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--learner", default="sinusoid-maml", choices=["sinusoid-maml", "omniglot-protonet"])
    ap.add_argument("--auth", choices=("on", "off"), default="off",
                    help="an API key on every request (as deployed) or keys off")
    ap.add_argument("--out", type=Path, default=RESULTS / "phases.json")
    ap.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    import subprocess
    import tempfile

    import httpx
    import torch

    import benchmarks.server as bench_server
    from benchmarks.peer import task_bodies
    from benchmarks.workloads import OmniglotPngs, make_task

    probes = Path(tempfile.mkdtemp()) / "probes.json"
    real_popen = subprocess.Popen

    def popen(command, **kwargs):  # noqa: ANN001, ANN003, ANN202 - the server child only
        if command[-1] == "serve":
            command = [sys.executable, "-m", "benchmarks.phases", "--serve", str(probes)]
        return real_popen(command, **kwargs)

    server = bench_server.BenchServer(METASERVE_AUTH_ENABLED="true" if args.auth == "on" else "false",
                                      METASERVE_RATE_LIMIT_PER_MINUTE="0",
                                      METASERVE_MAX_REQUESTS_PER_CLIENT="0")
    bench_server.subprocess.Popen = popen
    try:
        url = server.__enter__()
    finally:
        bench_server.subprocess.Popen = real_popen
    client_create, client_predict = [], []
    try:
        pngs = OmniglotPngs() if args.learner.startswith("omniglot") else None
        rng, gen = random.Random(0), torch.Generator().manual_seed(2)
        with httpx.Client(base_url=url, timeout=60, headers=server.headers) as client:
            for i in range(args.tasks + 20):
                if pngs is None:  # the peer benchmark's task (sinusoid-maml)
                    body, query = task_bodies(gen)
                else:
                    support, query = make_task(args.learner, rng, pngs)
                    body = {"meta_learner": args.learner, "support": support}
                t0 = time.perf_counter()
                made = client.post("/v1/adapted-models", json=body)
                made.raise_for_status()
                t1 = time.perf_counter()
                client.post(f"/v1/adapted-models/{made.json()['id']}/predictions", json=query).raise_for_status()
                t2 = time.perf_counter()
                if i >= 20:  # warm-up first
                    client_create.append(t1 - t0)
                    client_predict.append(t2 - t1)
        time.sleep(1.5)  # the child's last dump
        probed = json.loads(probes.read_text())
    finally:
        server.__exit__(None, None, None)
    ms = lambda v: round(1000 * statistics.median(v), 3)  # noqa: E731
    report = {"learner": args.learner, "tasks": args.tasks, "auth": args.auth,
              "client_ms_p50": {"create": ms(client_create), "predict": ms(client_predict)},
              "server_ms_p50": {k: {"n": len(v), "p50": ms(v)} for k, v in
                                sorted(probed.items(), key=lambda kv: -statistics.median(kv[1]))}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"client p50: create {report['client_ms_p50']['create']} ms, "
          f"predict {report['client_ms_p50']['predict']} ms")
    for name, row in report["server_ms_p50"].items():
        print(f"  {name:42s} n={row['n']:5d}  p50 {row['p50']:8.3f} ms")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
