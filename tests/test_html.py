"""jalkal report --html DIR: a static page that needs no server, no network and
no JavaScript, checked in headless Chromium (a screenshot and the DOM)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scale_util import sim_store

from jalkal.cli import main
from jalkal.reports import export as ex

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
W, H = 1200, 2600
GREEN = (
    0x00,
    0x9E,
    0x73,
)  # the plots' "fully" colour; the page's CSS never fills with it


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    db, reg = sim_store(root, days=3)
    ex.export(db, root / "pq")
    out = root / "site"
    assert main(["report", "--parquet", str(root / "pq"), "--villages", str(reg),
                 "--html", str(out), "--period", "week"]) == 0  # fmt: skip
    return root, out


def test_page_is_static_and_self_contained(page):
    _root, out = page
    text = (out / "index.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert "@import" not in text and "url(" not in text
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert srcs == ["daily_lpcd.png", "calendar.png", "bands.png"]
    assert all((out / s).is_file() for s in srcs)
    for word in ("By week and village", "Days in each band by block", "Gaon0",
                 "Daily rows"):  # fmt: skip
        assert word in text


def test_same_data_same_bytes(page, tmp_path):
    root, out = page
    again = tmp_path / "again"
    assert main(["report", "--parquet", str(root / "pq"), "--villages",
                 str(root / "villages.csv"), "--html", str(again),
                 "--period", "week"]) == 0  # fmt: skip
    for f in ("index.html", "daily_lpcd.png", "calendar.png", "bands.png"):
        assert (again / f).read_bytes() == (out / f).read_bytes(), f


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True, timeout=120, text=True,
    )  # fmt: skip


def _green(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (W, H)
        px = np.asarray(im.convert("RGB")).astype(int)
    assert px.std() > 10  # not blank
    return int((np.abs(px - np.array(GREEN)).sum(axis=2) < 30).sum())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/install.sh)")
def test_chromium_renders_the_page_with_its_plots(page, tmp_path):
    _root, out = page
    url = (out / "index.html").resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    imgs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", dom.stdout)
    assert imgs == ["daily_lpcd.png", "calendar.png", "bands.png"]
    shot = tmp_path / "shot.png"
    r = _chromium(tmp_path, f"--window-size={W},{H}", f"--screenshot={shot}", url)
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    loaded = _green(shot)
    # the same page with its images missing: no plot colours at all
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.html").write_text((out / "index.html").read_text())
    shot2 = tmp_path / "shot2.png"
    r = _chromium(tmp_path, f"--window-size={W},{H}", f"--screenshot={shot2}",
                  (broken / "index.html").as_uri())  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert _green(shot2) == 0
    assert loaded > 2000, loaded  # the plots drew their green (lines, cells, bars)
