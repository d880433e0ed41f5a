"""The daily aggregates (host/reports/aggregates.py) against `jalkal report` over
every frame: frames arriving in random order, late, twice, with a reboot whose
frames have no clock until a later clock frame places them, on both back-ends."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_report import D0, DAY, IV, NET, NONE, Log

from jalkal.cli import main
from jalkal.decode import bulk
from jalkal.ingest.store import open_store
from jalkal.registry import Registry, Village
from jalkal.reports import aggregates
from jalkal.reports.alerts import alerts
from jalkal.reports.periods import build, periods
from jkproto import codec as c
from jkproto import objects as ob

DEVS = (0x0A1B2C3D, 0x11223344, 0x55667788)  # the last is not in the registry
KEYS = {f"{d:08x}": bytes([i + 1]) * 32 for i, d in enumerate(DEVS)}
REG = Registry([
    Village(f"{DEVS[0]:08x}", "Rampur", 500, "B1", "D1", "S"),
    Village(f"{DEVS[1]:08x}", "Sonpur", 800, "B1", "D1", "S"),
])  # fmt: skip
REG_SHARED = Registry([  # two meters of one village: its days join both
    Village(f"{DEVS[0]:08x}", "Rampur", 500, "B1", "D1", "S"),
    Village(f"{DEVS[1]:08x}", "Rampur", 500, "B1", "D1", "S"),
])  # fmt: skip
EV = {n: i for i, n in enumerate(ob.EVENTS) if n}


def event(log: Log, t: int, name: str, reason: int = 0, tq: int = NET) -> None:
    log.buf += log.enc.frame(c.EVENT, t, tq, EV[name], reason, 0)


@st.composite
def device_log(draw, dev: int) -> bytes:
    """A device's stream over 2-3 days: readings on the grid (some missing), pump
    events and lockouts, a gap, and maybe a reboot whose frames carry only the
    uptime until a clock frame (or none) sets the clock."""
    log = Log(dev, 1, KEYS[f"{dev:08x}"])
    log.boot(D0 - 300)
    total = draw(st.integers(0, 2**32 - 1))
    log.reading(D0, total)
    days = draw(st.integers(2, 3))
    reboot = draw(st.none() | st.integers(10, days * 96 - 20))
    clock = draw(st.booleans())
    n = 0
    for d in range(days):
        for i in range(1, 97):
            n += 1
            t = D0 + d * DAY + i * IV
            total += draw(st.integers(0, 60)) if i % 7 else 0
            if n == reboot:  # power returns at t - 100 s: uptime counts from there
                log.reboot(2)
                log.boot(100, tq=NONE)
            if reboot is not None and reboot <= n < reboot + 6:
                up = t - (D0 + d * DAY + i * IV - 100 - (n - reboot) * IV)
                if n == reboot + 5 and clock:
                    log.buf += log.enc.frame(c.CLOCK, t, NET, 2, up, 0)
                log.reading(up, total, 450, tq=NONE)
                continue
            if draw(st.integers(0, 40)) == 0:
                continue  # a lost reading
            log.reading(t, total, draw(st.sampled_from((0, 450, 900))))
            if i == 30 and draw(st.booleans()):
                event(log, t + 5, "pump_start", 1)
                event(log, t + 400, "pump_stop", 2)
            if i == 50 and draw(st.integers(0, 3)) == 0:
                event(log, t + 7, "lockout", 3)
            if i == 70 and draw(st.integers(0, 4)) == 0:
                log.gap(t + 9, t - 3 * IV, 3 * IV)
    return bytes(log.buf)


def split(data: bytes) -> list[bytes]:
    tb = bulk.decode(data).table
    off = tb.column("offset").to_numpy()
    ln = tb.column("length").to_numpy()
    return [data[o : o + n] for o, n in zip(off.tolist(), ln.tolist(), strict=True)]


@st.composite
def arrivals(draw) -> tuple[list[bytes], list[tuple[list[bytes], bool]]]:
    """Every frame, and the batches they come in: any order, some twice, some
    arriving only after later ones were stored; after which batches the
    aggregates are read."""
    frames: list[bytes] = []
    for dev in DEVS:
        frames += split(draw(device_log(dev)))
    chunks = [frames[i : i + 40] for i in range(0, len(frames), 40)]
    order = draw(st.permutations(range(len(chunks))))
    out = []
    for j in order:
        ch = chunks[j]
        cut = draw(st.integers(0, len(ch)))
        out.append((ch[:cut], draw(st.booleans())))
        if draw(st.integers(0, 3)) == 0:  # sent again, or late
            out.append((ch[: max(1, cut // 2)], False))
        out.append((ch[cut:], False))
    return frames, out


def check(where: str, frames: list[bytes], plan: list) -> None:
    with open_store(where, KEYS) as s:
        for batch, read in plan:
            if batch:
                s.ingest(b"".join(batch))
            if read:
                aggregates.report(s, REG)
        for i in range(0, len(frames), 200):  # a board resends until acked
            s.ingest(b"".join(frames[i : i + 200]))
        assert s.count() == len(frames)
        got, ups = aggregates.report(s, REG)
        want = build(s.table(aggregates.READ_COLUMNS), REG)
        mem, _ = aggregates.report(s, REG, write=False)
        counts = s.query("SELECT device, count(*) AS n FROM frames GROUP BY device")
        # a month or year report from the devices' months kept beside the days
        for reg in (REG, REG_SHARED):
            mon, _ = aggregates.report(s, reg, detail=False, months=True)
            full = build(s.table(aggregates.READ_COLUMNS), reg).days
            assert mon.months is not None and mon.days.num_rows == 0
            shared = mon.months.shared_days.num_rows
            assert shared == (full.num_rows if reg is REG_SHARED else 0)
            for per in ("month", "year"):
                for by in ("village", "district"):
                    assert periods(
                        mon.days, per, by, registry=reg, months=mon.months
                    ).equals(periods(full, per, by, registry=reg))
    assert got.days.num_rows > 0
    assert got.days.equals(want.days), (got.days.to_pylist(), want.days.to_pylist())
    assert mem.days.equals(want.days)
    assert got.notes == want.notes and got.unknown == want.unknown
    for name in ("events", "seen", "quiet", "boots", "unplaced", "placed",
                 "implausible", "detail", "days"):  # fmt: skip
        assert getattr(got.result, name) == getattr(want.result, name), name
    assert got.events.equals(want.events) and got.unplaced.equals(want.unplaced)
    for when in (None, D0 + 2 * DAY + 3600):
        assert alerts(got, when).equals(alerts(want, when))
    n = dict(zip(counts["device"].to_pylist(), counts["n"].to_pylist(), strict=True))
    assert {d: u["frames"] for d, u in ups.items()} == {
        f"{d:08x}": k for d, k in n.items()
    }
    stray = [f for f in frames if int.from_bytes(f[5:9], "little") == DEVS[2]]
    assert got.unknown == {f"{DEVS[2]:08x}": len(stray)}
    for per in ("month", "year"):
        assert periods(got.days, per, "district", registry=REG).equals(
            periods(want.days, per, "district", registry=REG)
        )


SETTINGS = settings(
    max_examples=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


@SETTINGS
@given(arrivals())
def test_aggregates_equal_the_report_duckdb(case):
    frames, plan = case
    with tempfile.TemporaryDirectory() as d:
        check(str(Path(d) / "s.duckdb"), frames, plan)


def test_aggregates_equal_the_report_postgres(pg_cluster):
    from conftest import new_database

    @settings(SETTINGS, max_examples=6)
    @given(arrivals())
    def run(case):
        check(new_database(pg_cluster), *case)

    run()


def test_a_registry_change_recomputes_that_device(tmp_path):
    log = Log(DEVS[0], 1, KEYS[f"{DEVS[0]:08x}"])
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = 0
    for i in range(1, 2 * 96 + 1):
        total += 20
        log.reading(D0 + i * IV, total)
    with open_store(tmp_path / "s.duckdb", KEYS) as s:
        s.ingest(bytes(log.buf))
        a, _ = aggregates.report(s, REG)
        moved = Registry([Village(f"{DEVS[0]:08x}", "Rampur", 250, "B1", "D1", "S")])
        b, _ = aggregates.report(s, moved)
        assert b.days.equals(build(s.table(aggregates.READ_COLUMNS), moved).days)
    lp = [r["lpcd"] for r in a.days.to_pylist()]
    assert sum(x is not None for x in lp) == 2
    assert [r["lpcd"] for r in b.days.to_pylist()] == [x and x * 2 for x in lp]


def test_report_store_reads_the_aggregates(tmp_path, capsys):
    log = Log(DEVS[1], 1, KEYS[f"{DEVS[1]:08x}"])
    log.boot(D0 - 300)
    log.reading(D0, 0)
    for i in range(1, 3 * 96 + 1):
        log.reading(D0 + i * IV, i * 30)
    db = tmp_path / "s.duckdb"
    with open_store(db, KEYS) as s:
        s.ingest(bytes(log.buf))
    reg = tmp_path / "v.csv"
    reg.write_text(
        "device,village,population,block,district,state\n"
        f"{DEVS[1]:08x},Sonpur,800,B1,D1,S\n{DEVS[0]:08x},Rampur,500,B1,D1,S\n"
    )
    args = ["report", "--store", str(db), "--villages", str(reg), "--format", "json"]
    assert main([*args, "--period", "month"]) == 0
    out = capsys.readouterr()
    assert "daily aggregates: 1 device(s) recomputed" in out.err
    assert "has no frames in the input" in out.err  # Rampur: as over the frames
    with open_store(db) as s:  # stored: nothing marked any more
        assert s.query("SELECT count(*) AS n FROM jalkal_touched")["n"][0].as_py() == 0
        n = s.query("SELECT count(*) AS n FROM jalkal_days")["n"][0].as_py()
    assert n == 4  # the evening before D0 (closed by the midnight reading) and 3 days
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)["days"]
    full = [r for r in got if r["complete"]]
    assert [r["litres"] for r in full] == [96 * 30 * 10.0] * 3
    assert [r["lpcd"] for r in full] == [36.0] * 3


def test_a_reader_that_may_not_write_computes_them_in_memory(pg_cluster):
    """A dashboard whose PostgreSQL role may only read: the aggregates are
    computed in memory (the marks stay for a writer), the numbers the same."""
    import psycopg
    from conftest import new_database

    from jalkal.dashboard.source import AggregateReader

    url = new_database(pg_cluster)
    log = Log(DEVS[0], 1, KEYS[f"{DEVS[0]:08x}"])
    log.boot(D0 - 300)
    log.reading(D0, 0)
    for i in range(1, 2 * 96 + 1):
        log.reading(D0 + i * IV, i * 25)
    with open_store(url, KEYS) as s:
        s.ingest(bytes(log.buf))
        want = build(s.table(aggregates.READ_COLUMNS), REG)
    role = "r" + url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE ROLE {role} LOGIN")
        con.execute(f"GRANT USAGE ON SCHEMA jalkal TO {role}")
        con.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA jalkal TO {role}")
    ro = url.replace("://jalkal@", f"://{role}@")
    reader = AggregateReader(ro)
    try:
        assert reader.pg is not None and reader.pg.read_only
        view = reader.poll(-1, False, REG, None)
        assert view is not None and view.report_days is not None
        assert view.report_days.equals(want.days)
        assert reader.poll(view.count, False, REG, None) is None  # nothing new
    finally:
        reader.close()
    with open_store(url) as s:
        assert aggregates.changes(s)[0] > 0  # nothing written: the marks wait


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
@pytest.mark.parametrize("first", [True, False])
def test_a_refresh_overtaken_by_another_keeps_the_newer_rows(
    tmp_path, request, monkeypatch, backend, first
):
    """Two readers refresh at once (a dashboard and `report --store`): the one
    that read the marks first but writes last must not leave rows from fewer
    frames than the other one wrote (an incremental refresh keeps the other's
    rows; a first, whole one marks those devices again)."""
    if backend == "duckdb":
        where = str(tmp_path / "s.duckdb")
    else:
        from conftest import new_database

        where = new_database(request.getfixturevalue("pg_cluster"))
    log = Log(DEVS[0], 1, KEYS[f"{DEVS[0]:08x}"])
    log.boot(D0 - 300)
    log.reading(D0, 0)
    for i in range(1, 2 * 96 + 1):
        log.reading(D0 + i * IV, i * 30)
    frames = split(bytes(log.buf))
    s1 = open_store(where, KEYS)
    s2 = s1 if backend == "duckdb" else open_store(where, KEYS)
    try:
        s1.ingest(b"".join(frames[:100]))
        if not first:
            aggregates.refresh(s1, REG)
        s1.ingest(b"".join(frames[100:110]))
        real = aggregates.compute_devices
        calls: list[int] = []

        def overtaken(*args):  # type: ignore[no-untyped-def]
            out = real(*args)  # this refresh's rows: the first 100 frames
            if not calls:
                calls.append(1)
                s2.ingest(b"".join(frames[110:]))  # the rest, marked again
                aggregates.refresh(s2, REG)  # another refresh writes them first
            return out

        monkeypatch.setattr(aggregates, "compute_devices", overtaken)
        aggregates.refresh(s1, REG)
        monkeypatch.undo()
        assert aggregates.changes(s1)[0] == (1 if first else 0)
        got, _ = aggregates.report(s1, REG)
        want = build(s1.table(aggregates.READ_COLUMNS), REG)
        assert calls and got.days.equals(want.days)
        assert sum(r["complete"] for r in got.days.to_pylist()) == 2
    finally:
        s1.close()
        if s2 is not s1:
            s2.close()
