"""Implausible readings (host/reports/plausible.py): a reading interval whose pulses
imply more than the meter's maximum flow (a frame forged with a stolen key, a faulty
meter) is not added to the day's litres; the day says so (`implausible_litres`,
incomplete) and `--alerts` raises an `implausible` alert. Checked on simulated
villages against the simulator's ground truth, the forged frames signed with the
device's own key so every MAC and CRC holds."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from jalkal.cli import main
from jalkal.registry import load_villages
from jalkal.reports import daily_bulk
from jalkal.reports.periods import build
from jalkal.reports.sources import decode_sources
from jkproto import codec as c
from jksim import scenario
from jksim.village import simulate

ABSURD = 4_000_000  # pulses: 40,000 m3 in 15 minutes at 10 L a pulse
SUPPLY_AT = 4  # supply_pulses' offset in a reading's payload ("<IIHBBB")


@pytest.fixture(scope="module")
def village(tmp_path_factory):
    out = tmp_path_factory.mktemp("village")
    sc = scenario.load("normal", days=3, seed=5)
    simulate(sc, out)
    truth = json.loads((out / "truth.json").read_text())["villages"][0]
    return out, sc, {d["date"]: d["litres"] for d in truth["days"]}


def _readings(out: Path) -> list[tuple[Path, int, bytes]]:
    """(file, offset, frame) of every reading in the SD log, in stream order."""
    got = []
    for f in sorted((out / "sd").rglob("*.jkl")):
        data = f.read_bytes()
        for off, n in c.scan(data):
            if data[off + 3] == c.READING:
                got.append((f, off, data[off : off + n]))
    return got


def _forge(frame: bytes, signer: c.Signer, add: int) -> bytes:
    """The same frame (key, time, chain link) with `add` more supply pulses,
    signed with the device key."""
    n = len(frame)
    buf = bytearray(frame)
    p = c.HEAD_LEN + SUPPLY_AT
    total = struct.unpack_from("<I", buf, p)[0]
    struct.pack_into("<I", buf, p, (total + add) % (1 << 32))
    c.seal(buf, n, signer)
    return bytes(buf)


def _copy(village, tmp: Path, forge) -> tuple[Path, dict, list]:
    """The village's files copied to tmp with forge(readings, signer) -> {frame
    index: new bytes} applied; returns the copy, the truth and the readings."""
    import shutil

    out, _sc, truth = village
    shutil.copytree(out, tmp, dirs_exist_ok=True)
    keys = json.loads((tmp / "keys.json").read_text())["devices"]
    signer = c.Signer(bytes.fromhex(next(iter(keys.values()))["key"]))
    rs = _readings(tmp)
    for i, new in forge(rs, signer).items():
        f, off, old = rs[i]
        data = bytearray(f.read_bytes())
        assert data[off : off + len(old)] == old
        data[off : off + len(old)] = new
        f.write_bytes(bytes(data))
    return tmp, truth, rs


def _supply(frame: bytes) -> int:
    return struct.unpack_from("<I", frame, c.HEAD_LEN + SUPPLY_AT)[0]


def _time(frame: bytes) -> int:
    return c.unpack_head(frame)[7]


def _day_of(rs, date: str, hour: int) -> int:
    """Index of the reading at `hour`:00 local (IST) on date."""
    from datetime import datetime, timedelta, timezone

    ist = timezone(timedelta(minutes=330))
    want = int(
        datetime.fromisoformat(f"{date}T{hour:02d}:00").replace(tzinfo=ist).timestamp()
    )
    return next(i for i, r in enumerate(rs) if _time(r[2]) == want)


def _report(tmp: Path):
    table, _ = decode_sources([str(tmp / "sd")], str(tmp / "keys.json"))
    reg = load_villages(tmp / "villages.csv")
    return table, reg, build(table, reg)


def _alerts(tmp: Path, capsys) -> list[dict]:
    args = ["report", str(tmp / "sd"), "--villages", str(tmp / "villages.csv"),
            "--keys", str(tmp / "keys.json"), "--alerts", "--format",
            "json"]  # fmt: skip
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)["alerts"]


def test_one_forged_reading_is_not_counted(village, tmp_path, capsys):
    """A spike: one reading forged 4,000,000 pulses up, the next one genuine."""
    day = "2026-03-02"
    at: dict[str, int] = {}

    def forge(rs, signer):
        i = at["i"] = _day_of(rs, day, 10)
        return {i: _forge(rs[i][2], signer, ABSURD)}

    tmp, truth, rs = _copy(village, tmp_path, forge)
    lpp = village[1]["scheme"]["litres_per_pulse"]
    table, reg, rep = _report(tmp)
    d = {r["date"]: r for r in rep.result.days}
    # the day's litres are the truth: the spike is stepped over
    assert abs(d[day]["litres"] - truth[day]) <= lpp, (d[day], truth[day])
    i = at["i"]
    jump = (_supply(rs[i][2]) + ABSURD - _supply(rs[i - 1][2])) * lpp
    assert d[day]["implausible_litres"] == jump
    assert d[day]["complete"] is False and d[day]["lpcd"] is None
    assert d[day]["band"] is None
    for other in set(d) - {day}:  # the other days: untouched
        assert d[other]["implausible_litres"] == 0.0
    assert d["2026-03-01"]["complete"] and d["2026-03-03"]["complete"]
    [x] = rep.result.implausible
    assert x["spike"] and x["pulses"] == jump / lpp and x["date"] == day
    assert any("implied a supply flow above 60 m3/h" in n for n in rep.notes)
    # the vectorised path gives the same table (the device goes to daily.compute)
    fast = daily_bulk.days(table, reg)
    assert fast.table.equals(rep.days) and fast.fallback == [x["device"]]
    # the alert
    [a] = [a for a in _alerts(tmp, capsys) if a["kind"] == "implausible"]
    assert a["village"] == "Hirapur" and "forged" in a["what"]
    assert f"seq {x['seq']}" in a["evidence"] and "spike" in a["evidence"]
    # a larger maximum (a bigger main) lets it through: the option is used
    args = ["report", str(tmp / "sd"), "--villages", str(tmp / "villages.csv"),
            "--format", "json", "--max-flow-m3h", "1e9"]  # fmt: skip
    assert main(args) == 0
    days = json.loads(capsys.readouterr().out)["days"]
    assert {r["implausible_litres"] for r in days} == {0.0}


def test_a_meter_that_jumps_for_good(village, tmp_path, capsys):
    """A faulty counter: every reading from 10:00 on day 2 is 4,000,000 pulses
    higher. That one interval is not counted, the rest are."""
    day = "2026-03-02"
    at: dict[str, int] = {}

    def forge(rs, signer):
        i = at["i"] = _day_of(rs, day, 10)
        return {j: _forge(rs[j][2], signer, ABSURD) for j in range(i, len(rs))}

    tmp, truth, rs = _copy(village, tmp_path, forge)
    lpp = village[1]["scheme"]["litres_per_pulse"]
    table, reg, rep = _report(tmp)
    d = {r["date"]: r for r in rep.result.days}
    i = at["i"]
    real = (_supply(rs[i][2]) - _supply(rs[i - 1][2])) * lpp  # lost with it
    assert abs(d[day]["litres"] - (truth[day] - real)) <= lpp
    assert d[day]["implausible_litres"] == real + ABSURD * lpp
    assert d[day]["complete"] is False and d[day]["lpcd"] is None
    assert abs(d["2026-03-03"]["litres"] - truth["2026-03-03"]) <= lpp
    assert d["2026-03-03"]["complete"] and d["2026-03-03"]["implausible_litres"] == 0
    [x] = rep.result.implausible
    assert not x["spike"]
    fast = daily_bulk.days(table, reg)
    assert fast.table.equals(rep.days) and fast.notes == rep.notes
    assert fast.fallback == [x["device"]]
    kinds = [a["kind"] for a in _alerts(tmp, capsys)]
    assert kinds.count("implausible") == 1


def test_untouched_village_is_regular_and_unflagged(village, capsys):
    out, _sc, _truth = village
    table, reg, rep = _report(out)
    assert not rep.result.implausible
    assert all(
        r["implausible_litres"] == 0.0 and r["complete"] for r in rep.result.days[1:]
    )
    fast = daily_bulk.days(table, reg)
    assert fast.regular == 1 and fast.table.equals(rep.days)
    assert "implausible" not in {a["kind"] for a in _alerts(out, capsys)}


@pytest.mark.parametrize("name", scenario.BUILTINS)
def test_no_false_flags_on_the_scenarios(name, tmp_path):
    simulate(scenario.load(name, days=4, seed=7), tmp_path)
    _table, _reg, rep = _report(tmp_path)
    assert not rep.result.implausible, rep.result.implausible
    assert {r["implausible_litres"] for r in rep.result.days} == {0.0}
