"""The console in a real headless Chromium against a live server: a photo task adapted from
fixture files and tested, a problem body shown, a sinusoid adapted as a job by clicking points,
a model deleted; every request stays on the server's origin; screenshots (desktop and 360 px)
land in ``test-results/console/``."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest

from app.db.migrate import upgrade
from tests.conftest import REPO
from tests.live_server import Server

pytestmark = pytest.mark.slow

PHOTOS = REPO / "examples" / "photos"
SHOTS = REPO / "test-results" / "console"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium here (scripts/ensure_chromium.sh installs Debian's chromium as root)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    url = f"sqlite:///{tmp / 'metaserve.db'}"
    upgrade(url)
    s = Server(url, tmp / "var", METASERVE_WARM_UP="false")
    s.start(timeout=120)
    key = s.cli("keys", "create", "--tenant", "console").split("key (shown once): ")[1].strip()
    yield s, key
    s.stop()


@pytest.fixture
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            page = context.new_page()
            page.set_default_timeout(60_000)
            page.requests = []
            page.on("request", lambda request: page.requests.append(request.url))
            yield page
        finally:
            browser.close()


def origins(urls: list[str]) -> set[str]:
    return {f"{u.scheme}://{u.netloc}" for u in map(urlsplit, urls) if u.scheme not in ("data", "blob")}


def enter_key(page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Use key").click()


def test_photo_task_adapted_and_tested_in_the_browser(server, page):
    s, key = server
    page.goto(f"{s.url}/console")
    # without a key the service answers 401: the console shows the problem body
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert alert.locator("strong").inner_text().strip()
    assert "Bearer" in alert.inner_text()  # the problem body's detail says what to send
    enter_key(page, key)
    # the key lives in this tab's session storage only
    assert page.evaluate("[sessionStorage.length, localStorage.length, document.cookie]") == [1, 0, ""]
    page.get_by_role("button", name="photo-protonet").click()
    page.get_by_label("Class 1 label").fill("cat")
    page.get_by_label("Class 1: add images").set_input_files([PHOTOS / f"cat-{i}.jpg" for i in (1, 2, 3)])
    page.get_by_label("Class 2 label").fill("coffee")
    page.get_by_label("Class 2: add images").set_input_files([PHOTOS / f"coffee-{i}.jpg" for i in (1, 2, 3)])
    page.get_by_role("button", name="Adapt", exact=True).click()
    model_id = page.locator('dd[data-field="Adapted-model ID"]')
    model_id.wait_for()
    assert len(model_id.inner_text()) == 32
    assert page.locator('dd[data-field="Adaptation time"]').inner_text().endswith(" ms")
    assert page.locator('dd[data-field="Labels"]').inner_text() == "cat, coffee"
    page.get_by_label("Test: add images").set_input_files([PHOTOS / "query-coffee.jpg", PHOTOS / "query-cat.jpg"])
    page.get_by_role("button", name="Predict").click()
    page.locator(".predicted").nth(1).wait_for()
    assert page.locator(".predicted").all_inner_texts() == ["coffee", "cat"]
    assert page.locator(".prediction").first.locator(".bars li").count() == 2
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "photo-task.png", full_page=True)
    # the tenant's list shows the model; it can be deleted there
    page.get_by_role("button", name="Refresh").click()
    row = page.locator("#models-body tr", has_text=model_id.inner_text())
    row.wait_for()
    row.get_by_role("button", name="Delete").click()
    row.wait_for(state="detached")
    assert origins(page.requests) == {s.url}, "the console called another host"


def test_sinusoid_points_adapted_as_a_job_at_360px(server, page):
    s, key = server
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{s.url}/console/")
    enter_key(page, key)
    page.get_by_role("button", name="sinusoid-maml").click()
    plot = page.get_by_label("support points: click to add a point")
    box = plot.bounding_box()
    for fx, fy in ((0.15, 0.3), (0.3, 0.6), (0.5, 0.5), (0.7, 0.4), (0.85, 0.7)):
        plot.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
    assert page.locator(".points li").count() == 5
    page.get_by_label("Run as a job").check()
    page.get_by_role("button", name="Adapt", exact=True).click()
    page.locator('dd[data-field="Support loss"]').wait_for()
    assert page.locator('dd[data-field="Status"]').inner_text() == "ready"
    assert "Job ready." in page.locator("#job-state").inner_text()
    page.get_by_role("button", name="Predict").click()
    assert "Curve drawn from 101 predictions" in page.locator(".curve-note").inner_text()
    # nothing wider than the phone's screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "sinusoid-360px.png", full_page=True)
    assert origins(page.requests) == {s.url}


def draw(page, pad, strokes) -> None:
    pad.scroll_into_view_if_needed()  # mouse events land at viewport coordinates
    box = pad.bounding_box()
    for (x0, y0), (x1, y1) in strokes:
        page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
        page.mouse.down()
        for i in range(1, 11):
            t = i / 10
            page.mouse.move(box["x"] + box["width"] * (x0 + t * (x1 - x0)),
                            box["y"] + box["height"] * (y0 + t * (y1 - y0)))
        page.mouse.up()


def test_omniglot_characters_drawn_on_the_pad(server, page):
    s, key = server
    page.goto(f"{s.url}/console/")
    enter_key(page, key)
    page.get_by_role("button", name="omniglot-protonet").click()
    vertical = [((0.5, 0.15), (0.5, 0.85))]
    cross = [((0.15, 0.15), (0.85, 0.85)), ((0.85, 0.15), (0.15, 0.85))]
    for n, (label, strokes) in enumerate((("bar", vertical), ("cross", cross)), start=1):
        page.get_by_label(f"Class {n} label").fill(label)
        box = page.locator("fieldset.class").nth(n - 1)
        draw(page, box.locator("canvas.pad"), strokes)
        box.get_by_role("button", name="Add drawing").click()
    page.get_by_role("button", name="Adapt", exact=True).click()
    page.locator('dd[data-field="Labels"]').wait_for()
    test = page.locator("#test-inputs")
    draw(page, test.locator("canvas.pad"), cross)
    test.get_by_role("button", name="Add drawing").click()
    draw(page, test.locator("canvas.pad"), [((0.45, 0.1), (0.55, 0.9))])
    test.get_by_role("button", name="Add drawing").click()
    page.get_by_role("button", name="Predict").click()
    page.locator(".predicted").nth(1).wait_for()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "omniglot-drawn.png", full_page=True)
    assert page.locator(".predicted").all_inner_texts() == ["cross", "bar"]
    assert origins(page.requests) == {s.url}


def test_sentences_fine_tuned_as_a_job(server, page):
    """text-protonet-finetune always adapts as a job: the console polls it to ready."""
    s, key = server
    page.goto(f"{s.url}/console/")
    enter_key(page, key)
    page.get_by_role("button", name="text-protonet-finetune").click()
    intents = {
        "refund": ["I want my money back", "please refund my order", "can I get a refund",
                   "return this and refund me", "refund the charge on my card"],
        "shipping": ["where is my parcel", "when will my package arrive", "track my delivery",
                     "my order has not shipped yet", "how long does shipping take"],
    }
    for n, (label, sentences) in enumerate(intents.items(), start=1):
        page.get_by_label(f"Class {n} label").fill(label)
        page.get_by_label(f"Class {n}: sentences, one per line").fill("\n".join(sentences))
    page.get_by_role("button", name="Adapt", exact=True).click()
    page.locator('dd[data-field="Labels"]').wait_for()
    assert "Job ready." in page.locator("#job-state").inner_text()
    page.get_by_label("Test sentences, one per line").fill("I need a refund for this\nwhere is my package")
    page.get_by_role("button", name="Predict").click()
    page.locator(".predicted").nth(1).wait_for()
    assert page.locator(".predicted").all_inner_texts() == ["refund", "shipping"]
    assert origins(page.requests) == {s.url}
