"""The console's files: served by the service from the package, with a policy that keeps the
page on this origin, and nothing in them that points anywhere else."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.console import CONTENT_SECURITY_POLICY
from app.core.config import Settings
from app.main import create_app

STATIC = Path(str(files("app.console") / "static"))


def console_client(tmp_path, **settings) -> TestClient:
    # the static files need no lifespan (no database, no learners)
    return TestClient(create_app(Settings(data_dir=tmp_path / "var", warm_up=False, **settings)))


def test_console_is_served_with_its_policy(tmp_path):
    client = console_client(tmp_path)
    bare = client.get("/console", follow_redirects=False)
    assert bare.status_code in (307, 308) and bare.headers["location"].endswith("/console/")
    page = client.get("/console/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>Metaserve console</title>" in page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    script = client.get("/console/js/console.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/console/js/absent.js").status_code == 404


def test_policy_allows_this_origin_only():
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert "http" not in CONTENT_SECURITY_POLICY


def test_console_can_be_turned_off(tmp_path):
    client = console_client(tmp_path, console_enabled=False)
    assert client.get("/console/").status_code == 404


def test_every_file_is_shipped_and_local():
    shipped = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())
    expected = {"index.html", "console.css", "js/console.js", "js/api.js", "js/examples.js", "js/plot.js"}
    assert expected <= set(shipped)
    for name in shipped:
        text = (STATIC / name).read_text()
        assert not re.search(r"\b(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{name} names another host"


@pytest.mark.parametrize("name", ["js/console.js", "js/examples.js", "js/api.js", "js/plot.js"])
def test_module_imports_resolve(name):
    """Every ES module import names a shipped file (a typo would break the page silently)."""
    text = (STATIC / name).read_text()
    for target in re.findall(r'from\s+"(\./[^"]+)"', text):
        assert (STATIC / name).parent.joinpath(target).resolve().is_file(), f"{name} imports {target}"
