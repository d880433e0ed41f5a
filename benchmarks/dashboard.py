"""The dashboard and `report --store` over the daily aggregates, at a district's
and a State's size, measured side by side in one run.

    python benchmarks/dashboard.py [--villages 1000] [--days 365]
                                   [--state-villages 50000] [--quick] [--json]

A synthetic district (benchmarks/report.py's generator: one meter a village, a
reading every 15 minutes for DAYS local days, a pump start and stop a day, one
reading in 3,000 lost) is written into a DuckDB store the way `jalkal serve`
commits a batch (Store.insert_rows: the frames and the marks of the device-days
they touched, in one transaction). Then, in this order:

  aggregates      reports/aggregates.py computes every device's daily rows from
                  its frames (the first refresh), then again after one new
                  reading of 10 devices (what a refresh costs while serving)
  report          `jalkal report --store --period year --by district` (the
                  command, from the aggregates), against a plain DuckDB
                  SUM(supply_pulses) over the same frames (the limit), and
                  the same report from the frames (what it read before)
  pages           a running dashboard (server.serve, AggregateReader, logged
                  in over HTTP): the district page, a block list and village
                  pages, p50 and p95 of the answer times
  live            `serve --dashboard`'s arrangement on the district: one
                  new reading committed, the time until the village's
                  litres today change on its API page
  State summary   a store holding only synthetic aggregates (the last 40
                  days) of STATE_VILLAGES villages: the View's build and the
                  State summary page

Goals (issue 20): the district and village pages p95 <= 300 ms, the State
summary <= 1 s, the district-year report <= 2x the plain SUM."""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report as synth  # noqa: E402  (benchmarks/report.py's district)

from jalkal.dashboard import server  # noqa: E402
from jalkal.dashboard.model import village_id  # noqa: E402
from jalkal.dashboard.source import AggregateReader, Live  # noqa: E402
from jalkal.dashboard.users import add_user, open_users  # noqa: E402
from jalkal.ingest.store import SCHEMA, Store  # noqa: E402
from jalkal.registry import parse_registry  # noqa: E402
from jalkal.reports import aggregates  # noqa: E402
from jalkal.reports.command import run as report_run  # noqa: E402
from jalkal.reports.periods import DAY_SCHEMA  # noqa: E402
from jalkal.reports.plausible import DEFAULT_MAX_FLOW_M3H  # noqa: E402

GOAL_PAGE_MS = 300.0
GOAL_STATE_S = 1.0
GOAL_RATIO = 2.0
GOAL_LIVE_S = 5.0  # a frame on the open page (issue 20, the browser test's bound)
PASSWORD = "benchmark password"


def say(stage: str, what: object) -> None:
    """A stage's figures on stderr as it ends (a long run shows its progress)."""
    print(f"{time.strftime('%H:%M:%S')} {stage}: {json.dumps(what)}", file=sys.stderr)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q)) if xs else 0.0


def fill(path: Path, n: int, days: int) -> tuple[Path, dict]:
    """The district's frames in a new store; its registry file."""
    reg_csv = path.with_suffix(".csv")
    reg_csv.write_text(synth.registry_csv(n))
    reg = parse_registry(reg_csv.read_text())
    rng = np.random.default_rng(20)
    t0 = time.perf_counter()
    frames = 0
    with Store(path) as st:
        part: list[pa.Table] = []
        for i in range(n):
            dev = 0x20000000 + i
            pop = reg.rows(f"{dev:08x}")[0].population
            tb = synth._device(i, days, pop, rng)
            part.append(tb.add_column(
                0, "device", pa.array(np.full(tb.num_rows, dev, np.uint32))
            ))  # fmt: skip
            frames += tb.num_rows
            if len(part) == 25 or i == n - 1:  # a batch of 25 devices' frames
                with st.lock:
                    st.insert_rows(pa.concat_tables(part))
                part = []
    return reg_csv, {"frames": frames, "fill_s": round(time.perf_counter() - t0, 1)}


