"""Photo meta-learners over HTTP: adaptation of 5 classes x 5 photos and prediction of 1 and 16
photos (photo-protonet, p50/p99), every photo a new 640x480 JPEG (nothing served from the
embedding cache), a photo-finetune job of 5 x 5 photos from POST to ready, the phases of one
photo inside the process (decode + resize, backbone), and the server's resident memory with
everything loaded.

    python -m benchmarks.photo_latency [--requests 20] [--jobs 3] [--photos DIR]

Photos are DTD-10 textures (``METASERVE_IMAGES_DIR``/dtd10, resized to 640x480 and re-encoded
as JPEG quality 90 with a different crop for every request); writes
``benchmarks/results/photo_latency.json``. Set ``METASERVE_DEVICE=cuda`` for a GPU row.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import random
import time
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.latency import percentiles
from benchmarks.server import BenchServer
from benchmarks.text_latency import rss_mb
from metaserve_train.config import images_dir

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "photo-protonet"


class Photos:
    """Endless distinct 640x480 JPEGs per class, cut from the folder's photos."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        self.by_class = {d.name: sorted(d.glob("*.jpg")) for d in sorted(root.iterdir()) if d.is_dir()}
        self.rng = random.Random(seed)

    def jpeg(self, label: str) -> str:
        image = Image.open(self.rng.choice(self.by_class[label])).convert("RGB")
        w, h = image.size
        side = self.rng.uniform(0.7, 1.0)
        cw, ch = int(w * side), int(h * side)
        left, top = self.rng.randint(0, w - cw), self.rng.randint(0, h - ch)
        image = image.crop((left, top, left + cw, top + ch)).resize((640, 480))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        return base64.b64encode(buf.getvalue()).decode()

    def task(self, ways: int = 5, shots: int = 5) -> dict:
        labels = self.rng.sample(sorted(self.by_class), ways)
        return {"inputs": [self.jpeg(label) for label in labels for _ in range(shots)],
                "targets": [label for label in labels for _ in range(shots)]}


def in_process_phases(photos: Photos, n: int = 30) -> dict:
    """Decode + preprocess and the backbone forward of one photo, one at a time (ms, p50)."""
    import torch

    from app.meta.image_backbone import load_image_backbone
    from app.meta.photo_preprocess import preprocess_photo

    net = load_image_backbone("efficientnet-lite0")
    decode, embed = [], []
    for i in range(n + 3):
        data = base64.b64decode(photos.jpeg(sorted(photos.by_class)[i % len(photos.by_class)]))
        t0 = time.perf_counter()
        pixels = torch.from_numpy(preprocess_photo(data, net.image_size, 4096 * 4096))[None]
        t1 = time.perf_counter()
        net.embed(pixels)
        t2 = time.perf_counter()
        if i >= 3:
            decode.append((t1 - t0) * 1000)
            embed.append((t2 - t1) * 1000)
    return {"decode_and_preprocess": percentiles(decode), "backbone_one_photo": percentiles(embed),
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=3, help="photo-finetune jobs timed")
    parser.add_argument("--photos", type=Path, default=None, help="default: METASERVE_IMAGES_DIR/dtd10")
    args = parser.parse_args()
    photos = Photos(args.photos or images_dir() / "dtd10")
    bench = BenchServer(METASERVE_AUTH_ENABLED="false")
    with bench as url, httpx.Client(base_url=url, timeout=300) as client:
        adapt_ms, compute_ms, one_ms, sixteen_ms, ids = [], [], [], [], []
        for i in range(args.requests + 2):
            support = photos.task()
            t0 = time.perf_counter()
            r = client.post("/v1/adapted-models", json={"meta_learner": NAME, "support": support})
            elapsed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            ident = r.json()["id"]
            labels = support["targets"][::5]
            one = {"inputs": [photos.jpeg(labels[i % 5])]}
            sixteen = {"inputs": [photos.jpeg(labels[k % 5]) for k in range(16)]}
            t0 = time.perf_counter()
            client.post(f"/v1/adapted-models/{ident}/predictions", json=one).raise_for_status()
            t1 = time.perf_counter()
            client.post(f"/v1/adapted-models/{ident}/predictions", json=sixteen).raise_for_status()
            t2 = time.perf_counter()
            if i >= 2:  # warm-up
                adapt_ms.append(elapsed)
                compute_ms.append(r.json()["adaptation"]["duration_ms"])
                one_ms.append((t1 - t0) * 1000)
                sixteen_ms.append((t2 - t1) * 1000)
                ids.append(ident)
        job_s, job_compute_ms = [], []
        for _ in range(args.jobs):
            t0 = time.perf_counter()
            r = client.post("/v1/adapted-models",
                            json={"meta_learner": "photo-finetune", "support": photos.task()})
            r.raise_for_status()
            while (body := client.get(f"/v1/adapted-models/{r.json()['id']}").json())["status"] not in (
                    "ready", "failed"):
                time.sleep(0.05)
            assert body["status"] == "ready", body
            job_s.append(time.perf_counter() - t0)
            job_compute_ms.append(body["adaptation"]["duration_ms"])
        rss = rss_mb(bench.proc.pid)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "hardware": f"{platform.machine()}, {os.cpu_count()} cores",
        "device": os.environ.get("METASERVE_DEVICE", "cpu"),
        "workload": "photo-protonet, 5-way 5-shot of 640x480 JPEG q90 (every photo new), then 1 and 16 "
                    "new photos predicted; sequential, one client, SQLite",
        "adapt_5x5": percentiles(adapt_ms),
        "adapt_5x5_compute_after_decoding": percentiles(compute_ms),
        "predict_1": percentiles(one_ms),
        "predict_16": percentiles(sixteen_ms),
        "finetune_job_5x5_post_to_ready_s": [round(v, 2) for v in job_s],
        "finetune_job_5x5_compute_ms": job_compute_ms,
        "server_rss_mb_after": round(rss, 1),
        "in_process": in_process_phases(photos),
    }
    RESULTS.mkdir(exist_ok=True)
    label = "" if result["device"] == "cpu" else "-" + result["device"].replace(":", "")
    (RESULTS / f"photo_latency{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
