"""What a person reads: numbers with thousands separators, durations in words, a
count with its noun in the right number, table heads without a legend, and on a
fresh board (no config.json, or one lacking settings) messages that name what is
missing and what to do. The field tools run in-process on the recording fake board
(tests/fake_board.py), as in tests/test_field_inprocess.py."""

from __future__ import annotations

import io
import json
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from fake_board import FakeBoard

import jkboards
from jalkal.console import duration, plural
from jalkal.errors import JalkalError
from jalkal.field import deploy, doctor, monitor, pull
from jalkal.ingest.replay import time_left
from jalkal.registry import Village
from jalkal.reports.periods import PERIOD_SCHEMA
from jalkal.reports.render import to_table, to_text
from jkfw.logger import FrameLog
from jkproto import codec

DEVICE = "0a1b2c3d"
KEY = bytes(range(32))
BOARD = "esp32-devkitc-sim800l"
PINS = jkboards.load(BOARD)["pins"]
DAY = 86400
UNSET_CLOCK = 946684800  # 2000-01-01: an ESP32 RTC never set


# --- words for numbers and time ---------------------------------------------------


def test_counts_take_the_right_number():
    assert plural(0, "file") == "0 files"
    assert plural(1, "file") == "1 file"
    assert plural(2, "file") == "2 files"
    assert plural(12345, "frame") == "12,345 frames"
    assert plural(1, "try", "tries") == "1 try"
    assert plural(7, "try", "tries") == "7 tries"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0.2, "0.2 seconds"), (1, "1 second"), (2, "2 seconds"), (45, "45 seconds"),
        (75, "1 minute 15 seconds"), (600, "10 minutes"), (3660, "1 hour 1 minute"),
        (11520, "3 hours 12 minutes"), (7200, "2 hours"), (36000, "10 hours"),
        (DAY, "1 day"), (2 * DAY + 4 * 3600, "2 days 4 hours"),
        (-24102998, "279 days"), (400 * DAY, "400 days"),
        (time.time() - UNSET_CLOCK, "26 years"),
    ],
)  # fmt: skip
def test_durations_in_words(seconds, words):
    if words == "26 years":  # how long ago 2000 was: at least 26 years
        assert duration(seconds).endswith(" years")
        assert int(duration(seconds).split()[0]) >= 26
    else:
        assert duration(seconds) == words


def test_replay_says_the_time_left():
    assert time_left(2, 100, 1000) == ""  # too early to tell
    assert time_left(60, 100, 1000) == ", about 9 minutes left"
    assert time_left(60, 1000, 1000) == ""


# --- tables ----------------------------------------------------------------------


def period_row(village: str | None, litres: float, **over) -> dict:
    r = dict.fromkeys(PERIOD_SCHEMA.names)
    r.update(
        period="2026-03", start=date(2026, 3, 1), end=date(2026, 3, 31),
        state="Chhattisgarh", district="Raigarh", block="Kotra", village=village,
        villages=1, population=1250, days=31, days_complete=29, completeness=0.94,
        litres=litres, mean_lpcd=56.3, days_fully=20, days_partially=6, days_non=3,
        days_incomplete=2, days_with_supply=30, months=1, months_with_supply=1,
        supply_hours=212.5, start_sd_min=35.2, pump_hours=1180.25, lockouts=2,
        power_off_hours=14.0, faults_raised=1, quantity="fully",
        regularity="partially", quality="fully", functionality="partially",
    )  # fmt: skip
    r.update(over)
    return r


