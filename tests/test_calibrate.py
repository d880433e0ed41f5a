"""jalkal provision's sensor settings and calibration (host/field/calibrate.py):
two-point pH and EC lines from buffer / standard readings, checked against the
physics of the probes (a glass electrode's Nernst slope, a conductivity board
linear in EC at the water's temperature) through the firmware's own quality
module and config validator; bad input refused with a clear line and nothing
written; a re-calibration keeps the rest of the board's sensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jalkal.cli import main
from jkfw import config as fwconfig
from jkfw import quality

BOARD = "esp32s3-devkitc-sim7600"
NERNST = 8.314462618 * 2.302585093 / 96485.33212  # V per K per pH unit


def electrode_mv(ph: float, temp_c: float) -> float:
    """A pH board's output: a glass electrode (0 V at pH 7, -59.16 mV per pH at
    25 C, proportional to absolute temperature) through a gain of 3 about 2.5 V."""
    e = -NERNST * (temp_c + 273.15) * (ph - 7)
    return (2.5 - 3.0 * e) * 1000


def ec_mv(ec25: float, temp_c: float) -> float:
    """A conductivity board: 1 V per 1000 uS/cm at the water's temperature; natural
    water's EC rises about 2 % per C (the linear model of ISO 7888)."""
    return ec25 * (1 + 0.02 * (temp_c - 25)) / 1000 * 1000


def run(tmp: Path, *extra: str, device: str | None = None) -> list[str]:
    args = ["provision", "--board", BOARD, "--village", "Rampur", "--population",
            "1250", "--out", str(tmp / "out"), "--keys", str(tmp / "keys.json"),
            "--villages", str(tmp / "villages.csv"), *extra]  # fmt: skip
    if device:
        args += ["--device", device, "--force"]
    return args


def snapshot(tmp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*")
            if p.is_file()}  # fmt: skip


def config(tmp: Path) -> dict:
    return json.loads((tmp / "out" / "config.json").read_text())


FULL = ("--bore", "in=ads0,shunt_ohm=150,range_m=50,install_m=45,intake_m=40",
        "--tank", "in=sonar,height_m=3,diameter_m=2.9,mount_mm=3300",
        "--ct-ratio", "30")  # fmt: skip


def ph_args(temp_c=25.0, date="2026-11-02"):
    return ["--ph-in", "ads2", "--cal-temp", str(temp_c), "--cal-date", date,
            "--ph-cal", f"{electrode_mv(7.00, temp_c):.1f}=7.00",
            "--ph-cal", f"{electrode_mv(4.01, temp_c):.1f}=4.01"]  # fmt: skip


def test_sensors_written_and_accepted_by_the_firmware(tmp_path, capsys):
    assert main(run(tmp_path, *FULL, *ph_args())) == 0
    out = capsys.readouterr().out
    raw = config(tmp_path)
    cfg, bad = fwconfig.validate(raw)
    assert bad == []
    assert cfg["bore"]["range_m"] == 50 and cfg["bore"]["install_m"] == 45
    assert cfg["bore"]["shunt_ohm"] == 150 and cfg["bore"]["intake_m"] == 40
    assert cfg["tank"]["in"] == "sonar" and cfg["tank"]["diameter_m"] == 2.9
    assert cfg["motor"] == dict(cfg["motor"], sense="ct", amps_per_volt=30.0)
    assert cfg["quality"]["ph_date"] == "2026-11-02"
    assert "sensor: pH on ads2: calibrated 2026-11-02" in out
    assert "sensor: borewell: 4-20 mA on ads0, range 50 m, installed at 45 m" in out


@settings(max_examples=60, deadline=None)
@given(
    cal_t=st.floats(15, 35),
    ph=st.floats(3, 11),
    temp=st.floats(5, 40),
)
def test_ph_two_point_matches_the_electrode(tmp_path_factory, cal_t, ph, temp):
    tmp = tmp_path_factory.mktemp("ph")
    assert main(run(tmp, *ph_args(cal_t))) == 0
    q = fwconfig.validate(config(tmp))[0]["quality"]
    meter = quality.PH(q["ph_slope"], q["ph_offset"], q["ph_temp_c"], q["ph_date"])
    got = meter.value(electrode_mv(ph, temp) / 1000, temp)
    assert got == pytest.approx(ph, abs=0.01)  # readings given to 0.1 mV


@settings(max_examples=40, deadline=None)
@given(cal_t=st.floats(18, 30), ec25=st.floats(50, 3000), temp=st.floats(10, 40))
def test_ec_two_point_matches_the_probe(tmp_path_factory, cal_t, ec25, temp):
    tmp = tmp_path_factory.mktemp("ec")
    args = ["--ec-in", "ads1", "--cal-temp", f"{cal_t}",
            "--ec-cal", f"{ec_mv(84, cal_t):.2f}=84",
            "--ec-cal", f"{ec_mv(1413, cal_t):.2f}=1413"]  # fmt: skip
    assert main(run(tmp, *args)) == 0
    raw = config(tmp)
    assert raw["quality"]["temp"] is True  # EC is compensated with the DS18B20
    q = fwconfig.validate(raw)[0]["quality"]
    ec = quality.Conductivity(q["ec_slope"], q["ec_offset"], q["tds_factor"],
                              date=q["ec_date"])  # fmt: skip
    got = ec.value(ec_mv(ec25, temp) / 1000, temp)
    assert got == pytest.approx(ec25, rel=0.002, abs=0.2)


