"""Pump hours from the motor, not the relay (issue 19): the board counts the
motor's own running seconds (firmware/motor.py Watch, from the CT or the
contactor contact) and logs them as the measure frame's appended `motor_s`; the
report's motor_hours come from that counter's increments. Checked against the
simulator's ground truth (truth.json `sensors.motor_days`: the motor's running
seconds integrated exactly between its relay, trip and bypass changes), with a
tripped motor, and with measure frames as boards before the counter wrote them
(33-byte payloads: motor_s absent, the report falls back to sampling)."""

from __future__ import annotations

import json
import struct
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalkal.decode import bulk
from jalkal.registry import load_registry
from jalkal.reports import daily, daily_bulk, periods
from jkfw import motor
from jkproto import codec as c
from jkproto import objects as ob
from jksim import scenario, village

TZ_OFF = 19800  # Asia/Kolkata, the scenarios' zone
EVERY_S = 30  # the motor check interval (config motor.every_s default)
KEY = bytes(range(32))

# protocol/vectors/frames.jsonl "measure-every-sensor" as it was before motor_s
# was appended: a 60-byte frame (33-byte payload) from a board in the field
OLD_FRAME = bytes.fromhex(
    "a5013c07023d2c1b0a070001008081a36900007210ce0e3007222400002c030802d1025a0a"
    "0000041f00000106096207f6040000bef2c0cff02a83e5"
)
OLD_EXPECT = {
    "device": "0a1b2c3d", "boot": 7, "seq": 1, "kind": "measure",
    "ts": "2026-03-01T00:00:00Z", "time": "net", "bore_head_cm": 4210,
    "bore_depth_cm": 3790, "tank_mm": 1840, "tank_l": 9250, "ec_us": 812,
    "tds_mgl": 520, "ph_x100": 721, "water_cc": 2650, "motor_ma": 7940,
    "motor_running": 1, "supply_cv": 2310, "panel_cv": 1890, "battery_cv": 1270,
    "faults": [], "prev": "0000", "mac": "bef2c0cf", "chain": "start",
}  # fmt: skip


# --- the frame ------------------------------------------------------------------


def test_an_old_33_byte_measure_frame_still_decodes():
    """Both decoders read a frame of the first layout: every field it has, no
    motor_s (absent from the JSON object, null in the table), and `encode` gives
    the same 60 bytes back."""
    assert len(OLD_FRAME) == 60 and OLD_FRAME[2] == 60
    objs, stats = ob.decode_stream(OLD_FRAME)
    assert objs == [OLD_EXPECT]
    assert stats["frames"] == 1 and stats["malformed"] == 0
    d = bulk.decode(OLD_FRAME)
    assert d.stats["frames"] == 1 and d.stats["malformed"] == 0
    assert d.table.column("motor_s").to_pylist() == [None]
    assert d.table.column("motor_running").to_pylist() == [1]
    assert bulk.to_objects(d.table) == [OLD_EXPECT]
    assert ob.from_obj(OLD_EXPECT) == OLD_FRAME
    # one byte short of the first layout is malformed, as before
    short = c.pack(c.MEASURE, 1, 0, 0, 0, 2, 0, bytes(32), c.Signer(KEY))
    assert "error" in ob.decode_stream(short)[0][0]
    assert bulk.decode(short).stats["malformed"] == 1


def test_the_extended_frame_is_37_bytes_of_payload():
    vals = (1, 2, 3, 4, 5, 6, 7, -8, 9, 1, 10, 11, 12, 0, 86400)
    f = bytes(c.Encoder(5, KEY).frame(c.MEASURE, 1772323200, 2, *vals))
    assert len(f) == c.MIN_LEN + 37
    assert struct.unpack_from("<I", f, c.HEAD_LEN + 33)[0] == 86400
    assert ob.decode_stream(f)[0][0]["motor_s"] == 86400
    assert bulk.to_objects(bulk.decode(f).table)[0]["motor_s"] == 86400


