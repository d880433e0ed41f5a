"""The dashboard over plain HTTP: nothing answers without a login (but /healthz,
the login page and its assets), a viewer changes nothing, the cookies, the users
file, the OpenAPI document against the paths answered, and the numbers of every
page and API against `jalkal report` on simulated villages."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from test_dashboard_support import (
    PASSWORD,
    Client,
    Dashboard,
    World,
    logged_in,
    make_world,
)

from jalkal.cli import main
from jalkal.dashboard import api

PAGES = [
    "/",
    "/summary?state=Rajasthan",
    "/summary?state=Rajasthan&district=Ajmer",
    "/villages?state=Rajasthan&district=Tonk&block=Malpura",
    "/alerts",
    "/devices",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return make_world(tmp_path_factory.mktemp("dash"), days=12)


@pytest.fixture(scope="module")
def dash(world: World):
    d = Dashboard(world.store, world.villages, world.users, "--as-of", "latest")
    d.start()
    yield d
    d.stop()
    assert d.proc is not None and d.proc.returncode in (0, -15), d.err.read_text()


def village_ids(dash: Dashboard) -> dict[str, str]:
    c = logged_in(dash.url)
    return {v["village"]: v["id"] for v in c.get_json("/v1/villages")["villages"]}


def every_path(dash: Dashboard) -> list[str]:
    vid = next(iter(village_ids(dash).values()))
    apis = [p.replace("{id}", vid) for p in api.ROUTES]
    return [*PAGES, f"/village/{vid}", *apis, api.OPENAPI_PATH, "/events"]


# --- access ----------------------------------------------------------------------


def test_nothing_answers_without_a_login(dash: Dashboard) -> None:
    c = Client(dash.url)
    for path in every_path(dash):
        st, h, body = c.get(path)
        if path.startswith("/v1/") or path == "/events":
            assert st == 401, (path, st)
            assert json.loads(body) == {"error": "log in first"}
        else:
            assert st == 303 and h["location"].startswith("/login?next="), (path, st)
        assert b"Hirapur" not in body and b"35b868ea" not in body
    for path in ("/village/nosuch", "/v1/villages/nosuch", "/nosuch", "/v1/nosuch"):
        assert c.get(path)[0] in (303, 401), path
    # what answers without one: health, the login page and its assets
    assert c.get("/healthz")[0] == 200
    assert c.get("/login")[0] == 200
    assert c.get("/static/dashboard.css")[0] == 200
    assert c.get("/static/live.js")[0] == 200
    assert c.get("/static/../server.py")[0] == 404


def test_session_cookie_and_login(dash: Dashboard) -> None:
    c = Client(dash.url)
    token = c.csrf()
    pre = c.cookie
    st, h, _ = c.request(
        "POST",
        "/login",
        {"csrf": token, "user": "viewer", "password": "wrong password!"},
    )
    assert st == 401
    st, h, _ = c.request("POST", "/login", {"user": "viewer", "password": PASSWORD})
    assert st == 403  # no CSRF token
    token = c.csrf()
    st, h, _ = c.request(
        "POST",
        "/login",
        {
            "csrf": token,
            "user": "viewer",
            "password": PASSWORD,
            "next": "//evil.example/",
        },
    )
    assert st == 303 and h["location"] == "/"  # no open redirect
    cookie = h["set-cookies"][-1]
    parts = [p.strip() for p in cookie.split(";")]
    assert "HttpOnly" in parts and "SameSite=Strict" in parts, cookie
    assert "Secure" not in parts  # plain http here; Secure over https
    assert any(p.startswith("Max-Age=") and int(p[8:]) > 0 for p in parts)
    sid = parts[0].split("=", 1)[1]
    assert len(sid) >= 43 and c.cookie != pre  # 256 bits, a new id at login
    assert c.get("/")[0] == 200
    # the old (pre-login) id is worthless
    old = Client(dash.url)
    old.cookie = pre
    assert old.get("/")[0] == 303


def test_a_viewer_cannot_change_anything(dash: Dashboard, world: World) -> None:
    users_before = world.users.read_bytes()
    c = logged_in(dash.url, "viewer")
    token = c.csrf("/")
    frames = c.get_json("/healthz")["frames"]
    for path in every_path(dash) + ["/login", "/logout", "/v1/villages"]:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            if path == "/logout" and method == "POST":
                continue  # ends the session; below
            body = {"csrf": token, "user": "admin", "password": "x" * 12}
            st, _h, _b = c.request(method, path, body)
            if path == "/login" and method == "POST":
                assert st == 401  # a login attempt, never a change
                continue
            assert st in (403, 405), (method, path, st)
    assert c.get("/")[0] == 200  # still logged in as the viewer
    assert world.users.read_bytes() == users_before
    assert c.get_json("/healthz")["frames"] == frames
    # logout is a POST with the token; without it, nothing happens
    st, _h, _b = c.request("POST", "/logout", {})
    assert st == 403 and c.get("/")[0] == 200
    st, h, _b = c.request("POST", "/logout", {"csrf": token})
    assert st == 303 and "Max-Age=0" in h["set-cookie"]
    c2 = Client(dash.url)
    c2.cookie = f"jalkal_session={token}"  # the CSRF token is no session
    assert c2.get("/")[0] == 303


def test_get_never_logs_out_and_tokens_are_not_in_urls(dash: Dashboard) -> None:
    c = logged_in(dash.url)
    assert c.get("/logout")[0] == 404
    assert c.get("/")[0] == 200
    st, _h, body = c.get("/")
    for href in re.findall(rb'(?:href|action|src)="([^"]*)"', body):
        assert b"csrf" not in href and b"session" not in href, href


def test_only_an_admin_sees_the_devices(dash: Dashboard, world: World) -> None:
    viewer = logged_in(dash.url, "viewer")
    assert viewer.get("/devices")[0] == 403
    assert viewer.get("/v1/devices")[0] == 403
    assert b'href="/devices"' not in viewer.get("/")[2]
    admin = logged_in(dash.url, "admin")
    devs = admin.get_json("/v1/devices")["devices"]
    assert sorted(d["device"] for d in devs) == sorted(world.devices.values())
    st, _h, body = admin.get("/devices")
    assert st == 200 and all(d.encode() in body for d in world.devices.values())


def test_users_file_is_private_and_holds_no_password(world: World, tmp_path) -> None:
    mode = stat.S_IMODE(world.users.stat().st_mode)
    assert mode == 0o600
    text = world.users.read_text()
    assert PASSWORD not in text and PASSWORD.encode().hex() not in text
    doc = json.loads(text)["users"]
    assert doc["viewer"]["scrypt"]["salt"] != doc["admin"]["scrypt"]["salt"]
    assert doc["viewer"]["scrypt"]["hash"] != doc["admin"]["scrypt"]["hash"]
    # the command: a password from a file, a short one refused, 0600
    pw = tmp_path / "pw"
    pw.write_text("another long password\n")
    users = tmp_path / "u.json"
    assert (
        main(
            [
                "dashboard-user",
                "add",
                "asha",
                "--role",
                "viewer",
                "--users",
                str(users),
                "--password-file",
                str(pw),
            ]
        )
        == 0
    )
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert "another long password" not in users.read_text()
    pw.write_text("short\n")
    before = users.read_bytes()
    assert (
        main(
            [
                "dashboard-user",
                "add",
                "ravi",
                "--users",
                str(users),
                "--password-file",
                str(pw),
            ]
        )
        == 1
    )
    assert users.read_bytes() == before
    # the server refuses a users file others may read
    users.chmod(0o644)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jalkal",
            "dashboard",
            "--store",
            str(world.store),
            "--villages",
            str(world.villages),
            "--users",
            str(users),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "open to other users" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


# --- the API and its description --------------------------------------------------


def test_openapi_lists_every_path_and_only_those(dash: Dashboard) -> None:
    c = logged_in(dash.url, "admin")
    doc = c.get_json(api.OPENAPI_PATH)
    assert doc["openapi"].startswith("3.")
    answered = {*api.ROUTES, api.OPENAPI_PATH, "/healthz", "/events"}
    assert set(doc["paths"]) == answered
    vid = next(iter(village_ids(dash).values()))
    for p in doc["paths"]:
        if p == "/events":
            continue  # a stream; tested below
        st, h, _b = c.get(p.replace("{id}", vid))
        assert st == 200 and h["content-type"].startswith("application/json"), p
    for p in ("/v1/village", "/v1/villages/x/y", "/v1/summaries", "/v1/snapshot"):
        assert c.get(p)[0] == 404, p


# --- the numbers are the report's --------------------------------------------------


def report(world: World, *args: str, store: str | None = None) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jalkal",
            "report",
            "--store",
            str(store or world.store),
            "--villages",
            str(world.villages),
            "--format",
            "json",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cells(html: bytes, table_id: str) -> list[list[str]]:
    """The text of each body row's cells of the table with that id."""
    m = re.search(
        rb'<table[^>]*id="' + table_id.encode() + rb'".*?</table>', html, re.S
    )
    assert m, table_id
    body = re.search(rb"<tbody>(.*)</tbody>", m.group(0), re.S)
    assert body
    rows = re.findall(rb"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    out = []
    for r in rows:
        cs = re.findall(rb"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)
        out.append([unescape(re.sub(rb"<[^>]+>", b"", x).decode()).strip() for x in cs])
    return out


def lp(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def village_page_shows(c: Client, vid: str, days: list[dict]) -> None:
    """The village page's table shows these /v1 days' lpcd and band."""
    st, _h, html = c.get(f"/village/{vid}")
    assert st == 200
    shown = {r[0]: r for r in cells(html, "days")}
    for d in days:
        assert shown[d["date"]][2] == lp(d["lpcd"]), d
        assert shown[d["date"]][3] == (d["band"] or "incomplete")


def test_every_number_is_the_reports(dash: Dashboard, world: World) -> None:
    numbers_are_the_reports(dash.url, world, str(world.store))


def test_every_number_is_the_reports_on_postgres(world: World, request) -> None:
    """The same on PostgreSQL, half the frames stored while the dashboard runs:
    it keeps the daily aggregates in the store, `report --store` (daily,
    --period) reads them, --alerts reads the frames."""
    from conftest import new_database
    from test_dashboard_support import wait_for

    from jalkal.decode import bulk
    from jalkal.ingest.store import open_store
    from jalkal.keys import load_keys

    url = new_database(request.getfixturevalue("pg_cluster"))
    with open_store(world.store, read_only=True) as src:
        raw, total = src.raw_stream(), src.count()
    tb = bulk.decode(raw).table
    off, ln = tb["offset"].to_numpy(), tb["length"].to_numpy()
    batches = [
        raw[off[i] : off[j - 1] + ln[j - 1]]
        for i in range(0, off.size, 500)
        for j in [min(i + 500, off.size)]
    ]
    keys = load_keys(world.keys)
    with open_store(url, keys) as dst:
        for b in batches[::2]:
            assert dst.ingest(b, "test").error is None
    d = Dashboard(url, world.villages, world.users, "--as-of", "latest").start()
    try:
        c = logged_in(d.url, "admin")
        with open_store(url, keys) as dst:  # the rest, late, while it runs
            for b in batches[1::2]:
                assert dst.ingest(b, "test").error is None
        assert wait_for(
            lambda: (
                sum(x["frames"] for x in c.get_json("/v1/devices")["devices"]) == total
            ),
            30,
        )
        numbers_are_the_reports(d.url, world, url)
    finally:
        d.stop()


def numbers_are_the_reports(url: str, world: World, store: str) -> None:
    c = logged_in(url, "admin")
    daily = report(world, store=store)["days"]
    pday = report(world, "--period", "day", store=store)["periods"]
    pmonth = report(world, "--period", "month", store=store)["periods"]
    pdist = report(world, "--period", "month", "--by", "district", store=store)[
        "periods"
    ]
    alerts = report(world, "--alerts", store=store)["alerts"]
    villages = c.get_json("/v1/villages")["villages"]
    assert len(villages) == len(world.devices)
    by_day = {(r["village"], r["period"]): r for r in pday}
    for v in villages:
        # the daily rows (one device per village): lpcd, band, litres
        rows = {r["date"]: r for r in daily if r["village"] == v["village"]}
        days = c.get_json(f"/v1/villages/{v['id']}/days")["days"]
        assert days and len(days) == len([d for d in rows if d < v["today"]])
        for d in days:
            r, p = rows[d["date"]], by_day[(v["village"], d["date"])]
            assert (d["lpcd"], d["band"], d["complete"]) == (
                r["lpcd"],
                r["band"],
                r["complete"],
            ), d
            assert d["lpcd"] == p["mean_lpcd"] and d["litres"] == p["litres"]
        y = by_day[(v["village"], v["yesterday"]["date"])]
        assert v["yesterday"]["lpcd"] == y["mean_lpcd"]
        assert v["yesterday"]["band"] == y["quantity"]
        m = next(
            r
            for r in pmonth
            if r["village"] == v["village"] and r["period"] == v["month"]["period"]
        )
        assert v["month"]["mean_lpcd"] == m["mean_lpcd"]
        village_page_shows(c, v["id"], days)
    # the block lists: yesterday's lpcd and band, this month's mean
    for block in ("Kishangarh", "Masuda", "Malpura"):
        district = "Tonk" if block == "Malpura" else "Ajmer"
        st, _h, html = c.get(
            f"/villages?state=Rajasthan&district={district}&block={block}"
        )
        for row in cells(html, "villages"):
            v = next(x for x in villages if x["village"] == row[0])
            y = by_day[(v["village"], v["yesterday"]["date"])]
            assert row[6] == lp(y["mean_lpcd"]) and row[7] == (
                y["quantity"] or "incomplete"
            )
            assert row[8] == lp(v["month"]["mean_lpcd"])
    # the alerts: the same episodes, open ones counted per village
    assert c.get_json("/v1/alerts")["alerts"] == alerts
    st, _h, html = c.get("/alerts")
    shown = cells(html, "alerts")
    assert len(shown) == len(alerts)
    for row, a in zip(shown, alerts, strict=True):
        assert row[0] == a["kind"] and row[8] == a["what"] and row[9] == a["evidence"]
    for v in villages:
        assert v["open_alerts"] == sum(
            1 for a in alerts if a["active"] and a["device"] in v["devices"]
        )
    # periods by district: the report's rows exactly
    got = c.get_json("/v1/periods?period=month&by=district")["periods"]
    assert got == pdist
    # the summaries add up to the villages, by status and by band
    st, _h, html = c.get("/summary?state=Rajasthan")
    s = c.get_json("/v1/summary?state=Rajasthan")
    assert [r["name"] for r in s["rows"]] == ["Ajmer", "Tonk"]
    for r in s["rows"]:
        mine = [v for v in villages if v["district"] == r["name"]]
        assert r["villages"] == len(mine)
        for b, n in r["band"].items():
            assert n == sum(1 for v in mine if v["month"]["band"] == b)
        for k, n in r["status"].items():
            assert n == sum(1 for v in mine if v["status"] == k)
    page = {row[0]: row for row in cells(html, "summary")}
    assert page["Ajmer"][1] == str(s["rows"][0]["villages"])


def test_bad_parameters_are_400_not_500(dash: Dashboard) -> None:
    c = logged_in(dash.url)
    for p in (
        "/v1/periods?period=decade",
        "/v1/periods?by=planet",
        "/v1/villages?status=wet",
        "/v1/summary?district=Ajmer",
        "/villages?band=great",
    ):
        assert c.get(p)[0] == 400, p
    assert c.get("/v1/villages/000000000000")[0] == 404
    assert c.get("/village/000000000000")[0] == 404


def test_help_line_and_no_traceback_on_a_missing_store(tmp_path, world) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jalkal",
            "dashboard",
            "--store",
            str(tmp_path / "none.duckdb"),
            "--villages",
            str(world.villages),
            "--users",
            str(world.users),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert out.returncode == 1 and "no such file" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert Path(world.users).exists()