def one_more_reading(st: Store, devices: list[int]) -> None:
    """Each device's next reading (15 minutes after its last), as a batch."""
    for dev in devices:
        cols = ", ".join(f'"{n}"' for n in SCHEMA.names)
        last = st.query(
            f"SELECT {cols} FROM frames WHERE device = ? AND kind = 2 "
            "ORDER BY seq DESC LIMIT 1",
            [dev],
        ).to_pylist()[0]
        top = st.query("SELECT max(seq) AS s FROM frames WHERE device = ?", [dev])
        last["seq"] = top["s"][0].as_py() + 1
        last["t"] += 900
        last["ts"] += timedelta(seconds=900)
        last["received"] = last["ts"]
        last["supply_pulses"] = (last["supply_pulses"] or 0) + 40
        rows = pa.Table.from_pylist([last], schema=SCHEMA)
        with st.lock:
            st.insert_rows(rows)


def aggregate(path: Path, reg_csv: Path) -> dict:
    reg = parse_registry(reg_csv.read_text())
    with Store(path) as st:
        t0 = time.perf_counter()
        _, ups = aggregates.report(st, reg, detail=False)
        first = time.perf_counter() - t0
        rows = st.query(f"SELECT count(*) AS n FROM {aggregates.DAYS}")["n"][0].as_py()
        ten = [0x20000000 + i for i in range(min(10, len(ups)))]
        one_more_reading(st, ten)
        t0 = time.perf_counter()
        _, _, n = aggregates.refresh(st, reg)
        again = time.perf_counter() - t0
    return {
        "devices": len(ups),
        "day_rows": rows,
        "first_s": round(first, 2),
        "per_device_ms": round(first / max(len(ups), 1) * 1000, 1),
        "update_devices": n,
        "update_s": round(again, 3),
    }


