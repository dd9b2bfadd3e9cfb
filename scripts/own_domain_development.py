"""Measure ``metaserve meta-train`` on development domains: own meta-learner against its base on
held-out classes, three seeds (class splits) each, with the wall-clock time of each run.

Domains (their data locations are the usual settings):
* ``omniglot-photos``: 30 characters drawn (seed 0) from Omniglot's background alphabets
  (``METASERVE_OMNIGLOT_DIR``), 20 drawings each, written as PNG class folders: a domain far
  from ImageNet, of the size a team would bring (30 classes x 20 photos);
* ``dtd10``: the 10 DTD texture classes (``METASERVE_IMAGES_DIR``), 120 photos each, 5 test and
  2 validation classes, so 3 to meta-train on;
* ``hwu64``: 20 sentences (seed 0) of each of HWU64's 64 intents from its train split
  (``METASERVE_TEXT_DIR``) as a CSV; text-protonet was meta-trained on this split, so this
  measures a domain the base already knows.

    python scripts/own_domain_development.py [--seeds 0,1,2] [--work runs/own-domain]

Writes ``reports/own-domain/development.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from metaserve_train.config import images_dir, omniglot_dir, text_dir  # noqa: E402

REPORT = REPO / "reports" / "own-domain"


def omniglot_photos(work: Path, classes: int = 30) -> Path:
    root = work / "omniglot-photos"
    if root.is_dir():
        return root
    with zipfile.ZipFile(omniglot_dir() / "images_background.zip") as archive:
        names = [n for n in archive.namelist() if n.endswith(".png")]
        characters = sorted({os.path.dirname(n) for n in names})
        random.Random(0).shuffle(characters)
        tmp = work / ".omniglot-photos.tmp"
        for character in characters[:classes]:
            label = "-".join(character.split("/")[-2:]).lower().replace("(", "").replace(")", "")
            (tmp / label).mkdir(parents=True, exist_ok=True)
            for name in (n for n in names if os.path.dirname(n) == character):
                (tmp / label / os.path.basename(name)).write_bytes(archive.read(name))
        tmp.rename(root)
    return root


def hwu64_csv(work: Path, per_intent: int = 20) -> Path:
    path = work / "hwu64.csv"
    if path.is_file():
        return path
    folder = text_dir() / "hwu64" / "train"
    by_intent = defaultdict(list)
    for sentence, intent in zip((folder / "seq.in").read_text().splitlines(),
                                (folder / "label").read_text().splitlines(), strict=True):
        by_intent[intent].append(sentence)
    rng = random.Random(0)
    work.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for intent in sorted(by_intent):
            rows = by_intent[intent][:]
            rng.shuffle(rows)
            writer.writerows([s, intent] for s in rows[:per_intent])
    return path


def run(data: Path, base: str, out: Path, seed: int, extra: list[str]) -> dict:
    args = [sys.executable, "-m", "app.cli", "meta-train", "--data", str(data), "--base", base, "--out", str(out),
            "--seed", str(seed), "--no-progress", *extra]
    started = time.monotonic()
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    manifest = json.loads((out / "manifest.json").read_text())
    return {"seed": seed, "wall_seconds": round(time.monotonic() - started, 1),
            "iterations": manifest["training"]["iterations_done"],
            "best_iteration": manifest["training"]["best_iteration"],
            "stopped_by": manifest["training"]["stopped_by"],
            "classes": {k: len(v) for k, v in manifest["training"]["data"]["classes"].items()},
            "protocols": manifest["evaluation"]["held_out_classes"]["protocols"]}


def plot(results: dict, path: Path) -> None:
    from metaserve_train.plots import plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    labels, xs = [], 0
    for domain, runs in results.items():
        for protocol in runs[0]["protocols"]:
            for j, r in enumerate(runs):
                d = r["protocols"][protocol]["difference"]
                ax.errorbar(xs + 0.15 * (j - 1), 100 * d["mean"], yerr=100 * d["ci95"], fmt="o", capsize=3,
                            color="#4C72B0")
            labels.append(f"{domain}\n{protocol}")
            xs += 1
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("own - base accuracy (points)")
    ax.set_title("held-out classes; one point per seed (class split), 95% paired interval", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict, hardware: str, date: str) -> str:
    lines = [f"# Own-domain meta-training on development domains ({date}, {hardware})", "",
             "`python scripts/own_domain_development.py`; base and own are measured on the same "
             "episodes of the held-out test classes (15 queries per class); the difference is paired.", "",
             "| domain | seed | classes train/val/test | protocol | base | own | own - base | iterations "
             "(best) | wall time |", "|---|---|---|---|---|---|---|---|---|"]
    for domain, runs in results.items():
        for r in runs:
            c = r["classes"]
            for protocol, p in r["protocols"].items():
                lines.append(
                    f"| {domain} | {r['seed']} | {c['train']}/{c['validation']}/{c['test']} | {protocol} | "
                    f"{100 * p['base']['mean']:.1f} ± {100 * p['base']['ci95']:.1f} | "
                    f"{100 * p['own']['mean']:.1f} ± {100 * p['own']['ci95']:.1f} | "
                    f"{100 * p['difference']['mean']:+.1f} ± {100 * p['difference']['ci95']:.1f} | "
                    f"{r['iterations']} ({r['best_iteration']}) | {r['wall_seconds']:.0f} s |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "own-domain")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    domains = {
        "omniglot-photos": (omniglot_photos(args.work), "photo-protonet", []),
        "dtd10": (images_dir() / "dtd10", "photo-protonet", ["--val-classes", "2", "--test-classes", "5"]),
        "hwu64": (hwu64_csv(args.work), "text-protonet", []),
    }
    results = {}
    for domain, (data, base, extra) in domains.items():
        results[domain] = [run(data, base, args.work / "out" / domain / f"seed{s}" / "1.0.0", s, extra)
                           for s in seeds]
        print(domain, [(r["seed"], {p: round(v["difference"]["mean"], 4) for p, v in r["protocols"].items()})
                       for r in results[domain]], flush=True)
    import torch

    hardware = f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    date = datetime.now(UTC).date().isoformat()
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "development.json").write_text(json.dumps(
        {"date": date, "hardware": hardware, "results": results}, indent=2) + "\n")
    (REPORT / "development.md").write_text(markdown(results, hardware, date))
    plot(results, REPORT / "development.png")


if __name__ == "__main__":
    main()