def test_recalibration_keeps_the_other_sensors_and_the_device(tmp_path):
    assert main(run(tmp_path, *FULL, *ph_args(date="2026-05-01"))) == 0
    first = config(tmp_path)
    dev = first["device"]
    assert main(run(tmp_path, *ph_args(27.0, "2026-11-02"), device=dev)) == 0
    second = config(tmp_path)
    assert second["device"] == dev
    for k in ("bore", "tank", "motor"):
        assert second[k] == first[k]
    assert second["quality"]["ph_date"] == "2026-11-02"
    assert second["quality"]["ph_temp_c"] == 27.0
    assert second["quality"]["ph_slope"] != first["quality"]["ph_slope"]


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--bore", "in=ads0,range_m=5000,install_m=45"],
         "--bore range_m=5000: must be between 1 and 1000 m"),
        (["--bore", "in=ads9,range_m=50,install_m=45"], "--bore in=ads9: use one of"),
        (["--bore", "in=ads0,range=50"], "--bore range: not a bore setting"),
        (["--bore", "in=ads0,range_m=50"], "(bore: give install_m)"),
        (["--bore", "in=adc,range_m=50,install_m=45"], "needs an ADC1 pin bore_adc"),
        (["--bore", "in=ads0,range_m=50,install_m=45,shunt_ohm=200"],
         "a short (21 mA) would read 4.20 V"),
        (["--bore", "in=ads0,range_m=50,install_m=30,intake_m=40"],
         "intake_m is deeper than the transducer"),
        (["--tank", "in=sonar,height_m=3,diameter_m=2,mount_mm=2500"],
         "mount_mm (sonar face to the floor) must be above"),
        (["--ph-in", "ads2", "--ph-cal", "2500=7"], "--ph-cal needs two readings"),
        (["--ph-in", "ads2", "--ph-cal", "2500=7", "--ph-cal", "2500=4"],
         "both readings are 2500 mV"),
        (["--ph-in", "ads2", "--ph-cal", "2500=7", "--ph-cal", "2550=7.5"],
         "too close"),
        (["--ph-in", "ads2", "--ph-cal", "2500=7", "--ph-cal", "x=4"],
         "not a number"),
        (["--ph-in", "ads2", "--ph-cal", "2500=7", "--ph-cal", "3000=15"],
         "not a buffer"),
        (["--ph-cal", "2500=7", "--ph-cal", "3000=4"], "add --ph-in"),
        (["--ec-in", "ads1", "--ec-cal", "84=84", "--ec-cal", "1413=1413"],
         "--ec-cal needs --cal-temp"),
        (["--ec-in", "ads1", "--cal-temp", "25", "--ec-cal", "1413=84",
          "--ec-cal", "84=1413"], "lower for the stronger standard"),
        (["--ec-in", "ads1", "--cal-temp", "25", "--ec-cal", "84=84",
          "--ec-cal", "9000=1413"], "not an input's reading"),
        (["--ct-ratio", "0"], "--ct-ratio amps_per_volt=0"),
        (["--ct-ratio", "30", "--motor-aux"], "the motor has one sensor"),
        (["--ph-in", "ads2", "--cal-date", "2026-02-30", "--ph-cal", "2500=7",
          "--ph-cal", "3000=4"], "--cal-date '2026-02-30': use YYYY-MM-DD"),
        (["--ph-in", "ads2", "--cal-date", "2999-01-01", "--ph-cal", "2500=7",
          "--ph-cal", "3000=4"], "has not come yet"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_written(tmp_path, capsys, extra, says):
    assert main(run(tmp_path, *extra)) == 1
    err = capsys.readouterr().err
    assert says in err and err.startswith("jalkal: ") and "Traceback" not in err
    assert snapshot(tmp_path) == {}


def test_a_refused_recalibration_leaves_the_board_files(tmp_path, capsys):
    assert main(run(tmp_path, *FULL, *ph_args())) == 0
    dev = config(tmp_path)["device"]
    before = snapshot(tmp_path)
    bad = ["--ph-cal", "2500=7", "--ph-cal", "2510=4"]  # the probe barely moved
    assert main(run(tmp_path, "--ph-in", "ads2", *bad, device=dev)) == 1
    assert "jalkal: --ph-cal: the probe moved 3.3 mV per pH" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@settings(max_examples=80, deadline=None)
@given(
    opt=st.sampled_from(["--ph-cal", "--ec-cal", "--bore", "--tank"]),
    a=st.text(max_size=20),
    b=st.text(max_size=20),
)
def test_any_text_gives_an_answer_not_a_traceback(tmp_path_factory, opt, a, b):
    tmp = tmp_path_factory.mktemp("any")
    args = [opt, a] + ([opt, b] if opt.endswith("cal") else [])
    args += ["--ph-in", "ads2", "--ec-in", "ads1", "--cal-temp", "25"]
    code = main(run(tmp, *args))
    assert code in (0, 1, 2)
    if code:
        assert snapshot(tmp) == {}