FIELDS_OLD = ob.OLDER_FMT[c.MEASURE][0][1:]
RANGE = {"B": (0, 255), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF),
         "i": (-(2**31), 2**31 - 1)}  # fmt: skip


@st.composite
def measure_frames(draw):
    """(frame, values, extra): a measure frame of either layout, any values, and
    0-6 bytes more (fewer than 4 more than the first layout are its `extra`)."""
    chars = c.PAYLOAD_FMT[c.MEASURE][1:]
    new = draw(st.booleans())
    chars = chars if new else FIELDS_OLD
    vals = tuple(draw(st.integers(*RANGE[ch])) for ch in chars)
    extra = draw(st.binary(max_size=6 if new else 3))
    payload = struct.pack("<" + chars, *vals) + extra
    dev, t = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
    boot, seq = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    f = c.pack(c.MEASURE, dev, boot, seq, t, 2, 0, payload, c.Signer(KEY))
    return f, vals, extra


@settings(max_examples=150, deadline=None)
@given(x=measure_frames())
def test_either_layout_round_trips_and_the_decoders_agree(x):
    """Frames of the new and the old layout (with bytes past it) decode to the
    same objects in the reference and the bulk decoder, the all-ones motor_s is
    null, an old frame has none, and encode gives the bytes back."""
    f, vals, extra = x
    objs, _ = ob.decode_stream(f)
    (o,) = objs
    assert "error" not in o
    assert bulk.to_objects(bulk.decode(f).table) == objs
    assert ob.from_obj(o) == f
    if len(vals) == 15:
        assert o["motor_s"] == (None if vals[14] == 0xFFFFFFFF else vals[14])
    else:
        assert "motor_s" not in o
    assert o.get("extra", "") == extra.hex()


# --- the board's counter ----------------------------------------------------------


def test_the_watch_counts_the_motors_seconds_not_the_relays():
    w = motor.Watch()
    w.step(0, True, False)  # relay on, motor not yet
    w.step(30, True, True)  # the motor runs from here
    assert w.seconds(45) == 15  # the open span counts up to now
    w.step(60, True, True)
    w.step(90, True, False)  # tripped: no more counted after this check
    assert w.run_s == 60
    w.step(120, True, None)  # the sensor in fault: nothing counted
    w.step(150, False, True)  # motor running with the relay off: counted
    w.step(180, False, True)
    assert w.seconds(180) == 90 and w.seconds(200) == 110


# --- simulated villages against the truth -----------------------------------------


class Run:
    def __init__(self, out: Path, days: int):
        data = b"".join(p.read_bytes() for p in sorted((out / "sd" / "log").glob("*")))
        self.table = bulk.decode(data).table
        self.objs = bulk.to_objects(self.table)
        self.reg = load_registry(str(out / "villages.csv"))
        self.truth = json.loads((out / "truth.json").read_text())["villages"][0]
        self.days = periods.build(self.table, self.reg).days.to_pylist()[:days]


def simulate(out: Path, sc: dict) -> Run:
    v = village.simulate(sc, out)
    assert not v.clock.failures
    return Run(out, sc["days"])


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Run:
    """motor-faults, 5 days: tripped 8 h on day 2, bypassed 2 h on day 4."""
    sc = scenario.load("motor-faults", days=5)
    return simulate(tmp_path_factory.mktemp("mf") / "run", sc)


@pytest.fixture(scope="module")
def tripped(tmp_path_factory) -> Run:
    """Every sensor fitted and the motor's overload tripped for the whole run."""
    sc = scenario.load("sensors", days=2)
    sc["fault"] = [{"kind": "motor_trip", "at_s": 0, "hours": 49.0}]
    return simulate(tmp_path_factory.mktemp("tr") / "run", sc)


