"""Start/stop on the tank's continuous level (issue 19, control part): the pump
starts below the low mark and stops at the high mark, read from a 4-20 mA
transducer on the tank floor; the float switches stay the hard interlock, and a
level sensor in fault (open loop) hands control back to them. Checked on the
`tank-level` scenario against the simulator's ground truth (the plant's tank
litres at every step, sim/control.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import jkboards
from jalkal.decode import bulk
from jkfw import config
from jkproto import objects as ob
from jksim import scenario, village


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    sc = scenario.load("tank-level", days=4)
    out = tmp_path_factory.mktemp("tank")
    v = village.simulate(sc, out)
    assert not v.clock.failures
    data = b"".join(p.read_bytes() for p in sorted((out / "sd" / "log").glob("*")))
    objs = bulk.to_objects(bulk.decode(data).table)
    truth = json.loads((out / "truth.json").read_text())["villages"][0]
    return sc, objs, truth


def fault_span(sc: dict) -> tuple[int, int]:
    (f,) = [f for f in sc["fault"] if f["kind"] == "sensor"]
    a = sc["start_utc"] + f["at_s"]
    return a, a + int(f["hours"] * 3600)


def test_the_level_stays_between_the_marks(run):
    sc, objs, truth = run
    tl = truth["tank_level"]
    cap = tl["tank_litres"]
    s = sc["scheme"]
    # one read interval of the pump's flow (or the village's draw) past a mark
    tol = s["pump_lpm"] * (sc["tank_level"]["every_s"] + 1) / 60 + 50
    a, _b = fault_span(sc)
    fault_day = dt.datetime.utcfromtimestamp(a + sc["tz_offset_min"] * 60).date()
    days = [d for d in tl["days"] if d["date"] != fault_day.isoformat()]
    assert len(days) == 3
    for d in days:
        assert d["least_l"] >= tl["low_litres"] - tol, d
        assert d["most_l"] <= tl["high_litres"] + tol, d
        # the floats (at low_frac and high_frac of the tank) never had to act
        assert s["low_frac"] * cap < d["least_l"] and d["most_l"] < s["high_frac"] * cap
    print("level range on the days without a fault (L):",
          min(d["least_l"] for d in days), max(d["most_l"] for d in days),
          "marks", tl["low_litres"], tl["high_litres"])  # fmt: skip
    # the tank never overflowed (the plant's trace)
    assert "overflow" not in [what for _t, what in truth["trace"]]
    evs = [o for o in objs if o["kind"] == "event"]
    stops = [o for o in evs if o["event"] == "pump_stop"]
    assert len(stops) >= 8 and {o["reason"] for o in stops} == {"tank_full"}
    assert not [o for o in evs if o["event"] in ("lockout", "fault_raised")]


def test_an_open_loop_mid_run_hands_control_to_the_floats(run):
    sc, objs, truth = run
    a, b = fault_span(sc)
    tl = truth["tank_level"]
    cap = tl["tank_litres"]
    ms = [o for o in objs if o["kind"] == "measure"]
    inside = [o for o in ms if a + 61 <= ob.parse_iso(o["ts"]) < b]
    assert len(inside) >= 20
    for o in inside:  # a fault is a fault, never a level
        assert o["tank_mm"] is None and o["faults"] == ["tank"]
    evs = [o for o in objs if o["kind"] == "event" and o["event"].startswith("pump_")]
    before = [o for o in evs if ob.parse_iso(o["ts"]) < a]
    assert before[-1]["event"] == "pump_start", "the loop is cut mid-run"
    # the run goes on past the high mark to the high float, which stops it
    stop = [o for o in evs if a <= ob.parse_iso(o["ts"]) < b][0]
    assert stop["event"] == "pump_stop" and stop["reason"] == "tank_full"
    t = ob.parse_iso(stop["ts"])
    level = [r[1] for r in tl["samples"] if r[0] <= t][-1]
    high_float = sc["scheme"]["high_frac"] * cap
    assert level > tl["high_litres"] + 2000 and level <= high_float + 100
    # and the next start, still in the fault, waits for the low float
    nxt = [o for o in evs if ob.parse_iso(o["ts"]) > t][0]
    if ob.parse_iso(nxt["ts"]) < b:
        t2 = ob.parse_iso(nxt["ts"])
        level = [r[1] for r in tl["samples"] if r[0] <= t2][-1]
        assert level < tl["low_litres"]


def test_the_marks_are_checked():
    pins = jkboards.load("esp32s3-devkitc-sim7600")["pins"]
    tank = {"in": "ads1", "shunt_ohm": 150, "height_m": 3.0, "diameter_m": 4.6}
    for marks, ok in (
        ({"low_m": 1.35, "high_m": 2.4}, True),
        ({}, True),  # no marks: the floats alone
        ({"low_m": 1.35}, False),  # one mark
        ({"low_m": 2.4, "high_m": 1.35}, False),  # low above high
        ({"low_m": 1.35, "high_m": 3.5}, False),  # above the overflow
    ):
        cfg, bad = config.validate({"pins": pins, "tank": dict(tank, **marks)})
        assert (bad == []) == ok, (marks, bad)


def test_a_level_verdict_never_overrides_the_high_float():
    from jkfw.pump import Pump

    p = Pump(0, {"min_off_s": 0, "restart_delay_s": 0})
    p.tank(0, True)  # before the floats are read: nothing
    p.inputs(1, False, False, True, False, True)  # the high float up
    p.tank(1, True)  # the sensor says "below the low mark": it is wrong
    assert p.step(1) == [] and not p.relay
    p.inputs(2, False, False, False, False, True)  # the float drops again
    p.tank(3, True)  # still not believed: no start, no cycling at the top
    assert p.step(3) == [] and not p.relay
    p.inputs(4, False, True, False, False, True)  # the low float: the floats fill
    assert p.step(4) == [("pump_start", "tank_low", 0)]
    p.tank(5, False)  # the sensor says full: the stop, and it is believed again
    assert p.step(5) == [("pump_stop", "tank_full", 1)]
    p.inputs(6, False, False, False, False, True)
    p.tank(6, True)
    assert p.step(6) == [("pump_start", "tank_low", 0)]


def test_the_scenario_is_documented():
    doc = (Path(__file__).parent.parent / "docs" / "scenarios.md").read_text()
    assert "`tank-level`" in doc and "`solar-week`" in doc
