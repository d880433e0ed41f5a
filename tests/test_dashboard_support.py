"""Shared by the dashboard tests: a simulated district (several `jalkal sim`
villages in one store and one registry), accounts, and a running `jalkal
dashboard` process, all under a test's temporary folder, on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from uplink_util import Child, free_port, wait_port

# (scenario, seed, village, block, district): two districts, three blocks
PLACES = [
    ("normal", 1, "Hirapur", "Kishangarh", "Ajmer"),
    ("dry-borewell", 2, "Sarana", "Kishangarh", "Ajmer"),
    ("power-cuts", 3, "Bandarsindri", "Masuda", "Ajmer"),
    ("normal", 4, "Lamba", "Malpura", "Tonk"),
    ("sim-outage", 5, "Soda", "Malpura", "Tonk"),
    ("overflow-fault", 6, "Diggi", "Malpura", "Tonk"),
]
STATE = "Rajasthan"
PASSWORD = "correct horse battery"  # the test accounts' password


@dataclass
class World:
    dir: Path
    store: Path
    villages: Path
    keys: Path
    users: Path
    devices: dict[str, str]  # village -> device


def run_sim(out: Path, scenario: str, seed: int, days: int) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "jalkal",
            "sim",
            "--scenario",
            scenario,
            "--seed",
            str(seed),
            "--days",
            str(days),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )


def make_world(d: Path, days: int = 12, places: list | None = None) -> World:
    """Simulated villages in one DuckDB store, one registry and one keys file."""
    from jalkal.ingest.replay import batches, read_frames
    from jalkal.ingest.store import Store
    from jalkal.keys import load_keys

    places = places or PLACES
    d.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda p: run_sim(d / f"sim{p[1]}", p[0], p[1], days), places))
    rows, keys, devices = [], {}, {}
    for _sc, seed, village, block, district in places:
        sim = d / f"sim{seed}"
        dev, _v, pop, tz = (sim / "villages.csv").read_text().splitlines()[1].split(",")
        rows.append(f"{dev},{village},{pop},{block},{district},{STATE},{tz}")
        keys.update(json.loads((sim / "keys.json").read_text())["devices"])
        devices[village] = dev
    reg = d / "villages.csv"
    reg.write_text(
        "device,village,population,block,district,state,tz\n" + "\n".join(rows) + "\n"
    )
    kf = d / "keys.json"
    kf.write_text(json.dumps({"devices": keys}))
    kf.chmod(0o600)
    store = d / "store.duckdb"
    with Store(store, load_keys(kf)) as s:
        for _sc, seed, *_ in places:
            files, _ = read_frames((str(d / f"sim{seed}" / "sd"),))
            for b in batches(files, 500, False):
                s.ingest(b.data)
    users = d / "users.json"
    add_users(users)
    return World(d, store, reg, kf, users, devices)


def add_users(users: Path) -> None:
    from jalkal.dashboard.users import add_user

    add_user(users, "viewer", "viewer", PASSWORD)
    add_user(users, "admin", "admin", PASSWORD)


class Dashboard(Child):
    """`jalkal dashboard` in its own process; its URL read from its first line."""

    def __init__(self, store: str | Path, villages: Path, users: Path, *args: str):
        self.cmd = [
            sys.executable,
            "-m",
            "jalkal",
            "dashboard",
            "--store",
            str(store),
            "--villages",
            str(villages),
            "--users",
            str(users),
            *args,
        ]
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.err = Path(users).parent / "dashboard.err"

    def start(self) -> Dashboard:
        self.proc = subprocess.Popen(
            [*self.cmd, "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.PIPE,
            stderr=open(self.err, "a"),  # noqa: SIM115
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        wait_port(self.port, 60)
        return self


class Client:
    """A plain HTTP client with a cookie jar of one cookie (the session)."""

    def __init__(self, base: str):
        u = urlsplit(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.cookie: str | None = None

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        headers: dict | None = None,
    ) -> tuple[int, dict, bytes]:
        con = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = dict(headers or {})
        data = None
        if body is not None:
            data = urlencode(body).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookie:
            h["Cookie"] = self.cookie
        con.request(method, path, body=data, headers=h)
        r = con.getresponse()
        out = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                hdrs.setdefault("set-cookies", []).append(v)  # type: ignore[attr-defined]
                name_value = v.split(";")[0]
                self.cookie = name_value if name_value.split("=", 1)[1] else None
        con.close()
        return r.status, hdrs, out

    def get(self, path: str) -> tuple[int, dict, bytes]:
        return self.request("GET", path)

    def get_json(self, path: str) -> dict:
        st, _h, body = self.get(path)
        assert st == 200, (path, st, body[:300])
        return json.loads(body)

    def csrf(self, page: str = "/login") -> str:
        st, _h, body = self.get(page)
        m = re.search(rb'name="csrf" value="([^"]+)"', body)
        assert m, (page, st, body[:300])
        return m.group(1).decode()

    def login(self, user: str, password: str = PASSWORD) -> int:
        token = self.csrf()
        st, _h, _b = self.request(
            "POST",
            "/login",
            {"csrf": token, "user": user, "password": password, "next": "/"},
        )
        return st


def logged_in(base: str, user: str = "viewer") -> Client:
    c = Client(base)
    assert c.login(user) == 303
    return c


def wait_for(pred, timeout: float = 10.0, step: float = 0.1):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(step)
    return pred()


def post_frames(base: str, body: bytes) -> int:
    """POST frames to a `jalkal serve` (its /v1/frames): the status."""
    u = urlsplit(base)
    con = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30)
    try:
        con.request(
            "POST",
            "/v1/frames",
            body=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        r = con.getresponse()
        r.read()
        return r.status
    finally:
        con.close()


def served_village(d: Path, store: str | Path):  # type: ignore[no-untyped-def]
    """A `jalkal serve` on `store` with one registered board (uplink_util's DEV),
    its first 30 frames posted; (server, registry, users, the rest of its frames)."""
    from uplink_util import DEV, Server, frames, keys_file

    d.mkdir(parents=True, exist_ok=True)
    keys = keys_file(d / "keys.json")
    reg = d / "villages.csv"
    reg.write_text(
        "device,village,population,block,district,state\n"
        f"{DEV:08x},Rampur,500,Malpura,Tonk,{STATE}\n"
    )
    users = d / "users.json"
    add_users(users)
    srv = Server(d, store, keys).start()  # type: ignore[arg-type]
    fs = frames(60)
    assert srv.http is not None
    assert post_frames(srv.http, b"".join(fs[:30])) == 200
    return srv, reg, users, fs[30:]


CHROMIUM = "/usr/bin/chromium"


class Chromium:
    """The system Chromium, headless, driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: JSON messages ended by NUL on fds 3 and 4), so a
    real browser runs with nothing installed. One page; enough for these tests."""

    def __init__(self, width: int = 1280, height: int = 900):
        import tempfile

        self.profile = tempfile.mkdtemp(prefix="jk-chromium-")
        to_r, to_w = os.pipe()  # we write commands, the browser reads fd 3
        from_r, from_w = os.pipe()  # the browser writes fd 4

        def fds() -> None:  # in the child: the pipe ends at fds 3 and 4
            a, b = os.dup(to_r), os.dup(from_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}",
                "--no-first-run",
                "--disable-extensions",
                "--mute-audio",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            preexec_fn=fds,
            pass_fds=(3, 4, to_r, from_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_r)
        os.close(from_w)
        self.w, self.r = os.fdopen(to_w, "wb", buffering=0), from_r
        self.buf = b""
        self.n = 0
        self.events: list[dict] = []
        tid = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.sid = self.call("Target.attachToTarget", targetId=tid, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime"):
            self.call(f"{domain}.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read(self, timeout: float) -> dict:
        import select

        while b"\0" not in self.buf:
            ready, _, _ = select.select([self.r], [], [], timeout)
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium exited")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(
        self, method: str, session: bool = False, timeout: float = 30.0, **params
    ) -> dict:  # type: ignore[no-untyped-def]
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.sid
        self.w.write(json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read(timeout)
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def js(self, expr: str):  # type: ignore[no-untyped-def]
        r = self.call(
            "Runtime.evaluate",
            session=True,
            expression=expr,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                v = self.js(expr)
            except RuntimeError:
                v = None
            if v:
                return v
            time.sleep(0.05)
        raise TimeoutError(f"never true: {expr}")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait(
            "document.readyState === 'complete' && location.href !== 'about:blank'"
        )

    def key(self, key: str, text: str | None = None) -> None:
        """Press a key (Tab, Enter, or a character) as a keyboard would."""
        codes = {"Tab": 9, "Enter": 13}
        base = {"key": key, "windowsVirtualKeyCode": codes.get(key, 0), "code": key}
        down = dict(base, type="keyDown")
        if text is not None or key == "Enter":
            down["text"] = text if text is not None else "\r"
        self.call("Input.dispatchKeyEvent", session=True, **down)
        self.call("Input.dispatchKeyEvent", session=True, **dict(base, type="keyUp"))

    def type(self, text: str) -> None:
        self.call("Input.insertText", session=True, text=text)

    def screenshot(self, path: Path, full: bool = True) -> Path:
        import base64

        params: dict = {"format": "png"}
        if full:
            h = int(self.js("document.documentElement.scrollHeight"))
            w = int(self.js("document.documentElement.scrollWidth"))
            params.update(
                captureBeyondViewport=True,
                clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1},
            )
        data = self.call("Page.captureScreenshot", session=True, **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        import shutil

        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.w.close()
        os.close(self.r)
        shutil.rmtree(self.profile, ignore_errors=True)