def test_period_table_heads_need_no_legend():
    rows = [period_row("Chandpur", 1234567.0, note="over 29 complete days"),
            period_row("Rampur", 45678.4, start_sd_min=None, functionality=None,
                       note="insufficient data: 12 of 31 days complete")]  # fmt: skip
    text = to_text(pa.Table.from_pylist(rows, schema=PERIOD_SCHEMA))
    first, second, *lines = text.splitlines()
    assert first.startswith("period ")
    heads = set(first.split()) | set(second.split())
    for word in ("complete", "litres", "mean", "lpcd", "fully", "partially", "non",
                 "incomplete", "supplied", "supply", "hours", "start", "spread",
                 "pump", "lockouts", "power", "off", "quantity", "regularity",
                 "quality", "class", "note"):  # fmt: skip
        assert word in heads, word
    for old in ("compl", "part", "incompl", "sd", "d", "h", "qty", "reg"):
        assert old not in heads, old
    assert "f/p/n" not in text
    # a two-line head reads down its column: "days" over "complete", right-aligned
    end = first.index("days") + len("days")
    assert second[end - len("complete") : end] == "complete"
    chandpur, rampur = lines
    assert "1,234,567" in chandpur and "45,678" in rampur  # whole litres, grouped
    assert "1,180.2" in chandpur  # pump hours
    assert "35 min" in chandpur and " - " in rampur  # no start spread: "-"
    assert chandpur.split()[-8:] == ["fully", "partially", "fully", "partially",
                                     "over", "29", "complete", "days"]  # fmt: skip
    note = "insufficient data: 12 of 31 days complete"
    assert rampur.endswith(note)  # no class, and the note says why
    assert rampur[: -len(note)].split()[-4:] == ["fully", "partially", "fully", "-"]


def test_group_period_table_leaves_the_class_to_the_note():
    note = "2 villages: 1 fully, 0 partially, 1 non, 0 insufficient data"
    row = period_row(None, 2000000.0, quantity=None, regularity=None, quality=None,
                     functionality=None, villages=2, villages_fully=1,
                     villages_partially=0, villages_non=1, villages_insufficient=0,
                     note=note)  # fmt: skip
    text = to_text(pa.Table.from_pylist([row], schema=PERIOD_SCHEMA), "block")
    assert text.startswith("period ") and "Kotra (Raigarh, Chhattisgarh)" in text
    assert "quantity" not in text and "class" not in text
    assert text.rstrip().endswith(note) and "2,000,000" in text


def test_daily_table_heads_in_words():
    days = [
        dict(village="Rampur", device=DEVICE, date="2026-03-01", litres=27500.0,
             population=1250, lpcd=22.0, band="fully", pump_hours=11.5,
             completeness=0.969, complete=True),
        dict(village="Rampur", device=DEVICE, date="2026-03-02", litres=None,
             population=1250, lpcd=None, band=None, pump_hours=0.0,
             completeness=0.4, complete=False),
    ]  # fmt: skip
    text = to_table(days, {DEVICE: Village(DEVICE, "Rampur", 1250)})
    head = text.splitlines()[1].split()
    assert head == ["device", "date", "litres", "population", "lpcd", "band",
                    "pump", "hours", "coverage", "complete"]  # fmt: skip
    assert "1,250" in text and "96.9%" in text and "40.0%" in text
    assert "2026-03-01  27,500" in text  # whole litres, grouped


# --- monitor ---------------------------------------------------------------------


def frame_lines(*frames: bytes) -> bytes:
    return b"".join(b"jkf " + f.hex().encode() + b"\r\n" for f in frames)


