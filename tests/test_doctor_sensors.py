"""jalkal doctor's sensor lines (host/field/doctor_sensors.py): the wording of each
sensor's line and fault, and the whole path on the virtual board: provision with
the sensors and their calibration, deploy, doctor — each value against the true
value of the vboard's plant (jkvb.truth()), then with the loop open, the DS18B20
gone and the motor tripped."""

from __future__ import annotations

import json
import re

import pytest
from fieldtools_util import VBoard, jalkal, mpremote

from jalkal.field import doctor_sensors as ds

BOARD = "esp32s3-devkitc-sim7600"


def test_lines_for_each_sensor_and_fault():
    d = ds.describe
    assert d(["bore", 11.84, 20.69, 24.31, "ok", 150]) == (
        "borewell", True,
        "11.84 mA → 24.31 m below ground (20.69 m above the sensor)", "")  # fmt: skip
    name, ok, text, fix = d(["bore", 0.0, None, None, "open", 150])
    assert (name, ok, text) == (
        "borewell",
        False,
        "fault: open loop (0.00 mA < 3.6 mA)",
    )
    assert "cable" in fix
    assert d(["bore", 24.9, None, None, "short", 150])[2] == (
        "fault: short (24.90 mA > 21 mA)"
    )
    assert d(["bore", None, None, None, "absent", 150])[2].startswith("fault: absent")
    name, ok, text, fix = d(["bore", 4.0, 0.0, 45.0, "ok", 150])  # out of water
    assert (
        not ok
        and text
        == (
            "4.00 mA → no water above the sensor: the level is 45.00 m below ground "
            "or deeper"
        )
        and "out of the water" in fix
    )
    assert d(["ph", 1.432, 7.21, "ok", "2026-11-02", None], "2026-12-07")[2] == (
        "1,432 mV → 7.21, calibrated 2026-11-02 (35 days ago)"
    )
    name, ok, text, fix = d(["ph", 2.5, None, "cal", "", None])
    assert not ok and text == "not calibrated" and "--ph-cal" in fix
    assert d(["ec", 0.7, 650.4, 416.3, "ok", "2026-11-02"], "2026-11-03")[2] == (
        "700 mV → 650 µS/cm at 25 °C, TDS 416 mg/L, calibrated 2026-11-02 (1 day ago)"
    )
    assert d(["temp", None, "absent", None])[2] == (
        "fault: absent (no DS18B20 answers on the 1-Wire pin)"
    )
    assert d(["sonar", 2512, 2512, 0.788, 5205.2, "ok", 19816.0])[2] == (
        "2,512 mm to the water → level 0.79 m, 5,205 L of 19,816 L"
    )
    assert d(["sonar", None, -1, None, None, "absent", 19816.0])[2] == (
        "fault: absent (no frame from the sensor)"
    )
    assert d(["motor", "ct", 8.02, True, "ok"])[2] == "8.02 A RMS (CT) → running"
    assert d(["motor", "aux", None, False, "ok"])[2] == (
        "auxiliary contact open → stopped"
    )
    assert d(["volts", "supply", 1.1092, 12.2, "ok"]) == (
        "supply",
        True,
        "1.109 V at the input → 12.20 V",
        "",
    )
    assert d(["refused", ["bore"]])[:2] == ("sensors", False)


NUM = r"-?\d[\d,]*\.?\d*"


def nums(line):
    """The numbers of a doctor line's detail (after the name column)."""
    return [float(x.replace(",", "")) for x in re.findall(NUM, line[15:])]


def doctor(port):
    rc, out, err = jalkal("doctor", "--port", port, "--no-restart")
    got = {}
    for ln in out.splitlines():
        if ln[:1] in "✓✗–":
            got[ln[2:15].strip()] = ln
    return out, got