def timed(fn, reps: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def report_vs_sum(path: Path, reg_csv: Path, reps: int, frames_too: bool) -> dict:
    import duckdb

    def plain() -> None:
        con = duckdb.connect(str(path), read_only=True)
        con.execute("SELECT sum(supply_pulses) FROM frames").fetchall()
        con.close()

    def plain_days() -> None:
        con = duckdb.connect(str(path), read_only=True)
        con.execute(f"SELECT sum(litres) FROM {aggregates.DAYS}").fetchall()
        con.close()

    def rep() -> None:
        out, err = io.StringIO(), io.StringIO()
        report_run([], str(reg_csv), fmt="json", out=out, err=err, store=str(path),
                   period="year", by="district")  # fmt: skip
        assert '"periods"' in out.getvalue(), err.getvalue()

    def rep_frames() -> None:  # --html: the report's frames path (build over frames)
        from jalkal.reports.periods import build, periods
        from jalkal.reports.sources import load_store

        reg = parse_registry(reg_csv.read_text())
        periods(build(load_store(str(path)), reg).days, "year", "district",
                registry=reg)  # fmt: skip

    plain()  # warm the file cache alike for both
    s = timed(plain, reps)
    r = timed(rep, reps)
    d = timed(plain_days, reps)
    res = {
        "plain_sum_s": round(min(s), 3),
        "plain_sum_days_s": round(min(d), 3),
        "report_s": round(min(r), 3),
        "ratio": round(min(r) / min(s), 1),
    }
    if frames_too:
        f = timed(rep_frames, 1)
        res["report_from_frames_s"] = round(f[0], 2)
    return res


class Client:
    def __init__(self, url: str):
        host, port = url.split("//")[1].rstrip("/").split(":")
        self.con = http.client.HTTPConnection(host, int(port), timeout=120)
        self.cookie = ""

    def req(
        self, method: str, path: str, form: dict | None = None
    ) -> tuple[int, bytes]:
        h = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        self.con.request(method, path, body=body, headers=h)
        r = self.con.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                self.cookie = v.split(";")[0]
        return r.status, data

    def login(self) -> None:
        _, page = self.req("GET", "/login")
        m = re.search(rb'name="csrf" value="([^"]+)"', page)
        assert m, page[:200]
        st, _ = self.req("POST", "/login", {"csrf": m.group(1).decode(),
                                            "user": "bench", "password": PASSWORD,
                                            "next": "/"})  # fmt: skip
        assert st == 303, st


def pages(
    path: Path, reg_csv: Path, users: Path, paths: dict[str, list[str]], as_of: str,
    reps: int,
) -> dict:  # fmt: skip
    reg = parse_registry(reg_csv.read_text())
    live = Live(AggregateReader(str(path)), reg, as_of, poll_s=3600)
    t0 = time.perf_counter()
    srv = server.serve(live, open_users(users), "127.0.0.1:0")
    start = time.perf_counter() - t0
    out: dict = {"view_build_s": round(live.view.built_s, 2),
                 "start_s": round(start, 2)}  # fmt: skip
    try:
        c = Client(srv.url)
        c.login()
        for name, ps in paths.items():
            ms = []
            for i in range(reps):
                p = ps[i % len(ps)]
                t = time.perf_counter()
                st, body = c.req("GET", p)
                ms.append((time.perf_counter() - t) * 1000)
                assert st == 200 and len(body) > 200, (p, st, body[:200])
            out[name] = {
                "p50_ms": round(pct(ms, 50), 1),
                "p95_ms": round(pct(ms, 95), 1),
                "bytes": len(body),
            }
    finally:
        server.stop(srv)
    return out


def district_pages(path: Path, reg_csv: Path, users: Path, reps: int) -> dict:
    reg = parse_registry(reg_csv.read_text())
    vs = list(reg)
    ids = [village_id(v.key()) for v in vs[:: max(1, len(vs) // 50)]]
    d0 = vs[0].district
    blocks = sorted({v.block for v in vs if v.district == d0})
    return pages(path, reg_csv, users, {
        "district_page": [f"/summary?state=State&district={d0}"],
        "block_page": [
            f"/villages?state=State&district={d0}&block={b}" for b in blocks
        ],
        "village_page": [f"/village/{i}" for i in ids],
        "village_api": [f"/v1/villages/{i}" for i in ids],
    }, "latest", reps)  # fmt: skip


def live_update(path: Path, reg_csv: Path, users: Path) -> dict:
    """`serve --dashboard`'s arrangement (the store held by the process, the
    dashboard reading it): one new reading of one device committed, then the
    time until the village's litres today change on /v1/villages/{id} (the
    dashboard polls the store every second and rebuilds its View)."""
    reg = parse_registry(reg_csv.read_text())
    vid = village_id(next(iter(reg)).key())
    with Store(path) as st:
        live = Live(AggregateReader(str(path), st), reg, "latest")
        srv = server.serve(live, open_users(users), "127.0.0.1:0")
        try:
            c = Client(srv.url)
            c.login()

            def litres() -> object:
                st_, body = c.req("GET", f"/v1/villages/{vid}")
                assert st_ == 200, body[:200]
                return json.loads(body)["village"]["litres_today"]

            before = litres()
            t0 = time.perf_counter()
            one_more_reading(st, [0x20000000])
            while litres() == before:
                if time.perf_counter() - t0 > 300:
                    raise RuntimeError("the new reading never showed")
                time.sleep(0.05)
            seen = time.perf_counter() - t0
        finally:
            server.stop(srv)
    return {"frame_to_page_s": round(seen, 2),
            "view_build_s": round(live.view.built_s, 2)}  # fmt: skip


def state_store(path: Path, n: int, days: int = 40) -> tuple[Path, str]:
    """A store with no frames and the aggregates of n villages (50 districts of
    10 blocks) for the last `days` days: synthetic daily rows with a random
    lpcd, one in 20 days incomplete."""
    lines = ["device,village,population,block,district,state"]
    for i in range(n):
        lines.append(f"{0x30000000 + i:08x},V{i:05d},{800 + i % 1700},"
                     f"B{i % 500 // 50:02d},D{i % 50:02d},State")  # fmt: skip
    reg_csv = path.with_suffix(".csv")
    reg_csv.write_text("\n".join(lines) + "\n")
    reg = parse_registry(reg_csv.read_text())
    rng = np.random.default_rng(5)
    first = date(2026, 3, 1)
    with Store(path) as st:
        db = aggregates.Db(st)
        m = n * days
        pop = np.repeat(np.array([800 + i % 1700 for i in range(n)]), days)
        lpcd = np.round(rng.uniform(20, 80, m), 1)
        complete = rng.random(m) > 0.05
        col = {
            "village": np.repeat([f"V{i:05d}" for i in range(n)], days),
            "device": np.repeat([f"{0x30000000 + i:08x}" for i in range(n)], days),
            "date": np.tile([first + timedelta(k) for k in range(days)], n),
            "litres": lpcd * pop,
            "population": pop,
            "lpcd": np.where(complete, lpcd, np.nan),
            "pump_hours": np.full(m, 6.0),
            "completeness": np.where(complete, 1.0, 0.9),
            "complete": complete,
            "implausible_litres": np.zeros(m),
            "block": np.repeat([f"B{i % 500 // 50:02d}" for i in range(n)], days),
            "district": np.repeat([f"D{i % 50:02d}" for i in range(n)], days),
            "state": np.full(m, "State"),
            "tz": np.full(m, "Asia/Kolkata"),
            "supply_hours": np.full(m, 6.0),
            "lockouts": np.zeros(m, np.int64),
            "power_off_hours": np.zeros(m),
            "faults_raised": np.zeros(m, np.int64),
        }
        band = np.where(lpcd >= 55, "fully", np.where(lpcd > 40, "partially", "non"))
        col["band"] = np.where(complete, band, None)
        arrays = {}
        for f in DAY_SCHEMA:
            if f.name in col:
                v = col[f.name]
                mask = None
                if f.name in ("lpcd",):
                    mask = ~complete
                    v = np.nan_to_num(v)
                arrays[f.name] = pa.array(v, f.type, mask=mask)
            else:
                arrays[f.name] = pa.nulls(m, f.type)
        days_tb = pa.table(arrays, schema=DAY_SCHEMA)
        info = [json.dumps({"key": aggregates.device_key(reg, f"{0x30000000 + i:08x}"),
                            "store": {"frames": 0, "last_received": None,
                                      "via": None, "csq": None}})
                for i in range(n)]  # fmt: skip
        infos = pa.table({
            "device": [f"{0x30000000 + i:08x}" for i in range(n)], "info": info,
            "timeline": ["{}"] * n,
        })  # fmt: skip
        steps = [(s, []) for s in db.create_sql(True)] + [
            (f"INSERT INTO {aggregates.META} VALUES ('rules', ?)",
             [aggregates.rules_key(DEFAULT_MAX_FLOW_M3H)]),
        ]  # fmt: skip
        tables = [(aggregates.DAYS, days_tb), (aggregates.DEVICES, infos)]
        db.write(lambda lost: (steps, tables))
    end = first + timedelta(days)
    return reg_csv, f"{end.isoformat()}T06:30Z"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--villages", type=int, default=1000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--state-villages", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=60, help="page requests per kind")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for the test")
    ap.add_argument(
        "--no-frames-report",
        action="store_true",
        help="leave out the report from the frames (minutes at 1,000 x 365)",
    )
    ap.add_argument("--out", help="keep the stores in this folder")
    ap.add_argument(
        "--state-only",
        action="store_true",
        help="only the State summary (synthetic aggregates)",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.villages, a.days, a.state_villages, a.reps = 12, 20, 2000, 10
    res: dict = {"villages": a.villages, "days": a.days,
                 "state_villages": a.state_villages}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        db = root / "district.duckdb"
        for p in (db, root / "state.duckdb"):
            p.unlink(missing_ok=True)
        users = root / "users.json"
        users.unlink(missing_ok=True)
        add_user(users, "bench", "admin", PASSWORD)
        if not a.state_only:
            reg_csv, res["fill"] = fill(db, a.villages, a.days)
            say("fill", res["fill"])
            res["aggregates"] = aggregate(db, reg_csv)
            say("aggregates", res["aggregates"])
            res["report"] = report_vs_sum(db, reg_csv, 3, not a.no_frames_report)
            say("report", res["report"])
            res["district"] = district_pages(db, reg_csv, users, a.reps)
            say("district", res["district"])
            res["live"] = live_update(db, reg_csv, users)
            say("live", res["live"])
        sdb = root / "state.duckdb"
        t0 = time.perf_counter()
        s_csv, as_of = state_store(sdb, a.state_villages)
        res["state_fill_s"] = round(time.perf_counter() - t0, 1)
        say("state_fill_s", res["state_fill_s"])
        res["state"] = pages(sdb, s_csv, users, {
            "state_summary": ["/"], "state_api": ["/v1/summary"],
            "district_summary": ["/summary?state=State&district=D00"],
        }, as_of, max(5, a.reps // 4))  # fmt: skip
    res["goals"] = goals(res)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        print_table(res)
    return 0


def goals(res: dict) -> dict:
    out = {"state_summary_ok": res["state"]["state_summary"]["p95_ms"]
           <= GOAL_STATE_S * 1000}  # fmt: skip
    if "district" in res:
        d, r = res["district"], res["report"]
        out["district_page_ok"] = d["district_page"]["p95_ms"] <= GOAL_PAGE_MS
        out["village_page_ok"] = d["village_page"]["p95_ms"] <= GOAL_PAGE_MS
        out["report_ratio_ok"] = r["ratio"] <= GOAL_RATIO
        out["live_ok"] = res["live"]["frame_to_page_s"] <= GOAL_LIVE_S
    return out


def print_table(res: dict) -> None:
    if "district" in res:
        print_district(res)
    s = res["state"]
    print(
        f"State of {res['state_villages']:,} villages (synthetic aggregates, "
        f"written in {res['state_fill_s']} s): View {s['view_build_s']} s"
    )
    for k in ("state_summary", "state_api", "district_summary"):
        print(f"  {k}: p50 {s[k]['p50_ms']} ms, p95 {s[k]['p95_ms']} ms")
    print("goals: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                for k, v in res["goals"].items()))  # fmt: skip


def print_district(res: dict) -> None:
    f, ag, r, d = (res[k] for k in ("fill", "aggregates", "report", "district"))
    print(
        f"district: {res['villages']} villages x {res['days']} days, "
        f"{f['frames']:,} frames (filled in {f['fill_s']} s)"
    )
    print(
        f"aggregates: first {ag['first_s']} s ({ag['per_device_ms']} ms a device, "
        f"{ag['day_rows']:,} device-days); after one reading of "
        f"{ag['update_devices']} devices {ag['update_s']} s"
    )
    print(
        f"report --store --period year --by district: {r['report_s']} s; plain "
        f"SUM over the frames {r['plain_sum_s']} s; ratio {r['ratio']}x "
        f"(goal <= {GOAL_RATIO}x); SUM over the day rows {r['plain_sum_days_s']} s"
    )
    if "report_from_frames_s" in r:
        print(f"  the same report from the frames: {r['report_from_frames_s']} s")
    print(f"dashboard View of the district: {d['view_build_s']} s")
    lv = res["live"]
    print(
        f"a committed reading on the village's API after {lv['frame_to_page_s']} s "
        f"(the View rebuilt in {lv['view_build_s']} s; goal <= {GOAL_LIVE_S} s)"
    )
    for k in ("district_page", "block_page", "village_page", "village_api"):
        print(f"  {k}: p50 {d[k]['p50_ms']} ms, p95 {d[k]['p95_ms']} ms")


if __name__ == "__main__":
    sys.exit(main())
