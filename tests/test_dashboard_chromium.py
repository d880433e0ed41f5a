"""The browser checks run now in the system Chromium (/usr/bin/chromium) with
nothing installed: driven over the DevTools protocol on a pipe
(test_dashboard_support.Chromium). Log in by keyboard, drill State → district →
block → village by Tab and Enter, a frame posted to `jalkal serve` changes the
village's litres today within 5 s without a reload, screenshots not blank and
laid out (header on top, the content below it, wide). The Playwright version of
these is test_dashboard_browser.py. JALKAL_DOC_SHOTS=DIR writes the screenshots
of each page there (docs/img/dashboard-*.png)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_dashboard_support import (
    CHROMIUM,
    PASSWORD,
    Chromium,
    Dashboard,
    make_world,
    post_frames,
    served_village,
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"
)
HEADER_RGB = (0x0F, 0x3D, 0x5E)


def colours(img) -> int:  # type: ignore[no-untyped-def]
    """How many colours a 64×64 thumbnail of the image has (1: blank)."""
    small = img.resize((64, 64)).tobytes()
    return len({small[i : i + 3] for i in range(0, len(small), 3)})


@pytest.fixture
def chromium():
    b = Chromium()
    yield b
    b.close()


def tab_to(b: Chromium, text: str, limit: int = 60) -> None:
    for _ in range(limit):
        b.key("Tab")
        if b.js("document.activeElement.textContent.trim()") == text:
            return
    pytest.fail(f"Tab never reached {text!r}")


def enter_and_wait(b: Chromium, part: str) -> None:
    b.key("Enter")
    b.wait(f"location.href.includes({part!r}) && document.readyState === 'complete'")


def test_keyboard_drill_down_and_live_litres(tmp_path, chromium) -> None:
    store = tmp_path / "s.duckdb"
    srv, reg, users, rest = served_village(tmp_path / "w", store)
    dash = Dashboard(store, reg, users, "--as-of", "latest")
    b = chromium
    try:
        dash.start()
        b.goto(dash.url + "/")
        assert "/login" in b.js("location.href")
        b.type("viewer")  # the name field has the focus
        b.key("Tab")
        b.type(PASSWORD)
        b.key("Enter")
        b.wait("location.pathname === '/' && document.readyState === 'complete'")
        tab_to(b, "Rajasthan")
        enter_and_wait(b, "state=Rajasthan")
        tab_to(b, "Tonk")
        enter_and_wait(b, "district=Tonk")
        tab_to(b, "Malpura")
        enter_and_wait(b, "block=Malpura")
        tab_to(b, "Rampur")
        enter_and_wait(b, "/village/")
        cell = "document.querySelector('#facts [data-field=litres_today]').textContent"
        assert b.js(cell) == "1,960"
        b.wait("window.EventSource && document.readyState === 'complete'")
        time.sleep(0.3)  # the event stream opens
        b.js("window.__not_reloaded = true")
        t0 = time.monotonic()
        assert post_frames(srv.http or "", b"".join(rest[:4])) == 200
        b.wait(f"{cell} === '2,240'", timeout=5.0)
        assert time.monotonic() - t0 <= 5.0
        assert b.js("window.__not_reloaded") is True
    finally:
        dash.stop()
        srv.stop()


PAGES = {
    "summary": "/",
    "district": "/summary?state=Rajasthan&district=Tonk",
    "block": "/villages?state=Rajasthan&district=Tonk&block=Malpura",
    "alerts": "/alerts",
    "devices": "/devices",
}


def test_screenshots_are_laid_out(tmp_path, chromium) -> None:
    from PIL import Image

    w = make_world(tmp_path / "world", days=12)
    out = os.environ.get("JALKAL_DOC_SHOTS")
    # mid-morning of the last day: today's litres so far are not 0
    dash = Dashboard(w.store, w.villages, w.users, "--as-of", "2026-03-12T06:30Z")
    b = chromium
    try:
        dash.start()
        b.goto(dash.url + "/login")
        b.js(
            "document.getElementById('user').value = 'admin';"
            f"document.getElementById('password').value = {PASSWORD!r};"
            "document.querySelector('.login form').submit(); 1"
        )
        b.wait("location.pathname === '/' && document.readyState === 'complete'")
        vid = b.js(
            "fetch('/v1/villages').then(r => r.json())"
            ".then(d => d.villages.find(v => v.village === 'Sarana').id)"
        )
        for name, path in {**PAGES, "village": f"/village/{vid}"}.items():
            b.goto(dash.url + path)
            png = b.screenshot(tmp_path / f"{name}.png")
            img = Image.open(png).convert("RGB")
            assert colours(img) > 8, name  # not blank
            box = b.js(
                "(() => { const h = document.querySelector('header.top')"
                ".getBoundingClientRect(); const m = document.querySelector("
                "'#main table, #main svg').getBoundingClientRect(); return "
                "[h.top, h.height, h.width, m.top, m.width]; })()"
            )
            h_top, h_h, h_w, m_top, m_w = box
            assert h_top < 5 and h_h > 20 and m_top > h_top + h_h, (name, box)
            assert img.getpixel((min(int(h_w), img.width) - 5, 5)) == HEADER_RGB, name
            assert m_w > 0.5 * img.width, (name, box)
            if out:
                img.save(Path(out) / f"dashboard-{name}.png", optimize=True)
    finally:
        dash.stop()
