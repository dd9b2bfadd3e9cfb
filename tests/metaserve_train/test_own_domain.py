"""``metaserve meta-train`` end to end on tiny data: the CLI contract, skipped classes and bad
files, the written folder (served as is), determinism and resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from app.cli import main
from app.meta.checkpoint import load_version

REPO = Path(__file__).resolve().parents[2]
PHOTO_BASE = str(REPO / "models" / "photo-protonet")
TEXT_BASE = str(REPO / "models" / "text-protonet")
QUICK = ["--iterations", "60", "--eval-tasks", "30", "--views", "1", "--no-progress"]


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("METASERVE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def run(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["meta-train", *args])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1]) if code == 0 else None
    return code, summary, captured.err


def test_photo_folder_end_to_end(photo_folder, tmp_path, capsys):
    out = tmp_path / "my-parts" / "2.1.0"
    code, summary, err = run(capsys, "--data", str(photo_folder), "--base", PHOTO_BASE, "--out", str(out), *QUICK)
    assert code == 0, err
    assert "skipped class 'rare': 2 examples" in err
    assert "class-0/broken.jpg" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["name"], manifest["version"]) == ("my-parts", "2.1.0")
    data = manifest["training"]["data"]
    assert data["skipped_classes"] == {"rare": 2}
    assert [u[0] for u in data["unreadable"]] == ["class-0/broken.jpg"]
    assert data["examples"] == 8 * 6 + 2  # readable photos; the broken file and the hidden one are not
    parts = data["classes"]
    assert sorted(parts) == ["test", "train", "validation"]
    seen = [c for part in parts.values() for c in part]
    assert sorted(seen) == [f"class-{i}" for i in range(8)]  # disjoint and complete
    assert len(parts["validation"]) == len(parts["test"]) == 2
    base = manifest["training"]["base"]
    assert base["name"] == "photo-protonet" and len(base["weights_sha256"]) == 64
    assert manifest["input"] == json.loads((Path(PHOTO_BASE) / "1.0.0" / "manifest.json").read_text())["input"]
    protocols = manifest["evaluation"]["held_out_classes"]["protocols"]
    assert set(protocols) == {"2-way 1-shot", "2-way 5-shot"}
    for result in protocols.values():
        assert result["base"]["tasks"] == result["own"]["tasks"] == 30
        assert abs(result["difference"]["mean"] - (result["own"]["mean"] - result["base"]["mean"])) < 1e-9
    assert set(summary["held_out_accuracy"]) == set(protocols)
    for name in ("weights.safetensors", "training_log.jsonl", "learning_curve.png", "evaluation.png",
                 "evaluation.json"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()
    learner, parsed, _ = load_version(out)  # installable as written
    assert parsed.model.hparams.temperature > 0
    base_learner, _, _ = load_version(Path(PHOTO_BASE))
    assert set(learner.state_dict()) == set(base_learner.state_dict())  # only the adapter is written


def test_same_data_and_seed_give_the_same_weights(photo_folder, tmp_path, capsys):
    outs = [tmp_path / f"run{i}" / "1.0.0" for i in range(2)]
    for out in outs:
        code, _, err = run(capsys, "--data", str(photo_folder), "--base", PHOTO_BASE, "--out", str(out),
                           "--seed", "3", *QUICK)
        assert code == 0, err
    assert (outs[0] / "weights.safetensors").read_bytes() == (outs[1] / "weights.safetensors").read_bytes()
    other = tmp_path / "run-seed4" / "1.0.0"
    assert run(capsys, "--data", str(photo_folder), "--base", PHOTO_BASE, "--out", str(other),
               "--seed", "4", *QUICK)[0] == 0
    first = json.loads((outs[0] / "manifest.json").read_text())["training"]["data"]["classes"]
    assert json.loads((other / "manifest.json").read_text())["training"]["data"]["classes"] != first


def test_text_csv_end_to_end(text_file, tmp_path, capsys):
    out = tmp_path / "tickets" / "1.0.0"
    code, summary, err = run(capsys, "--data", str(text_file), "--base", TEXT_BASE, "--out", str(out),
                             "--val-classes", "2", "--test-classes", "3", *QUICK)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    data = manifest["training"]["data"]
    assert data["kind"] == "text" and data["examples"] == 48 + 2
    assert data["skipped_classes"] == {"joke": 2}
    assert {u[1] for u in data["unreadable"]} == {"no text", "no label", "more fields than the header"}
    assert len(data["classes"]["test"]) == 3 and "3-way 1-shot" in summary["held_out_accuracy"]
    assert manifest["input"]["encoder"] == "all-MiniLM-L6-v2"
    load_version(out)


def test_jsonl_rows(tmp_path, capsys, text_file):
    import csv

    rows = list(csv.DictReader(text_file.open()))
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"text": r["text"], "label": r["label"]}) for r in rows if r["text"] and r["label"]]
    path.write_text("\n".join(lines + ["not json", "[1, 2]", json.dumps({"text": "x"})]) + "\n")
    out = tmp_path / "rows-own"
    code, _, err = run(capsys, "--data", str(path), "--base", TEXT_BASE, "--out", str(out), *QUICK)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["name"], manifest["version"]) == ("rows-own", "1.0.0")
    assert sorted(u[1].split(":")[0] for u in manifest["training"]["data"]["unreadable"]) == [
        "no label", "not JSON", "not a JSON object"]


@pytest.mark.parametrize("case", ["not-a-base", "wrong-kind", "too-few-classes", "missing", "bad-name",
                                  "out-inside-data"])
def test_refusals_name_the_problem(case, photo_folder, text_file, tmp_path, capsys):
    args = {
        "not-a-base": (photo_folder, str(REPO / "models" / "omniglot-protonet"), "cannot be a base"),
        "wrong-kind": (text_file, PHOTO_BASE, "the base meta-learner takes a folder of class subfolders"),
        "too-few-classes": (photo_folder, PHOTO_BASE, "fewer than 2 to meta-train on"),
        "missing": (tmp_path / "nowhere", PHOTO_BASE, "does not exist"),
        "bad-name": (photo_folder, PHOTO_BASE, "lower-case letters"),
        "out-inside-data": (photo_folder, PHOTO_BASE, "--out must not be inside --data"),
    }[case]
    extra = ["--val-classes", "4", "--test-classes", "3"] if case == "too-few-classes" else []
    out = {"bad-name": tmp_path / "Bad_Name", "out-inside-data": photo_folder / "class-1" / "own"}.get(
        case, tmp_path / "out")
    code, _, err = run(capsys, "--data", str(args[0]), "--base", args[1], "--out", str(out), *QUICK, *extra)
    assert code == 2
    assert args[2] in err
    assert not (out / "manifest.json").exists()


def test_base_by_name_under_the_models_dir(photo_folder, tmp_path, capsys, monkeypatch):
    from app.core.config import get_settings

    monkeypatch.setenv("METASERVE_MODELS_DIR", str(REPO / "models"))
    get_settings.cache_clear()
    try:
        code, _, err = run(capsys, "--data", str(photo_folder), "--base", "photo-protonet@1.0.0",
                           "--out", str(tmp_path / "by-name"), *QUICK)
        assert code == 0, err
        code, _, err = run(capsys, "--data", str(photo_folder), "--base", "no-such-learner",
                           "--out", str(tmp_path / "nothing"), *QUICK)
        assert code == 2 and "no meta-learner 'no-such-learner'" in err
    finally:
        get_settings.cache_clear()


def cli(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app.cli", "meta-train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_resume_after_kill_gives_the_uninterrupted_weights(photo_folder, tmp_path):
    env = {**os.environ, "METASERVE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--data", str(photo_folder), "--base", PHOTO_BASE, "--iterations", "200", "--patience", "1000",
            "--eval-tasks", "20", "--views", "1", "--no-progress"]
    reference = tmp_path / "reference" / "1.0.0"
    done = cli(*args, "--out", str(reference), env=env)
    assert done.wait(timeout=300) == 0, done.stderr.read()

    out = tmp_path / "killed" / "1.0.0"
    proc = cli(*args, "--out", str(out), env=env)
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            try:
                iteration = torch.load(checkpoint, weights_only=True)["iteration"]
            except Exception:  # being replaced right now
                iteration = 0
            if iteration >= 50:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "manifest.json").exists()
    resumed = cli(*args, "--out", str(out), env=env)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert (out / "weights.safetensors").read_bytes() == (reference / "weights.safetensors").read_bytes()
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == list(range(0, 201))  # no iteration lost or repeated


def test_a_checkpoint_of_another_run_is_not_resumed(photo_folder, tmp_path, capsys):
    out = tmp_path / "mixed" / "1.0.0"
    out.mkdir(parents=True)
    torch.save({"run_key": "something else", "iteration": 5}, out / "checkpoint.pt")
    code, _, err = run(capsys, "--data", str(photo_folder), "--base", PHOTO_BASE, "--out", str(out), *QUICK)
    assert code == 2 and "checkpoint of another run" in err


def test_max_minutes_stops_and_writes_the_best_so_far(photo_folder, tmp_path, capsys):
    out = tmp_path / "clock" / "1.0.0"
    code, summary, err = run(capsys, "--data", str(photo_folder), "--base", PHOTO_BASE, "--out", str(out),
                             "--max-minutes", "0.0001", *QUICK)
    assert code == 0, err
    assert summary["stopped_by"] == "max minutes"
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["stopped_by"] == "max minutes" and training["iterations_done"] < 60
    load_version(out)