def test_monitor_shows_litres_once_the_boot_frame_gave_the_meters():
    enc = codec.Encoder(int(DEVICE, 16), KEY, boot=7)
    reading = (codec.READING, 1772324100, 1, 123456, 5, 300, 24, 0, 99)
    data = frame_lines(
        bytes(enc.frame(*reading)),  # before the boot frame: pulses only
        # source 100 pulses per m³ (10 L each), supply 400 (2.5 L each)
        bytes(enc.frame(codec.BOOT, 5, 0, 1, 0, 1, 0, 900, 100, 400)),
        bytes(enc.frame(*reading)),
        bytes(enc.frame(codec.GAP, 1772324100, 1, 1, 0, 1234, 1772324000, 60)),
        bytes(enc.frame(codec.HEARTBEAT, 1772324100, 1, 60, 90000, 0, 15, 1)),
    )
    out = io.StringIO()
    p = monitor.Printer(out, {DEVICE: codec.Signer(KEY)})
    p.feed(data + b"jkf 0ff\r\n")
    lines = [ln.split(" ", 1)[1] for ln in out.getvalue().splitlines()]
    assert " L" not in lines[0]
    assert "source_pulses 123456 supply_pulses 5 pump_s 300" in lines[2]
    assert lines[2].endswith("(totals: source 1,234,560 L, supply 12.5 L)  [MAC ok]")
    assert "meter supply" in lines[3] and lines[3].endswith("(3,085 L)  [MAC ok]")
    assert " L)" not in lines[4]  # a heartbeat counts no water
    assert lines[5] == "frame? 0ff (odd number of hex digits: cut short)"


def test_monitor_learns_no_meters_from_a_forged_boot_frame():
    enc = codec.Encoder(int(DEVICE, 16), bytes(32), boot=7)  # not the device's key
    data = frame_lines(
        bytes(enc.frame(codec.BOOT, 5, 0, 1, 0, 1, 0, 900, 1, 1)),
        bytes(enc.frame(codec.READING, 1772324100, 1, 10, 5, 300, 24, 0, 99)),
    )
    out = io.StringIO()
    monitor.Printer(out, {DEVICE: codec.Signer(KEY)}).feed(data)
    assert " L" not in out.getvalue() and "[MAC BAD]" in out.getvalue()


# --- deploy: the file given as config.json ------------------------------------------


def test_deploy_names_the_file_given_instead_of_a_config(tmp_path):
    enc = codec.Encoder(int(DEVICE, 16), KEY)
    frame = bytes(enc.frame(codec.READING, 1772324100, 1, 10, 5, 300, 24, 0, 99))
    decoded = {"device": DEVICE, "boot": 0, "seq": 0, "kind": "reading"}
    given = {
        "keys.json": (json.dumps({"devices": {DEVICE: {"key": KEY.hex()}}}),
                      "this is a keys file, not a config.json"),
        "villages.csv": ("device,village,population\n0a1b2c3d,Rampur,500\n",
                         "this is a villages file, not a config.json"),
        "20260301.jkl": (frame * 3, "this is a frame log, not a config.json"),
        "frames.jsonl": (json.dumps(decoded) + "\n" + json.dumps(decoded) + "\n",
                         "this is a list of decoded frames (jalkal decode), not a "
                         "config.json"),
        "empty.json": ("", "this is an empty file, not a config.json"),
        "list.json": ("[1, 2]", "JSON, but not an object"),
    }  # fmt: skip
    for name, (content, says) in given.items():
        p = tmp_path / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(JalkalError) as e:
            deploy.load_config(str(p))
        assert str(e.value).startswith(f"{p}: {says}"), str(e.value)
        assert "jalkal provision" in str(e.value)


# --- doctor on a fresh board -------------------------------------------------------


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def virtual_sd(fb: FakeBoard) -> None:
    """The virtual board's answer when nothing is mounted at /sd: its statvfs fails
    for a missing path, so `_jk_sd` tries to mount a card with the pins it was
    given, and a missing one fails as a KeyError."""

    def sd(pins: dict) -> str:
        fb.helpers()
        missing = [
            k for k in ("sd_sck", "sd_miso", "sd_mosi", "sd_cs") if k not in pins
        ]
        return f"none: KeyError({missing[0]!r})" if missing else "none: ENODEV"

    fb.sd = sd  # type: ignore[method-assign]


def all_text(checks: list[doctor.Check], head: str) -> str:
    return doctor.render(checks, head) + "\n" + "\n".join(c.fix for c in checks)


