"""The README stays a product README, the docs match the code, and the project speaks only of itself.

(`mkdocs build --strict`, run by `make test`, checks the site's own links and pages.)
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO

# development history has no place in what users read: work sessions, tracker numbers, the
# development machine's folder layout
HISTORY = re.compile("|".join([
    r"\bsessions? [0-9]", r"\bsession-[0-9]", r"\b(?:earlier|previous|last|next|this) session\b",
    r"\bsession-by-session\b", r"\bissue #?[0-9]", r"\bclosing note\b", r"\.\./" + "shared",
]), re.IGNORECASE)
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".jsonl", ".sh", ".cfg", ".ini", ".txt", ""}
# the CI entry point describes the CI machines' layout, which is its job
EXEMPT = {".ci/run", "tests/test_docs.py"}


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_the_readme_is_short():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move details to the docs site"


def test_no_development_history_in_tracked_files():
    found = []
    for name in tracked_files():
        path = REPO / name
        if name in EXEMPT or path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        if re.search(r"session[-_]?[0-9]|issue[-_]?[0-9]|-history\b", name, re.IGNORECASE):
            found.append(f"{name}: file name")
        text = path.read_text(errors="replace")
        found += [f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}" for m in HISTORY.finditer(text)]
    assert not found, "\n".join(found[:40])


def test_the_readme_links_resolve():
    readme = (REPO / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)#\s]+)", readme) if "://" not in t]
    assert targets, "the README links to the docs"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, missing


def test_every_setting_is_documented():
    from app.core.config import Settings

    page = (REPO / "docs" / "reference" / "configuration.md").read_text()
    missing = [f"METASERVE_{name.upper()}" for name in Settings.model_fields
               if f"METASERVE_{name.upper()}" not in page]
    assert not missing, missing
    documented = set(re.findall(r"METASERVE_[A-Z0-9_]+", page))
    read_elsewhere = {"METASERVE_CACHE_DIR", "METASERVE_DATASETS_DIR", "METASERVE_ENCODER_THREADS",
                      "METASERVE_IMAGES_DIR", "METASERVE_OMNIGLOT_DIR", "METASERVE_TEXT_DIR"}
    stale = sorted(v for v in documented - read_elsewhere
                   if v[len("METASERVE_"):].lower() not in Settings.model_fields)
    assert not stale, f"documented but not read by anything: {stale}"
    code = "\n".join(p.read_text() for package in ("app", "metaserve_train")
                     for p in (REPO / package).rglob("*.py"))
    assert all(v in code for v in read_elsewhere)