def local_day(t: int) -> date:
    return date(1970, 1, 1) + timedelta(days=(t + TZ_OFF) // 86400)


def motor_changes(run: Run) -> dict[str, int]:
    """Per local day, how many times the true motor started or stopped: the
    relay's changes (trace) and the injected trips and bypasses' edges."""
    n: dict[str, int] = {}
    for when, what in run.truth["trace"]:
        if what in ("relay_on", "relay_off"):
            t = ob.parse_iso(when)
            n[str(local_day(t))] = n.get(str(local_day(t)), 0) + 1
    for f in run.truth["sensors"]["faults"]:
        for t in (f["from"], f["to"]):
            n[str(local_day(t))] = n.get(str(local_day(t)), 0) + 1
    return n


def test_measure_frames_carry_a_growing_counter(faults):
    ms = [o for o in faults.objs if o["kind"] == "measure"]
    assert ms and all(isinstance(o["motor_s"], int) for o in ms)
    by_boot: dict[int, list[int]] = {}
    for o in ms:
        by_boot.setdefault(o["boot"], []).append(o["motor_s"])
    for counts in by_boot.values():
        assert counts == sorted(counts)
    # the whole run: the counter's total is the truth's to within the checks
    total = sum(max(v) for v in by_boot.values())
    true = sum(d["run_s"] for d in faults.truth["sensors"]["motor_days"])
    assert abs(total - true) <= EVERY_S * sum(motor_changes(faults).values()) / 2


def test_daily_motor_hours_within_a_check_interval_a_start(faults):
    """Each day's motor_hours is the truth's running seconds within one motor
    check interval per start (a start and a stop are each seen at the next
    check), the midnight splits (the frame spanning midnight begins at most a
    minute before it) and the report's 0.01 h rounding."""
    truth = {d["date"]: d["run_s"] for d in faults.truth["sensors"]["motor_days"]}
    changes = motor_changes(faults)
    assert len(faults.days) == 5
    worst = 0.0
    for r in faults.days:
        day = str(r["date"])
        starts = (changes.get(day, 0) + 1) // 2 + 1
        err = abs(r["motor_hours"] * 3600 - truth[day])
        worst = max(worst, err)
        bound = starts * EVERY_S + 2 * 60 + 18
        assert err <= bound, (day, r["motor_hours"], truth[day])
    print(f"worst daily motor-hours error: {worst:.0f} s")


def test_the_trip_and_the_bypass_show_in_motor_hours_not_in_relay_hours(faults):
    truth = {d["date"]: d["run_s"] for d in faults.truth["sensors"]["motor_days"]}
    spans = {f["kind"]: f for f in faults.truth["sensors"]["faults"]}
    trip = str(local_day(spans["motor_trip"]["from"]))
    bypass = str(local_day(spans["motor_bypass"]["from"]))
    rows = {str(r["date"]): r for r in faults.days}
    # tripped: the relay was on longer than the motor ran (and the truth agrees)
    assert rows[trip]["pump_hours"] > rows[trip]["motor_hours"] + 0.1
    assert abs(rows[trip]["motor_hours"] * 3600 - truth[trip]) < 300
    # bypassed 2 h with the relay off: the motor ran longer than the relay
    assert rows[bypass]["motor_hours"] > rows[bypass]["pump_hours"] + 1.0
    assert abs(rows[bypass]["motor_hours"] * 3600 - truth[bypass]) < 300


def test_a_tripped_motor_gives_no_motor_hours(tripped):
    """The relay closes (and opens again on no flow), the motor never runs: 0
    motor hours every day, exactly, while the relay's pump hours are not 0."""
    assert all(d["run_s"] == 0 for d in tripped.truth["sensors"]["motor_days"])
    assert len(tripped.days) == 2
    for r in tripped.days:
        assert r["motor_hours"] == 0.0, r
    assert sum(r["pump_hours"] or 0 for r in tripped.days) > 0
    assert any(o.get("reason") == "motor_not_running" for o in tripped.objs)


# --- old frames and the two report paths ----------------------------------------------


def as_old(tb: pa.Table) -> pa.Table:
    """The same frames as boards before motor_s wrote them: the measure frames
    cut to their first 33 bytes of payload (re-sealed with the device key) and
    decoded again."""
    out = []
    key = bytes(range(32))
    for o in bulk.to_objects(tb):
        if o["kind"] == "measure":
            o = {k: v for k, v in o.items() if k not in ("motor_s", "mac", "chain")}
        else:
            o = {k: v for k, v in o.items() if k not in ("mac", "chain")}
        out.append(o)
    data = b"".join(ob.from_obj(o, c.Signer(key)) for o in out)
    return bulk.decode(data).table


def test_old_frames_fall_back_to_the_sampled_state(faults):
    """With the counter gone the report still gives motor hours, sampled from
    motor_running (within the measure interval a start of the counter's)."""
    old = as_old(faults.table)
    kinds = old.column("kind").to_numpy()
    lens = old.column("length").to_numpy()
    assert set(lens[kinds == c.MEASURE].tolist()) == {60}
    assert old.column("motor_s").null_count == old.num_rows
    got = periods.build(old, faults.reg).days.to_pylist()[:5]
    changes = motor_changes(faults)
    for a, b in zip(got, faults.days, strict=True):
        starts = (changes.get(str(a["date"]), 0) + 1) // 2 + 1
        assert abs(a["motor_hours"] - b["motor_hours"]) <= starts * 0.25 + 0.01, (a, b)
    assert daily_bulk.days(old, faults.reg).table.equals(
        periods.build(old, faults.reg).days
    )


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), share=st.floats(0.0, 0.9))
def test_report_paths_agree_with_frames_lost_and_mixed_layouts(faults, seed, share):
    """daily.compute (one device, frame by frame) and daily_bulk (vectorised)
    give the same motor hours when measure frames are lost at random (long and
    midnight-crossing spans) and some are of the old layout."""
    tb = faults.table
    kind = tb["kind"].to_numpy()
    rng = np.random.default_rng(seed)
    drop = (kind == c.MEASURE) & (rng.random(kind.size) < share)
    sub = tb.filter(pa.array(~drop))
    if rng.random() < 0.5:  # the first half of the measure frames: old layout
        ms = np.flatnonzero(sub["kind"].to_numpy() == c.MEASURE)
        old = np.zeros(sub.num_rows, bool)
        old[ms[: ms.size // 2]] = True
        col = pc.if_else(pa.array(old), pa.scalar(None, pa.uint32()), sub["motor_s"])
        sub = sub.set_column(sub.schema.get_field_index("motor_s"), "motor_s", col)
    want = periods.build(sub, faults.reg).days
    got = daily_bulk.days(sub, faults.reg)
    assert got.regular == 1
    assert got.table.column("motor_hours").equals(want.column("motor_hours"))
    assert got.table.equals(want)


def test_a_span_across_midnight_is_split_in_proportion():
    """Two measure frames 15 minutes apart, 10 minutes before and 5 after local
    midnight, the counter up by 600 s: 400 s on the first day, 200 on the next;
    the motor's state is not what counts (it says stopped)."""
    mid = 1772389800  # 2026-03-02 00:00 Asia/Kolkata
    dev = 0x0A1B2C3D
    enc = c.Encoder(dev, KEY, boot=3)
    n = ob.NO_VALUE
    base = [n["H"], n["H"], n["H"], n["I"], n["H"], n["H"], n["H"], n["i"], 0, 0,
            n["H"], n["H"], n["H"], 0]  # fmt: skip
    frames = [bytes(enc.frame(c.BOOT, mid - 7200, 2, 1, 1, 0, 0, 900, 100, 100))]
    for t, s in ((mid - 3600, 0), (mid - 600, 1000), (mid + 300, 1600)):
        frames.append(bytes(enc.frame(c.MEASURE, t, 2, *base, s)))
    tb = bulk.decode(b"".join(frames)).table
    reg = {"%08x" % dev: {"village": "v", "population": 100}}
    res = daily.compute(tb, reg)
    rows = {str(r["date"]): r["motor_hours"] for r in res.detail}
    assert rows["2026-03-01"] == round((1000 + 400) / 3600, 2)
    assert rows["2026-03-02"] == round(200 / 3600, 2)