def test_doctor_on_a_board_never_provisioned():
    fb = FakeBoard(sd="none")
    virtual_sd(fb)
    checks, head = doctor.run(fb, restart=False)
    got = by_name(checks)
    assert head == f"jalkal doctor on {fb.port}"
    cfg = got["config"]
    assert cfg.status == doctor.BAD
    assert cfg.detail == "no /config.json: this board was never provisioned"
    assert cfg.fix.startswith("jalkal provision --board BOARD")
    assert f"then jalkal deploy --port {fb.port} --config DIR/config.json" in cfg.fix
    sd = got["SD card"]
    assert sd.detail == "not found (no /config.json: the SD card's pins are not known)"
    assert sd.fix == cfg.fix
    assert got["modem"].detail == "no /config.json: the modem's pins are not known"
    assert "KeyError" not in all_text(checks, head)


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({}, "device, key, board, pins, population"),
        ({"device": DEVICE, "key": KEY.hex()}, "board, pins, population"),
        ({"device": DEVICE, "key": KEY.hex(), "board": BOARD, "population": 500,
          "pins": {k: v for k, v in PINS.items() if k != "sd_sck"}}, ""),
    ],
)  # fmt: skip
def test_doctor_names_the_settings_a_config_lacks(config, missing):
    fb = FakeBoard({"/config.json": json.dumps(config)}, sd="none")
    virtual_sd(fb)
    checks, head = doctor.run(fb, restart=False)
    got = by_name(checks)
    text = all_text(checks, head)
    assert "KeyError" not in text and "00000000" not in text
    if missing:
        assert got["config"].status == doctor.BAD
        assert got["config"].detail.endswith(f"config.json has no {missing}")
        assert "jalkal provision" in got["config"].fix
    else:
        assert got["config"].status == doctor.OK
    pins = config.get("pins", {})
    gone = [k for k in ("sd_cs", "sd_sck", "sd_miso", "sd_mosi") if k not in pins]
    assert got["SD card"].detail == (
        f"not found (config.json has no {', '.join(gone)} "
        f"{'pin' if len(gone) == 1 else 'pins'} to mount a card with)"
    )
    assert "jalkal provision" in got["SD card"].fix
    if "device" in config:  # the head names what config.json says, no defaults
        assert head.endswith(
            f": device {DEVICE}" + (f", board {BOARD}" if "board" in config else "")
        )
    else:
        assert head == f"jalkal doctor on {fb.port}"


def test_doctor_says_a_config_that_is_not_json():
    fb = FakeBoard({"/config.json": "{device"})
    got = by_name(doctor.run(fb, restart=False)[0])
    assert got["config"].detail == "/config.json is not a JSON object"
    assert got["modem"].detail == (
        "/config.json is not a JSON object: the modem's pins are not known"
    )


@pytest.mark.parametrize(
    ("offset", "says"),
    [
        (-24102998, "(279 days behind this laptop)"),
        (3 * 3600 + 600, "(3 hours 10 minutes ahead of this laptop)"),
        (-30, "(30 seconds behind this laptop)"),
        (0, "(the same as this laptop's)"),
    ],
)
def test_doctor_says_how_far_off_the_clock_is(offset, says, monkeypatch):
    now = 1780000000.0
    monkeypatch.setattr(doctor.time, "time", lambda: now)  # this laptop's clock
    fb = FakeBoard({"/config.json": json.dumps({"device": DEVICE})},
                   clock=now + offset)  # fmt: skip
    c = by_name(doctor.run(fb, restart=False)[0])["clock"]
    assert c.detail.endswith(says), c.detail
    assert c.status == (doctor.OK if abs(offset) <= 120 else doctor.BAD)


def test_doctor_unset_clock_is_years_behind():
    fb = FakeBoard(clock=UNSET_CLOCK + 60)
    c = by_name(doctor.run(fb, restart=False)[0])["clock"]
    assert c.detail.startswith("2000-01-01 00:01:00 UTC (")
    assert c.detail.endswith(" years behind this laptop)")