@pytest.mark.micropython
def test_doctor_reads_the_sensors_on_the_vboard(mpy, tmp_path):
    pytest.importorskip("mpremote")
    # the vboard's pH board gives 2.5 V at pH 7.00 and 3.0246 V at 4.01 (25 C), its
    # EC board 1 mV per uS/cm (sim/vboard/jkvbsense.py): buffers read on site
    rc, out, err = jalkal(
        "provision", "--board", BOARD, "--village", "Rampur", "--population", 500,
        "--out", tmp_path / "prov",
        "--bore", "in=ads0,shunt_ohm=150,range_m=50,install_m=45,intake_m=40",
        "--tank", "in=sonar,height_m=3,diameter_m=2.9,mount_mm=3300",
        "--ph-in", "ads2", "--ph-cal", "2500=7.00", "--ph-cal", "3024.6=4.01",
        "--ec-in", "ads1", "--ec-cal", "84=84", "--ec-cal", "1413=1413",
        "--cal-temp", 25, "--cal-date", "2026-11-02", "--ct-ratio", 30,
        "--set", 'volts={"supply": {"in": "adc", "r_top": 100000, '
        '"r_bottom": 10000}}',
    )  # fmt: skip
    assert rc == 0, err
    cfg = tmp_path / "prov" / "config.json"
    vb = VBoard(tmp_path / "flash", "--board", BOARD)
    try:
        # a full tank: the pump stays off and the borewell at rest while we look
        mpremote(vb.port, "exec", "import jkvb; jkvb.set(tank=15000)")
        jalkal("deploy", "--port", vb.port, "--config", cfg, "--boot-wait", 2)
        out, got = doctor(vb.port)
        truth = eval(mpremote(vb.port, "exec", "import jkvb; print(jkvb.truth())")
                     .stdout.decode().strip())  # fmt: skip
        assert got["borewell"].startswith("✓ borewell     11.68 mA → 21.00 m below")
        ma, depth, head = nums(got["borewell"])
        assert depth == pytest.approx(truth["bore_depth_m"], abs=0.01)
        assert head == pytest.approx(truth["bore_head_m"], abs=0.01)
        assert got["tank"].startswith("✓ tank")
        mm, level, litres, cap = nums(got["tank"])
        assert level == pytest.approx(truth["tank_level_m"], abs=0.01)
        assert litres == pytest.approx(truth["tank_l"], rel=0.01)
        assert got["water temp"].startswith("✓ water temp")
        temp = nums(got["water temp"])[0]
        assert temp == pytest.approx(truth["water_c"], abs=0.07)
        assert got["pH"].startswith("✓ pH")
        assert "calibrated 2026-11-02" in got["pH"]
        ph = nums(got["pH"])[1]
        assert ph == pytest.approx(truth["ph"], abs=0.02)
        assert got["EC / TDS"].startswith("✓ EC / TDS")
        _mv, ec, _t, tds = nums(got["EC / TDS"])[:4]
        assert ec == pytest.approx(truth["ec25_us"], abs=2)
        assert tds == pytest.approx(truth["tds_mgl"], abs=2)
        assert got["motor"] == "✓ motor        0.00 A RMS (CT) → stopped"
        assert got["supply"].endswith("→ 12.20 V")

        mpremote(vb.port, "exec", "import jkvb; jkvb.fault('bore', 'open'); "
                 "jkvb.fault('temp', 'open')")  # fmt: skip
        out, got = doctor(vb.port)
        assert got["borewell"] == ("✗ borewell     fault: open loop (0.00 mA < 3.6 mA)")
        assert "fix: check the cable, its terminals and the loop supply" in out
        assert got["water temp"].startswith("✗ water temp   fault: absent")
        # EC is compensated by the temperature: without it, no value
        assert got["EC / TDS"].startswith("✗ EC / TDS     fault: absent")
        assert got["pH"].startswith("✓ pH")  # pH reads on, uncompensated
    finally:
        assert vb.stop() == 0
    assert json.loads(cfg.read_text())["quality"]["ph_date"] == "2026-11-02"
