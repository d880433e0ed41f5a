"""The dashboard in a real headless browser, Playwright driving the system
Chromium (/usr/bin/chromium): log in, drill State → district → block → village,
a frame posted by a board to `jalkal serve` changes the village's litres today
within 5 s without a reload, keyboard navigation, screenshots that are not
blank and have the page's regions where they belong, and the numbers shown
equal `jalkal report`. Skipped, with the reason, where Playwright is not
installed (`pip install -e .[dev]`; no browser download is needed).

With JALKAL_DOC_SHOTS=DIR the screenshots of each page are also written there
(docs/img/dashboard-*.png)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_dashboard_support import (
    CHROMIUM,
    PASSWORD,
    Dashboard,
    make_world,
    post_frames,
    served_village,
)

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed (it is in the dev extra: pip install -e "
    ".[dev]); the browser tests need it",
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (Debian: apt install chromium)",
        allow_module_level=True,
    )

HEADER_RGB = (0x0F, 0x3D, 0x5E)


def colours(img) -> int:  # type: ignore[no-untyped-def]
    """How many colours a 64×64 thumbnail of the image has (1: blank)."""
    small = img.resize((64, 64)).tobytes()
    return len({small[i : i + 3] for i in range(0, len(small), 3)})


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield b
        b.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("dashb"), days=12)


def log_in(page, url: str, user: str = "viewer") -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/")
    assert "/login" in page.url
    page.fill("#user", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def test_drill_down_and_a_posted_frame_shows_without_reload(tmp_path, browser):
    store = tmp_path / "s.duckdb"
    srv, reg, users, rest = served_village(tmp_path / "w", store)
    dash = Dashboard(store, reg, users, "--as-of", "latest")
    try:
        dash.start()
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log_in(page, dash.url)
        page.click("a.down:text-is('Rajasthan')")
        page.wait_for_url("**/summary?state=Rajasthan")
        page.click("a.down:text-is('Tonk')")
        page.wait_for_url("**district=Tonk")
        page.click("a.down:text-is('Malpura')")
        page.wait_for_url("**/villages?**block=Malpura")
        page.click("#villages a:text-is('Rampur')")
        page.wait_for_url("**/village/*")
        cell = page.locator("#facts [data-field=litres_today]")
        assert cell.inner_text() == "1,960"
        page.evaluate("window.__not_reloaded = true")
        t0 = time.monotonic()
        assert post_frames(srv.http or "", b"".join(rest[:4])) == 200
        sync_api.expect(cell).to_have_text("2,240", timeout=5000)
        assert time.monotonic() - t0 <= 5.0
        assert page.evaluate("window.__not_reloaded") is True
    finally:
        dash.stop()
        srv.stop()


def test_keyboard_alone(world, browser):
    dash = Dashboard(world.store, world.villages, world.users, "--as-of", "latest")
    try:
        dash.start()
        page = browser.new_page()
        page.goto(dash.url + "/")
        # the name field takes the focus by itself (autofocus, which Chromium
        # applies at a rendering update after the load, so wait for it)
        sync_api.expect(page.locator("#user")).to_be_focused()
        page.keyboard.type("viewer")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_url(dash.url + "/")
        for _ in range(40):  # Tab to the first State's link
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == "Rajasthan":
                break
        else:
            pytest.fail("Tab never reached the State's link")
        page.keyboard.press("Enter")
        page.wait_for_url("**/summary?state=Rajasthan")
    finally:
        dash.stop()


PAGES = {
    "summary": "/",
    "district": "/summary?state=Rajasthan&district=Tonk",
    "block": "/villages?state=Rajasthan&district=Tonk&block=Malpura",
    "alerts": "/alerts",
    "devices": "/devices",
}


def test_screenshots_have_the_layout_and_the_reports_numbers(world, browser):
    from PIL import Image

    out = os.environ.get("JALKAL_DOC_SHOTS")
    dash = Dashboard(world.store, world.villages, world.users, "--as-of", "latest")
    report = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "jalkal",
                "report",
                "--store",
                str(world.store),
                "--villages",
                str(world.villages),
                "--period",
                "day",
                "--format",
                "json",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    )["periods"]
    try:
        dash.start()
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        log_in(page, dash.url, "admin")
        vid = page.evaluate(
            "fetch('/v1/villages').then(r => r.json()).then(d => d.villages[0].id)"
        )
        for name, path in {**PAGES, "village": f"/village/{vid}"}.items():
            page.goto(dash.url + path)
            png = page.screenshot(full_page=True)
            img = Image.open(io.BytesIO(png)).convert("RGB")
            assert colours(img) > 8, name  # not blank
            header = page.locator("header.top").bounding_box()
            main = page.locator("#main table, #main svg").first.bounding_box()
            assert header and main and header["y"] < 5 and header["height"] > 20
            assert main["y"] > header["y"] + header["height"], name
            assert img.getpixel((int(header["width"]) - 5, 5))[:3] == HEADER_RGB
            assert main["width"] > 0.5 * img.width, name  # the main region is wide
            if out:
                img.save(Path(out) / f"dashboard-{name}.png")
        # the block list shows yesterday's lpcd as the report has it
        page.goto(dash.url + PAGES["block"])
        for row in page.locator("#villages tbody tr").all():
            village = row.locator("th").inner_text()
            shown = row.locator("[data-field='yesterday.lpcd']").inner_text()
            day = max(r["period"] for r in report if r["village"] == village)
            r = next(
                x for x in report if x["village"] == village and x["period"] == day
            )
            want = "–" if r["mean_lpcd"] is None else f"{r['mean_lpcd']:.1f}"
            assert shown == want, village
    finally:
        dash.stop()