# --- pull on a fresh board ---------------------------------------------------------


def board_logs(fb: FakeBoard, root: Path, days: int = 2) -> None:
    """SD logs written by the firmware's FrameLog, put on the fake board."""
    enc = codec.Encoder(int(DEVICE, 16), KEY, boot=3)
    (root / "sd").mkdir(parents=True)
    (root / "flash").mkdir(parents=True)
    log = FrameLog(str(root / "sd"), str(root / "flash"))
    t0 = 1772303400  # 2026-03-01 00:00 IST
    for d in range(days):
        for i in range(4):
            f = enc.frame(codec.READING, t0 + d * DAY + 900 * i, 1, i, i, 0, 0, 0, 9)
            assert log.append(bytes(f), 20260301 + d)
    log.close()
    fb.load_dir(root / "sd", "/sd")


def test_pull_on_a_board_never_provisioned(tmp_path):
    fb = FakeBoard(clock=1772303400 + 5 * DAY)
    with pytest.raises(JalkalError) as e:
        pull.run(fb, str(tmp_path / "out"))
    msg = str(e.value)
    assert msg.startswith(f"nothing to pull: the board on {fb.port} has no "
                          "/config.json: it was never provisioned")  # fmt: skip
    assert "jalkal provision --board BOARD" in msg
    assert f"jalkal deploy --port {fb.port} --config DIR/config.json" in msg
    assert len(fb.called("restart")) == 1  # left running, as it was found
    assert fb.changes() == [] and not (tmp_path / "out").exists()


def test_pull_copies_the_logs_of_a_board_without_config_then_says_so(tmp_path):
    fb = FakeBoard(clock=1772303400 + 5 * DAY)
    board_logs(fb, tmp_path / "board", days=3)
    out = tmp_path / "out"
    with pytest.raises(JalkalError) as e:
        pull.run(fb, str(out), clear_after=True)
    msg = str(e.value)
    assert msg.startswith("pulled 3 of 3 ") and "all verified" in msg
    assert f"into {out / 'unknown'}; but the board on {fb.port} has no " in msg
    assert "jalkal provision" in msg
    for d in (20260301, 20260302, 20260303):
        local = out / "unknown" / "sd" / "log" / f"{d}.jkl"
        assert local.read_bytes() == fb.files[f"/sd/log/{d}.jkl"]
    assert not fb.called("remove")  # a board of unknown identity keeps its logs
    assert msg.startswith("pulled 3 of 3 files, ")


def test_pull_says_no_sd_pins_rather_than_a_key_error(tmp_path, capsys):
    cfg = {"device": DEVICE, "key": KEY.hex(), "pins": {"relay": 4}}
    fb = FakeBoard({"/config.json": json.dumps(cfg)}, sd="none")
    virtual_sd(fb)
    res = pull.run(fb, str(tmp_path / "out"), restart=False)
    err = capsys.readouterr().err
    assert res.copied == []
    assert "SD card not mounted (no SD pins in config.json): pulling the flash " \
        "ring only" in err  # fmt: skip
    assert "KeyError" not in err
    assert "pulling 0 log files, 0 bytes" in err


def test_pull_describes_garbage_in_words(tmp_path):
    r = pull.Remote("/sd/log/20260301.jkl", 5058, tmp_path / "20260301.jkl", "sd")
    one = {"frames": 127, "skipped_bytes": 83, "skipped_runs": 1, "crc_errors": 1,
           "truncated": 0}  # fmt: skip
    text = pull.describe(pull.Copied(r, "copied", 5058, True, one))
    assert text.endswith("127 frames, 83 bytes of garbage in 1 place (1 CRC "
                         "failure, 0 torn)")  # fmt: skip
    two = dict(one, skipped_runs=2, crc_errors=2, truncated=1)
    text = pull.describe(pull.Copied(r, "copied", 5058, True, two))
    assert text.endswith("in 2 places (2 CRC failures, 1 torn)")
