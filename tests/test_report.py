"""jalkal report: daily litres, lpcd and JJM band per village and local day."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jalkal.cli import main
from jalkal.decode import bulk
from jalkal.registry import Village, parse_villages
from jalkal.reports.daily import compute, daily
from jkproto import codec as c

KEY = bytes(range(32))
DEV = 0x0A1B2C3D
DEV2 = 0x11223344
IST = ZoneInfo("Asia/Kolkata")
D0 = int(datetime(2026, 3, 1, tzinfo=IST).timestamp())  # 2026-02-28T18:30:00Z
DAY = 86400
IV = 900
NET, NONE = 2, 0
K = 100  # pulses per m3: 10 litres a pulse
REG = {"0a1b2c3d": Village("0a1b2c3d", "Rampur", 500)}


class Log:
    """A device's frame stream built with the board's Encoder."""

    def __init__(self, device: int = DEV, boot: int = 1, key: bytes = KEY):
        self.enc = c.Encoder(device, key, boot=boot)
        self.buf = bytearray()

    def boot(self, t: int, interval: int = IV, k: int = K, tq: int = NET) -> None:
        self.buf += self.enc.frame(c.BOOT, t, tq, 1, 1, 0, 0, interval, 0, k)

    def reading(self, t: int, supply: int, pump_s: int = 0, tq: int = NET) -> None:
        self.buf += self.enc.frame(
            c.READING, t, tq, 0, supply % 2**32, pump_s, 0x10, 124, 21
        )

    def gap(self, t: int, start: int, seconds: int, tq: int = NET) -> None:
        self.buf += self.enc.frame(c.GAP, t, tq, 1, 23, 0xFFFFFFFF, start, seconds)

    def reboot(self, boot: int) -> None:
        self.enc.new_epoch(boot)

    def table(self) -> pa.Table:
        return bulk.decode(bytes(self.buf)).table


def day_pulses(log: Log, day: int, total: int, pulses: int, pump_s: int = 450,
               skip: tuple[int, ...] = ()) -> int:  # fmt: skip
    """Readings at 00:15 .. 24:00 of local day `day` (0 = 2026-03-01), pulses spread
    evenly; the midnight at the start is written by the previous day (or first)."""
    start = D0 + day * DAY
    n = DAY // IV
    for i in range(1, n + 1):
        add = pulses // n + (1 if i <= pulses % n else 0)
        total += add
        if i not in skip:
            log.reading(start + i * IV, total, pump_s)
    return total


def stream(
    pulses: tuple[int, ...] = (2750, 2400, 2000), start_total: int = 12345
) -> Log:
    log = Log()
    log.boot(D0 - 300)  # 23:55 the evening before
    log.reading(D0, start_total)
    total = start_total
    for d, p in enumerate(pulses):
        total = day_pulses(log, d, total, p)
    return log


def by_date(days: list[dict]) -> dict[str, dict]:
    return {r["date"]: r for r in days}


def test_complete_days_exact_litres_lpcd_band():
    days = daily(stream().table(), REG)
    assert [r["date"] for r in days] == [
        "2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03",
    ]  # fmt: skip
    first = days[0]  # the board came up at 23:55: one reading of 96 (the midnight)
    assert first["complete"] is False and first["completeness"] == 0.01
    assert first["lpcd"] is None and first["band"] is None and first["litres"] is None
    assert days[1] == {
        "village": "Rampur", "device": "0a1b2c3d", "date": "2026-03-01",
        "litres": 27500.0, "population": 500, "lpcd": 55.0, "band": "fully",
        "pump_hours": 12.0, "completeness": 1.0, "complete": True,
        "implausible_litres": 0.0,
    }  # fmt: skip
    assert (days[2]["litres"], days[2]["lpcd"], days[2]["band"]) == (
        24000.0, 48.0, "partially",
    )  # fmt: skip
    assert (days[3]["litres"], days[3]["lpcd"], days[3]["band"]) == (
        20000.0, 40.0, "non",
    )  # fmt: skip
    assert all(r["complete"] for r in days[1:])


def test_objects_give_the_same_days_as_the_table():
    t = stream().table()
    assert daily(bulk.to_objects(t), REG) == daily(t, REG)


def test_rounding_and_band_edges():
    # 27,49x litres / 500: 54.95 rounds half-up to 55.0 and is "fully"; 40.05 -> 40.1
    log = Log()
    log.boot(D0 - 300, k=1000)  # 1 litre a pulse
    log.reading(D0, 0)
    total = day_pulses(log, 0, 0, 27475)
    day_pulses(log, 1, total, 20025)
    d = by_date(daily(log.table(), REG))
    assert (d["2026-03-01"]["lpcd"], d["2026-03-01"]["band"]) == (55.0, "fully")
    assert (d["2026-03-02"]["lpcd"], d["2026-03-02"]["band"]) == (40.1, "partially")


def test_missing_reading_makes_the_day_incomplete_not_low():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = day_pulses(log, 0, 0, 1000, skip=(40,))
    day_pulses(log, 1, total, 2750)
    d = by_date(daily(log.table(), REG))
    r = d["2026-03-01"]
    assert r["complete"] is False and r["completeness"] == 0.99  # 95 / 96
    assert r["litres"] == 10000.0  # both midnights there: still the exact total
    assert r["lpcd"] is None and r["band"] is None
    assert d["2026-03-02"]["complete"] and d["2026-03-02"]["lpcd"] == 55.0


def test_missing_midnight_taints_both_days_and_has_no_litres():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = day_pulses(log, 0, 0, 2750, skip=(96,))
    day_pulses(log, 1, total, 2750)
    d = by_date(daily(log.table(), REG))
    for day in ("2026-03-01", "2026-03-02"):
        assert d[day]["complete"] is False and d[day]["litres"] is None
        assert d[day]["lpcd"] is None
    assert d["2026-03-01"]["completeness"] == 0.99
    assert d["2026-03-02"]["completeness"] == 1.0  # all 96, but no start midnight


def test_power_cut_with_gap_frame():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = 0
    for i in range(1, 41):  # up to 10:00
        total += 10
        log.reading(D0 + i * IV, total, 300)
    # power back at 14:05; the board lost the pulses since its 10:00 checkpoint
    log.reboot(2)
    log.boot(D0 + 14 * 3600 + 300)
    log.gap(D0 + 14 * 3600 + 310, D0 + 10 * 3600, 4 * 3600 + 310)
    for i in range(57, 97):
        total += 10
        log.reading(D0 + i * IV, total, 300)
    day_pulses(log, 1, total, 2750)
    d = by_date(daily(log.table(), REG))
    r = d["2026-03-01"]
    assert r["complete"] is False and r["lpcd"] is None and r["band"] is None
    assert r["completeness"] == round(80 / 96, 3)
    assert r["litres"] == 8000.0 and r["pump_hours"] == round(80 * 300 / 3600, 2)
    assert d["2026-03-02"]["complete"]


def test_gap_frame_alone_marks_the_day_incomplete():
    log = stream(pulses=(2750, 2750, 2750))
    # a gap inside day 2 (all readings present) and one with unknown start on day 3
    log.gap(D0 + DAY + 5 * 3600, D0 + DAY + 3600, 600)
    log.gap(D0 + 2 * DAY + 7200, 0, 0)
    d = by_date(daily(log.table(), REG))
    assert d["2026-03-01"]["complete"] is True
    for day in ("2026-03-02", "2026-03-03"):
        assert d[day]["completeness"] == 1.0
        assert d[day]["complete"] is False and d[day]["lpcd"] is None
        assert d[day]["litres"] == 27500.0


def test_gap_covering_several_days():
    log = stream(pulses=(2750, 2750, 2750))
    log.gap(D0 + 3 * DAY - 60, D0 + 3600, DAY + 7200)  # 01:00 day 1 .. 03:00 day 2
    d = by_date(daily(log.table(), REG))
    assert not d["2026-03-01"]["complete"] and not d["2026-03-02"]["complete"]
    assert d["2026-03-03"]["complete"]


def test_reading_without_clock_taints_the_days_around_it():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = 0
    for i in range(1, 97):
        total += 25
        log.reading(D0 + i * IV, total, 100)
        if i == 30:  # an extra reading with no clock between 07:30 and 07:45
            log.reading(1234, total, 100, tq=NONE)
    day_pulses(log, 1, total, 2750)
    d = by_date(daily(log.table(), REG))
    r = d["2026-03-01"]  # all 96 on the grid, but that reading's time is unknown
    assert r["completeness"] == 1.0 and r["complete"] is False and r["lpcd"] is None
    assert r["litres"] == 24000.0 and r["pump_hours"] == round(96 * 100 / 3600, 2)
    assert d["2026-03-02"]["complete"]


def test_grid_reading_without_clock_is_missing():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = 0
    for i in range(1, 97):
        total += 25
        log.reading(D0 + i * IV if i != 20 else 77, total, tq=NET if i != 20 else NONE)
    d = by_date(daily(log.table(), REG))
    r = d["2026-03-01"]
    assert r["complete"] is False and r["completeness"] == 0.99
    assert r["litres"] == 24000.0


def test_counter_unwraps_across_2_32():
    start = 2**32 - 1000
    d = by_date(daily(stream(pulses=(2750, 2400), start_total=start).table(), REG))
    assert d["2026-03-01"]["litres"] == 27500.0 and d["2026-03-01"]["complete"]
    assert d["2026-03-02"]["litres"] == 24000.0 and d["2026-03-02"]["lpcd"] == 48.0


def test_total_going_backwards_taints_the_day():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 5000)
    total = 5000
    for i in range(1, 97):
        total += 30
        if i == 50:  # restored from an older checkpoint after a power cut
            log.reboot(2)
            log.boot(D0 + i * IV - 100)
            total -= 200
        log.reading(D0 + i * IV, total)
    day_pulses(log, 1, total, 2750)
    d = by_date(daily(log.table(), REG))
    r = d["2026-03-01"]
    assert r["complete"] is False and r["lpcd"] is None and r["completeness"] == 1.0
    assert r["litres"] == 95 * 300.0  # best estimate: the backwards interval counts 0
    assert d["2026-03-02"]["complete"]


def test_k_factor_from_the_latest_boot_frame():
    log = Log()
    log.boot(D0 - 300)
    log.reading(D0, 0)
    total = day_pulses(log, 0, 0, 2750)
    log.reboot(2)  # meter replaced at midnight: 1 litre a pulse from here
    log.boot(D0 + DAY + 10, k=1000)
    day_pulses(log, 1, total, 24000)
    d = by_date(daily(log.table(), REG))
    assert d["2026-03-01"]["litres"] == 27500.0
    assert d["2026-03-02"]["litres"] == 24000.0 and d["2026-03-02"]["complete"]


def test_no_boot_frame_means_no_litres():
    log = stream()
    t = log.table()
    t = t.filter(pc.not_equal(t["kind"], c.BOOT))
    res = compute(t, REG)
    assert all(r["litres"] is None and not r["complete"] for r in res.days)
    assert res.notes and "boot frame" in res.notes[0]


def test_other_time_zone_moves_the_days():
    reg = {"0a1b2c3d": Village("0a1b2c3d", "Rampur", 500, tz="UTC")}
    d = by_date(daily(stream().table(), reg))
    # UTC midnight is 05:30 IST: the IST-midnight layout is not a UTC day
    assert d["2026-03-01"]["complete"] is True
    # 05:30 .. 24:00 IST of day 1: 40 readings of 29 pulses, 34 of 28; then 22 of 25
    assert d["2026-03-01"]["litres"] == (40 * 29 + 34 * 28 + 22 * 25) * 10.0


def test_mixed_devices_and_one_not_in_the_registry():
    a, b = stream(), Log(device=DEV2)
    b.boot(D0 - 300)
    b.reading(D0, 0)
    day_pulses(b, 0, 0, 1000)
    cut = 41 + 40 * 40  # a frame boundary
    mixed = bulk.decode(bytes(a.buf[:cut] + b.buf + a.buf[cut:])).table
    res = compute(mixed, REG)
    assert res.unknown == {"11223344": 98}
    assert res.days == daily(a.table(), REG)
    reg2 = dict(REG, **{"11223344": Village("11223344", "Anandpur", 250)})
    d = [r for r in daily(mixed, reg2) if r["complete"]]
    assert [(r["village"], r["date"], r["lpcd"]) for r in d][:2] == [
        ("Anandpur", "2026-03-01", 40.0),
        ("Rampur", "2026-03-01", 55.0),
    ]


def test_duplicate_frames_count_once():
    log = stream()
    t = bulk.decode(bytes(log.buf + log.buf)).table
    assert daily(t, REG) == daily(log.table(), REG)


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("device,village,pop\n", "line 1: unknown column(s) 'pop'"),
        ("device,village\n", "line 1: missing column(s) population"),
        ("device,village,population\n0a1b2c3d,Rampur,500\nxyz,B,3\n", "line 3: device"),
        ("device,village,population\n\n0a1b2c3d,Rampur,-5\n", "line 3: population"),
        ("device,village,population\n0a1b2c3d,Rampur\n", "line 2: 2 fields"),
        ("device,village,population,tz\n0a1b2c3d,R,5,Mars/Base\n", "unknown time zone"),
        (
            "device,village,population\n0a1b2c3d,A,5\n0A1B2C3D,B,6\n",
            "line 3: device 0a1b2c3d is already on line 2",
        ),
        ("", "empty"),
    ],
)
def test_bad_villages_file(text, msg):
    from jalkal.errors import JalkalError

    with pytest.raises(JalkalError) as e:
        parse_villages(text, "v.csv")
    assert msg in str(e.value)


def test_villages_file_optional_columns():
    reg = parse_villages(
        "\ufeffdevice,village,population,block,district,state,tz\n"
        "0A1B2C3D,Rampur,500,Kotra,Raigarh,Chhattisgarh,\n"
    )
    assert reg["0a1b2c3d"] == Village(
        "0a1b2c3d", "Rampur", 500, "Kotra", "Raigarh", "Chhattisgarh", "Asia/Kolkata"
    )


# --- the command ------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    log = stream()
    other = Log(device=DEV2)
    other.boot(D0)
    d = tmp_path / "sd"
    d.mkdir()
    # SD files rotate at frame boundaries (boot frame 41 bytes + 75 readings)
    (d / "a.bin").write_bytes(bytes(log.buf[:3041]))
    (d / "b.bin").write_bytes(bytes(log.buf[3041:]))
    (tmp_path / "other.bin").write_bytes(bytes(other.buf))
    v = tmp_path / "villages.csv"
    v.write_text("device,village,population,district\n0a1b2c3d,Rampur,500,Raigarh\n")
    return tmp_path, log


def test_cli_json(files, capsys):
    tmp, log = files
    vil = str(tmp / "villages.csv")
    rc = main(["report", str(tmp / "sd"), str(tmp / "other.bin"),
               "--villages", vil, "--format", "json"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0
    assert json.loads(cap.out) == {"days": daily(log.table(), REG)}
    assert list(json.loads(cap.out)["days"][0]) == [
        "village", "device", "date", "litres", "population", "lpcd", "band",
        "pump_hours", "completeness", "complete", "implausible_litres",
    ]  # fmt: skip
    assert "device 11223344 is not in the villages file" in cap.err


def test_cli_csv(files, capsys):
    tmp, _ = files
    assert main(["report", str(tmp / "sd"), "--villages",
                 str(tmp / "villages.csv"), "--format", "csv"]) == 0  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    assert rows[0]["lpcd"] == "" and rows[0]["complete"] == "false"
    assert rows[1] == {
        "village": "Rampur", "device": "0a1b2c3d", "date": "2026-03-01",
        "litres": "27500.0", "population": "500", "lpcd": "55.0", "band": "fully",
        "pump_hours": "12.0", "completeness": "1.0", "complete": "true",
        "implausible_litres": "0.0",
    }  # fmt: skip


def test_cli_table(files, capsys):
    tmp, _ = files
    assert (
        main(["report", str(tmp / "sd"), "--villages", str(tmp / "villages.csv")]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("Rampur (Raigarh)\n")
    assert "2026-03-01  27,500" in out and "incomplete" in out
    assert (
        "3 of 4 days complete; mean lpcd 47.7 (complete days); "
        "fully 1, partially 1, non 1" in out
    )


def test_cli_keys_counts_only_verified_frames(files, capsys):
    tmp, log = files
    keys = tmp / "keys.json"
    keys.write_text(json.dumps({"devices": {"0a1b2c3d": {"key": KEY.hex()}}}))
    forged = Log(key=bytes(32), boot=9)  # right device, wrong key
    forged.reading(D0 + DAY + 3600, 1, 3600)
    forged.reading(D0 + DAY + 3601, 2, 3600)
    (tmp / "sd" / "c.bin").write_bytes(bytes(forged.buf))
    rc = main(["report", str(tmp / "sd"), "--villages", str(tmp / "villages.csv"),
               "--keys", str(keys), "--format", "json"])  # fmt: skip
    cap = capsys.readouterr()
    assert rc == 0
    assert "2 frames failed MAC check, not counted" in cap.err
    assert json.loads(cap.out)["days"] == daily(log.table(), REG)


def test_cli_bad_villages_file(files, capsys):
    tmp, _ = files
    bad = tmp / "bad.csv"
    bad.write_text("device,village,population\n0a1b2c3d,Rampur,many\n")
    assert main(["report", str(tmp / "sd"), "--villages", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jalkal: villages file ") and "line 2: population" in err
    assert main(["report", str(tmp / "sd")]) == 2  # a usage error
    assert "--villages" in capsys.readouterr().err


def test_cli_plot_writes_png(files, capsys):
    pytest.importorskip("matplotlib")
    tmp, _ = files
    png = tmp / "lpcd.png"
    assert main(["report", str(tmp / "sd"), "--villages", str(tmp / "villages.csv"),
                 "--format", "json", "--plot", str(png)]) == 0  # fmt: skip
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_year_of_one_device_is_fast():
    log = Log()
    log.boot(D0 - 300)
    total = 0
    log.reading(D0, 0)
    for i in range(1, 365 * 96 + 1):
        total += 29
        log.reading(D0 + i * IV, total, 300)
    t = log.table()
    t0 = time.perf_counter()
    days = daily(t, REG)
    took = time.perf_counter() - t0
    assert len(days) == 366 and sum(r["complete"] for r in days) == 365
    assert {r["lpcd"] for r in days if r["complete"]} == {55.7}  # 55.68
    assert took < 1.0, f"{took:.2f} s for a year"


def test_report_has_no_day_after_the_last_midnight():
    log = stream(pulses=(2750,))
    days = daily(log.table(), REG)
    assert [r["date"] for r in days][-1] == "2026-03-01"


def test_interval_that_misses_local_midnight():
    log = Log()
    log.boot(D0 - 300, interval=3600)  # UTC hours: 05:30 past the hour in IST
    for i in range(50):
        log.reading(D0 - 1800 + i * 3600, i * 10, 600)
    res = compute(log.table(), REG)
    r = by_date(res.days)["2026-03-01"]
    assert r["completeness"] == 1.0 and r["complete"] is False
    assert r["litres"] is None and r["pump_hours"] == 4.0
    assert "misses local midnight" in res.notes[0]


def test_half_hour_interval():
    log = Log()
    log.boot(D0 - 300, interval=1800)
    for i in range(49):
        log.reading(D0 + i * 1800, i * 50)
    r = by_date(daily(log.table(), REG))["2026-03-01"]
    assert r["complete"] and r["litres"] == 24000.0 and r["lpcd"] == 48.0
