"""The sensors at work (issue 19, second part): their config, the `measure` frames
the controller logs from them, the predictive dry-run stop and the motor/relay
watch, checked on simulated villages against the simulator's ground truth
(sim/fitted.py over sim/aquifer.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import jkboards
from jalkal.decode import bulk
from jkfw import config
from jkproto import objects as ob
from jksim import scenario, village

S3 = jkboards.load("esp32s3-devkitc-sim7600")["pins"]
ESP32 = jkboards.load("esp32-devkitc-sim800l")["pins"]
BORE = {"in": "ads0", "shunt_ohm": 150, "range_m": 50, "install_m": 45,
        "intake_m": 40}  # fmt: skip


# --- config ----------------------------------------------------------------------


def test_every_sensor_is_off_by_default():
    cfg, bad = config.validate({"pins": ESP32})
    assert bad == []
    # a board without sensors has none of their keys (nor their checks' code)
    assert not {"bore", "tank", "quality", "motor", "volts"} & set(cfg)
    cfg, bad = config.validate({"pins": ESP32, "bore": None})
    assert bad == [] and "bore" not in cfg
    cfg, bad = config.validate({"pins": ESP32, "bore": BORE, "colour": 1})
    assert bad == ["colour"] and cfg["bore"] and cfg["tank"] is None


def test_a_sensor_gets_its_defaults():
    cfg, bad = config.validate({"pins": ESP32, "bore": BORE})
    assert bad == []
    assert cfg["bore"]["margin_m"] == 2.0 and cfg["bore"]["range_m"] == 50.0


@pytest.mark.parametrize(
    "key, value",
    [
        ("bore", dict(BORE, shunt_ohm=200)),  # a short would read as a level
        ("bore", dict(BORE, **{"in": "adc"})),  # no bore_adc pin on this board
        ("bore", dict(BORE, intake_m=50)),  # the intake below the transducer
        ("bore", {"in": "ads0", "range_m": 50}),  # install_m missing
        ("bore", dict(BORE, colour="red")),  # unknown field
        ("tank", {"in": "sonar", "height_m": 3, "diameter_m": 4, "mount_mm": 3300}),
        ("quality", {"ec_in": "ads1"}),  # EC without the water's temperature
        ("motor", {"sense": "ct"}),  # no ct_adc pin on this board
        ("volts", {"solar": {"r_top": 1, "r_bottom": 1}}),
        ("bore", "yes"),
    ],
)
def test_a_bad_sensor_is_off_and_reported(key, value):
    cfg, bad = config.validate({"pins": ESP32, key: value})
    assert bad == [key] and cfg.get(key) is None


def test_an_analogue_pin_must_be_adc1():
    pins = dict(S3, bore_adc=2)
    del pins["ct_adc"]
    assert config.validate({"pins": pins, "bore": dict(BORE, **{"in": "adc",
                            "shunt_ohm": 100})})[1] == []  # fmt: skip
    pins["bore_adc"] = 14  # not ADC1 (and the sonar's)
    assert config.validate({"pins": pins, "bore": dict(BORE, **{"in": "adc",
                            "shunt_ohm": 100})})[1] == ["bore"]  # fmt: skip


def test_board_files_are_checked_for_adc1():
    from jkboards.pins import problems

    b = {"name": "x", "chip": "esp32", "pins": dict(ESP32, bore_adc=25)}
    b["pins"].pop("sw_high")
    b["pins"]["sw_high"] = 15
    assert any("bore_adc = GPIO25 is not an ADC1 pin" in p for p in problems(b))


def test_a_board_without_sensors_never_loads_their_code(tmp_path):
    sys.modules.pop("jkfw.measure", None)
    sc = scenario.load("normal", days=1)
    village.simulate(sc, tmp_path / "n")
    assert "jkfw.measure" not in sys.modules


# --- simulated villages --------------------------------------------------------


def run(tmp: Path, name: str, days: int) -> tuple[list[dict], dict]:
    sc = scenario.load(name, days=days)
    out = tmp / name
    v = village.simulate(sc, out)
    assert not v.clock.failures
    data = b"".join(p.read_bytes() for p in sorted((out / "sd" / "log").glob("*")))
    objs = bulk.to_objects(bulk.decode(data).table)
    truth = json.loads((out / "truth.json").read_text())["villages"][0]
    return objs, truth


@pytest.fixture(scope="module")
def sensors(tmp_path_factory):
    return run(tmp_path_factory.mktemp("s"), "sensors", 4)


@pytest.fixture(scope="module")
def bore_open(tmp_path_factory):
    return run(tmp_path_factory.mktemp("b"), "bore-open", 5)


@pytest.fixture(scope="module")
def motor_faults(tmp_path_factory):
    return run(tmp_path_factory.mktemp("m"), "motor-faults", 5)


def t_of(o: dict) -> int:
    return ob.parse_iso(o["ts"])


def bursts(truth: dict) -> list[tuple[int, float]]:
    """(UTC ms of its last sample, the median true depth) of every 5-sample burst
    the borewell transducer gave."""
    rows = truth["sensors"]["bore"]
    out = []
    for i in range(0, len(rows) - 4):
        a, e = rows[i], rows[i + 4]
        if e[0] - a[0] == 400 and (i == 0 or a[0] - rows[i - 1][0] > 100):
            out.append((e[0], sorted(r[1] for r in rows[i : i + 5])[2]))
    return out


def burst_truth(bs: list, t: int, got_m: float) -> float:
    """The true depth of the burst a frame stamped t (whole seconds) carries: the
    last one finished by then, or the one before when the frame was written while
    the last was under way; whichever is nearer to what the frame says."""
    done = [d for ms, d in bs if ms <= t * 1000 + 999][-2:]
    assert done
    return min(done, key=lambda d: abs(d - got_m))


def test_measure_frames_carry_every_sensor(sensors):
    objs, _truth = sensors
    ms = [o for o in objs if o["kind"] == "measure"]
    assert len(ms) >= 4 * 96
    for o in ms:
        assert o["faults"] == []
        for k in ("bore_head_cm", "bore_depth_cm", "tank_mm", "tank_l", "ec_us",
                  "tds_mgl", "ph_x100", "water_cc", "motor_ma", "supply_cv",
                  "battery_cv"):  # fmt: skip
            assert o[k] is not None, k
        assert o["panel_cv"] is None  # not fitted
        assert 6.0 < o["ph_x100"] / 100 < 8.0 and 300 < o["tds_mgl"] < 600
        assert o["supply_cv"] == 1220 and o["battery_cv"] == 1280
        assert (o["motor_running"] == 1) == (o["motor_ma"] > 1000)
    readings = [o for o in objs if o["kind"] == "reading"]
    assert {o["supply_dv"] for o in readings[1:]} == {122}


def test_borewell_depth_within_the_sensors_resolution(sensors):
    objs, truth = sensors
    s = truth["sensors"]
    # ADS1115 at +-4.096 V: 125 uV over 150 ohm = 0.83 uA of 16 mA over 50 m =
    # 2.6 mm a count (the converter truncates); the frame holds whole centimetres:
    # the reading is within its resolution, 1 cm
    lsb_m = 0.000125 / 150 * 1000 / 16 * s["range_m"]
    assert lsb_m < 0.003
    res_m = 0.01
    ms = [o for o in objs if o["kind"] == "measure"]
    worst = 0.0
    bs = bursts(truth)
    for o in ms:
        depth = burst_truth(bs, t_of(o), o["bore_depth_cm"] / 100)
        assert o["bore_depth_cm"] / 100 == pytest.approx(depth, abs=res_m)
        head = s["install_m"] - depth
        assert o["bore_head_cm"] / 100 == pytest.approx(head, abs=res_m)
        worst = max(worst, abs(o["bore_depth_cm"] / 100 - depth))
    print("worst borewell depth error (m):", worst, "of", res_m)


def test_predictive_stop_before_the_dry_run_probe(sensors):
    objs, truth = sensors
    s = truth["sensors"]
    stops = [o for o in objs if o["kind"] == "event" and o["event"] == "pump_stop"]
    low = [o for o in stops if o["reason"] == "bore_low"]
    assert len(low) >= 4  # the scenario's well does reach it
    assert not [o for o in stops if o["reason"] == "dry_run"]
    assert "dry" not in [what for _t, what in truth["trace"]]  # the probe stayed wet
    bs = bursts(truth)
    for o in low:
        depth = [d for ms, d in bs if ms <= t_of(o) * 1000 + 999][-1]
        assert s["intake_m"] - s["margin_m"] - 0.05 <= depth < s["dry_probe_m"]


def test_no_motor_fault_when_there_is_none(sensors):
    objs, _truth = sensors
    reasons = {o.get("reason") for o in objs if o["kind"] == "event"}
    assert not reasons & {"motor_not_running", "motor_without_relay"}


def test_motor_faults_on_the_injected_days_only(motor_faults):
    objs, truth = motor_faults
    spans = {f["kind"]: (f["from"], f["to"]) for f in truth["sensors"]["faults"]}
    want = {"motor_not_running": "motor_trip", "motor_without_relay": "motor_bypass"}
    raised = [o for o in objs if o["kind"] == "event"
              and o["event"] == "fault_raised" and o["reason"] in want]  # fmt: skip
    assert {o["reason"] for o in raised} == set(want)
    for o in raised:
        a, b = spans[want[o["reason"]]]
        # seen at the next motor check (30 s) once the allowance (5 s) is over
        assert a <= t_of(o) <= b + 60, o
    for o in objs:  # each is cleared again once the fault is gone
        if (
            o["kind"] == "event"
            and o["event"] == "fault_cleared"
            and o["reason"] in want
        ):
            a, b = spans[want[o["reason"]]]
            assert a <= t_of(o) <= b + 120


def test_an_open_loop_is_a_fault_never_a_level(bore_open):
    objs, truth = bore_open
    (f,) = [f for f in truth["sensors"]["faults"] if f["sensor"] == "bore"]
    ms = [o for o in objs if o["kind"] == "measure"]
    inside = [o for o in ms if f["from"] + 61 <= t_of(o) < f["to"]]
    outside = [o for o in ms if not f["from"] <= t_of(o) < f["to"] + 61]
    assert len(inside) >= 130 and outside
    for o in inside:
        assert o["bore_head_cm"] is None and o["bore_depth_cm"] is None
        assert o["faults"] == ["bore"]
    for o in outside:
        assert o["bore_depth_cm"] is not None and o["faults"] == []
    # and the loop current the transducer gave was an open loop, not a level
    rows = [
        r for r in truth["sensors"]["bore"] if f["from"] * 1000 <= r[0] < f["to"] * 1000
    ]
    assert rows and all(r[2] == 0.0 for r in rows)
    # with no verdict from the sensor the pump still runs on the floats
    starts = [o for o in objs if o["kind"] == "event" and o["event"] == "pump_start"
              and f["from"] <= t_of(o) < f["to"]]  # fmt: skip
    assert starts


def test_decode_writes_measure_frames_in_every_format(sensors, tmp_path):
    from jalkal.decode.streams import write_table

    objs, _truth = sensors
    some = [o for o in objs if o["kind"] in ("measure", "reading")][:40]
    write_table(some, "csv", str(tmp_path / "m.csv"))
    write_table(some, "parquet", str(tmp_path / "m.parquet"))
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    for tb in (
        pcsv.read_csv(tmp_path / "m.csv"),
        pq.read_table(tmp_path / "m.parquet"),
    ):
        rows = tb.to_pylist()
        assert len(rows) == 40
        got = [r for r in rows if r["kind"] == "measure"]
        assert got and all(r["bore_depth_cm"] is not None for r in got)
