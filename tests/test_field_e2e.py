"""The field tools in one chain, as a technician uses them, against the plant's truth.

provision → deploy at the bench (a virtual board) → the board powered up in the pump
house (the same flash, a new virtual board whose clock runs SPEED times faster and
starts shortly before a local midnight) → a day and a bit of board time → doctor →
pull → decode → report → deploy again. The report's litres for the one complete day
must be the frames' own sum and the village's real draw: the virtual board's plant
draws a fixed profile (sim/vboard/jkvb.py: 1.2 L/s from 06:00 to 09:00 and 17:00 to
20:00 local time, 0.3 L/s otherwise, 45,360 L a day) and says what went through its
meters (`jkvb.status()`). The real mpremote transport is underneath every command.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
from fieldtools_util import VBoard, jalkal, mpremote, provision

from jalkal.field.deploy import package_sources

N_FILES = len(package_sources())  # the firmware files deploy copies

pytestmark = pytest.mark.micropython

SPEED = 3600  # a board hour in a second
BENCH = datetime.fromisoformat("2026-03-01T18:00:00+05:30")  # deployed at the bench
SITE = datetime.fromisoformat("2026-03-01T23:30:00+05:30")  # powered up on site
DAY = "2026-03-02"  # the one whole local day the board sees
UNTIL = datetime.fromisoformat("2026-03-03T00:40:00+05:30")  # the board's, at doctor
TZ_S = 330 * 60  # the village's time zone (provision's default, Asia/Kolkata)
PEAK_LPS, BASE_LPS, PEAKS = 1.2, 0.3, ((6, 9), (17, 20))  # the plant's draw
LPP = 10.0  # litres per pulse, provision's default
QUANTUM_L = 2 * LPP  # a pulse at each end of a sum


@pytest.fixture(scope="module")
def tools(mpy):
    pytest.importorskip("mpremote")
    return mpy


def drawn(t0: float, t1: float) -> float:
    """Litres the village draws between two UTC times (Unix seconds), by the
    plant's profile (the tank never runs dry here: the pump lifts 5 L/s)."""
    litres, t = 0.0, t0
    while t < t1:
        local = t + TZ_S
        end = min(t1, t + 3600 - local % 3600)  # the draw changes on the hour
        h = int(local // 3600) % 24
        lps = PEAK_LPS if any(a <= h < b for a, b in PEAKS) else BASE_LPS
        litres += lps * (end - t)
        t = end
    return litres


def utc_s(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def marks(out: str) -> dict[str, str]:
    """doctor's screen: check name -> its line (✓, ✗ or – first)."""
    return {ln[2:].split()[0]: ln for ln in out.splitlines() if ln[:1] in "✓✗–"}


def test_provision_deploy_doctor_pull_report(tools, tmp_path):
    t_start = time.monotonic()
    cfg = provision(tmp_path, "--set", "display=none")  # population 500, 900 s
    prov = cfg.parent
    device = json.loads(cfg.read_text())["device"]
    flash = tmp_path / "flash"

    # at the bench: a deploy onto a board with MicroPython and nothing else
    vb = VBoard(flash, "--clock-start", BENCH.isoformat())
    try:
        rc, out, err = jalkal("deploy", "--port", vb.port, "--config", cfg,
                              "--boot-wait", 2, check=0)  # fmt: skip
        assert f"copied {N_FILES} of {N_FILES} files" in err, err
        assert "the board runs jkfw 0.1.0 build" in err and "/app/a" in err, err
    finally:
        assert vb.stop() == 0

    # on site: power on, the firmware boots from its slot and runs the plant
    vb = VBoard(flash, "--speed", str(SPEED), "--clock-start", SITE.isoformat())
    try:
        up = time.monotonic()
        time.sleep((UNTIL - SITE).total_seconds() / SPEED - (time.monotonic() - up))

        rc, out, err = jalkal("doctor", "--port", vb.port)
        got = marks(out)
        assert got["MicroPython"].startswith("✓ MicroPython  1.29.0"), out
        assert got["config"].startswith(f"✓ config       device {device}"), out
        assert f"all {N_FILES} files match" in got["firmware"], out
        assert got["SD"].startswith("✓ SD card      mounted"), out
        assert got["flash"].startswith("✓ flash"), out
        assert got["switches"].startswith("✓ switches     dry off"), out
        assert got["meters"].startswith("✓ meters       over the last"), out
        assert got["free"].startswith("✓ free heap"), out
        # the board's clock is a simulated March night, far from this laptop's
        assert got["clock"].startswith("✗ clock        2026-03-0"), out
        assert "fix: jalkal doctor --set-clock" in out
        # no modem behind the virtual board's UART: ✗, never a made-up ✓
        assert got["modem"].startswith("✗ modem        no answer to AT"), out
        assert got["last"].startswith("– last upload  no uplink configured"), out
        assert rc == 1 and "jalkal: 2 checks failed" in err, err

        # pull, and leave the firmware stopped to compare with the plant
        pulled = tmp_path / "pulled"
        rc, out, err = jalkal("pull", "--port", vb.port, "--out", pulled,
                              "--no-restart", check=0)  # fmt: skip
        assert "all verified (sha256)" in out and "CRC ok" in out, out
        expr = "(__import__('jkvb').status(), __import__('time').time())"
        st, board_now = eval(
            mpremote(vb.port, "resume", "exec", f"print(repr({expr}))").stdout.decode()
        )

        # deploying the same again copies nothing and boots the same slot
        rc, out, err = jalkal("deploy", "--port", vb.port, "--config", cfg,
                              "--boot-wait", 2, check=0)  # fmt: skip
        assert (
            f"copied 0 of {N_FILES} files, 0.0 KB; {N_FILES} unchanged; "
            "config.json unchanged" in (err)
        ), err
        assert "firmware unchanged in /app/a" in err, err
        assert "the board runs jkfw 0.1.0 build" in err, err
    finally:
        assert vb.stop() == 0

    # the pulled logs decode, every frame verified by its key
    logs = pulled / device
    rc, out, err = jalkal("decode", logs, "--keys", prov / "keys.json", "--stats",
                          check=0)  # fmt: skip
    frames = [json.loads(line) for line in out.splitlines()]
    broken = [  # should a break show: it and the two frames before it
        [{k: g.get(k) for k in ("boot", "seq", "kind", "t", "chain")}
         for g in frames[max(0, i - 2) : i + 1]]
        for i, f in enumerate(frames) if f.get("chain") == "break"
    ]  # fmt: skip
    files = {p.name: p.stat().st_size for p in sorted(logs.rglob("*")) if p.is_file()}
    for clean in ("0 CRC failures", "0 MAC failures", "0 chain breaks",
                  "0 bytes skipped"):  # fmt: skip
        assert f" {clean}" in err, (err, broken, files)
    assert frames and all(f["verified"] for f in frames)
    boots = [f for f in frames if f["kind"] == "boot"]
    # the bench's boot after the deploy, power-on on site, doctor's restart
    assert [b["reset"] for b in boots][1:] == ["power_on", "soft"], boots
    site = boots[1]["boot"]
    readings = [f for f in frames if f["kind"] == "reading" and f["boot"] >= site]
    assert all(utc_s(f["ts"]) >= SITE.timestamp() for f in readings)

    # the report on the pulled logs: the whole day is complete
    args = ["--villages", prov / "villages.csv", "--keys", prov / "keys.json"]
    rc, out, err = jalkal("report", logs, *args, "--format", "json", check=0)
    days = {d["date"]: d for d in json.loads(out)["days"]}
    day = days[DAY]
    late = [f["ts"] for f in readings if utc_s(f["ts"]) % 900]  # the board stalled
    assert day["complete"] and day["village"] == "Testpur", (day, late)

    # ... its litres are the frames' own: the supply total (pulses since the board
    # was first deployed) at the day's closing midnight less the one at its opening
    lo = datetime.fromisoformat(f"{DAY}T00:00:00+05:30").timestamp()
    hi = lo + 86400
    total = {utc_s(f["ts"]): f["supply_pulses"] for f in readings}
    assert day["litres"] == pytest.approx(LPP * (total[hi] - total[lo]), abs=0.5)
    # ... and what the village drew that day (45,360 L)
    assert drawn(lo, hi) == pytest.approx(45360)
    assert day["litres"] == pytest.approx(45360, abs=QUANTUM_L + BASE_LPS * 60)
    assert day["lpcd"] == pytest.approx(45360 / 500, abs=0.2)
    assert day["band"] == "fully"

    # every litre the plant's supply meter saw since power-on is in the frames, up
    # to the water drawn after the last reading (the firmware is stopped now)
    bench = [f for f in frames if f["kind"] == "reading" and f["boot"] < site]
    metered = LPP * (readings[-1]["supply_pulses"] - bench[-1]["supply_pulses"])
    after = drawn(utc_s(readings[-1]["ts"]), board_now)
    # ... and what went by while doctor soft-reset the board: before the reset the
    # stopped firmware logged what its counters saw at the REPL (a reading), and the
    # next boot's counters start from zero (a soft reset clears them, as on an ESP32)
    unmetered = []
    for i, f in enumerate(frames):
        if f["kind"] == "boot" and f["boot"] > site:
            before = frames[i - 1]
            assert before["kind"] == "reading" and before["boot"] == f["boot"] - 1
            unmetered.append(drawn(utc_s(before["ts"]), utc_s(f["ts"])))
    assert len(unmetered) == 1
    assert metered + after + sum(unmetered) == pytest.approx(
        st["supply_l"], abs=QUANTUM_L * 2 + 5
    )
    # the pump's water: the source meter, within what the pump (5 L/s) could lift
    # after the last reading
    lifted = LPP * (readings[-1]["source_pulses"] - bench[-1]["source_pulses"])
    assert lifted <= st["source_l"] + LPP
    assert st["source_l"] - lifted <= LPP + 5 * (board_now - utc_s(readings[-1]["ts"]))
    assert st["pump_starts"] >= 2 and not st["pump"], st

    # the table a technician reads shows the same day and band
    rc, out, err = jalkal("report", logs, *args, check=0)
    row = next(ln for ln in out.splitlines() if DAY in ln)
    assert f"{day['litres']:,.0f}" in row or f"{day['litres']:.0f}" in row, row
    assert "fully" in row, row
    assert time.monotonic() - t_start < 90  # the whole chain: about 50 s here
    assert timedelta(seconds=board_now - SITE.timestamp()) > UNTIL - SITE
