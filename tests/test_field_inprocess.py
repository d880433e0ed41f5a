"""The field tools in-process, against a recording fake board (tests/fake_board.py):
deploy, pull and doctor run on a `FakeBoard` exactly as the commands hand them a
connected `Board`; monitor reads a `FakeSerial`. No subprocess, no serial port.

The logs and state files on the fake board are written by the firmware's own code
(jkfw.logger.FrameLog, jkfw.store.Store) with real signed frames (jkproto.codec);
the modem's answers are the SIM800 fixtures of tests/data/modem. The last tests
hold the fake to the real thing: Board's own methods run in real MicroPython must
answer what the fake answers."""

from __future__ import annotations

import ast
import calendar
import concurrent.futures
import dataclasses
import hashlib
import inspect
import io
import json
import math
import re
import time
from pathlib import Path

import pytest
from conftest import REPO
from fake_board import EMULATED, FakeBoard, FakeSerial, fingerprint, helper_sources

import jkboards
from jalkal.errors import JalkalError
from jalkal.field import deploy, doctor, monitor, pull
from jalkal.field import doctor_sensors as ds
from jalkal.field.board import SETTLE, Board, BoardError
from jkfw.logger import FrameLog
from jkfw.store import Store
from jkproto import codec
from jkproto import objects as ob
from jksim import probes

DEVICE = "0a1b2c3d"
KEY = bytes(range(32))
BOARD = "esp32-devkitc-sim800l"
PINS = jkboards.load(BOARD)["pins"]
IST = 330 * 60
MODEM_DATA = Path(__file__).parent / "data" / "modem" / "sim800.jsonl"


def write_config(path: Path, **over) -> Path:
    cfg = {"device": DEVICE, "key": KEY.hex(), "board": BOARD, "pins": PINS,
           "population": 500, **over}  # fmt: skip
    path.write_text(json.dumps(cfg, indent=1) + "\n")
    return path


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "config.json")


@pytest.fixture(scope="module")
def source_prep(cfg_path) -> deploy.Prepared:
    return deploy.prepare(str(cfg_path), source=True)


@pytest.fixture(scope="module")
def mpy_prep(cfg_path) -> deploy.Prepared:
    return deploy.prepare(str(cfg_path), source=False)


def local_midnight_utc(day: int) -> int:
    y, m, d = day // 10000, day // 100 % 100, day % 100
    return calendar.timegm((y, m, d, 0, 0, 0, 0, 0, 0)) - IST


def firmware_logs(root: Path, days: dict[int, int], ring: int = 0) -> None:
    """SD logs (day -> readings every 15 min) and `ring` readings in the flash ring,
    written by the firmware's FrameLog; the pump ran and the meters counted."""
    enc = codec.Encoder(int(DEVICE, 16), KEY, boot=3)
    (root / "sd").mkdir(parents=True, exist_ok=True)
    (root / "flash").mkdir(parents=True, exist_ok=True)
    log = FrameLog(str(root / "sd"), str(root / "flash"))
    src = sup = 0
    for day, n in days.items():
        t0 = local_midnight_utc(day)
        for i in range(n):
            src, sup = src + 30, sup + 25
            inputs = 0b11000  # pump, mains
            f = enc.frame(
                codec.READING, t0 + 900 * i, 1, src, sup, 300, inputs, 120, 15
            )
            assert log.append(bytes(f), day)
    log.close()
    if ring:  # the card went away: frames go to the ring on flash
        away = FrameLog(str(root / "no-card"), str(root / "flash"))
        t0 = local_midnight_utc(max(days)) + 86400 if days else 1772323200
        for i in range(ring):
            f = enc.frame(codec.READING, t0 + 900 * i, 1, src, sup, 0, 0b10000, 120, 15)
            assert away.append(bytes(f), 0)
            assert away.mode == "flash"
        away.close()


def uplink_state(root: Path, up: list[int]) -> None:
    """/flash/state.json as the firmware's Store writes it, with the upload cursor."""
    (root / "flash").mkdir(parents=True, exist_ok=True)
    st = Store(str(root / "flash"))
    assert st.save(dict(st.load(), boots=4, up=up))


def sim800_answers() -> dict[bytes, bytes]:
    """AT, AT+CREG?, AT+CSQ from the SIM800 fixtures (each cites its source);
    AT+CPIN? framed the same way from the manual's '+CPIN: <code>' then OK."""
    by_id = {}
    for line in MODEM_DATA.read_text().splitlines():
        d = json.loads(line)
        by_id[d["id"]] = d["answer"].encode()
    return {
        b"AT": by_id["sim800.at"],
        b"AT+CPIN?": b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
        b"AT+CREG?": by_id["sim800.creg.plain"],
        b"AT+CSQ": by_id["sim800.csq"],
    }


def slot_files(fb: FakeBoard, slot: str) -> dict[str, bytes]:
    base = f"/app/{slot}/"
    return {p[len(base) :]: d for p, d in fb.files.items() if p.startswith(base)}


def index_of_effect(fb: FakeBoard, *effect: str) -> int:
    return fb.effects.index(tuple(effect))


# --- the fake itself --------------------------------------------------------------


def test_fake_has_the_board_methods_the_tools_call():
    """Every public Board method the field tools call exists on the fake with the
    same parameters (a tool calling b.x(...) works on both or neither)."""
    used = set()
    for p in Path(deploy.__file__).parent.glob("*.py"):
        used |= set(re.findall(r"\b(?:b|self\.b)\.([a-z_0-9]+)\(", p.read_text()))
    assert {"read", "write_atomic", "sha256", "restart", "exec", "eval"} <= used
    for name in sorted(used):
        real = getattr(Board, name, None)
        if real is None:
            continue  # not a Board method (e.g. a bytes method on a variable b)
        fake = getattr(FakeBoard, name)
        assert list(inspect.signature(fake).parameters) == list(
            inspect.signature(real).parameters
        ), name


def test_fake_helpers_are_the_ones_it_emulates():
    """The fake answers for the board-side helpers as they are now: a changed helper
    (or main.py) must be re-read and the fake's answer checked before this passes."""
    now = {k: fingerprint(v) for k, v in helper_sources().items()}
    changed = sorted(k for k in now if EMULATED.get(k) != now[k])
    assert not changed, f"re-check FakeBoard against the changed helpers: {changed}"


def test_fake_answers_as_a_session_does():
    fb = FakeBoard(clock=calendar.timegm((2026, 3, 1, 6, 0, 0)))
    with pytest.raises(BoardError, match="name 'time' isn't defined"):
        fb.eval("time.gmtime()")  # nothing imported time yet
    fb.exec("import time")
    assert fb.eval("time.gmtime()") == (2026, 3, 1, 6, 0, 0, 6, 60)
    with pytest.raises(BoardError, match="_jk_has_machine"):
        fb.eval("_jk_has_machine()")  # the doctor's helpers were not sent
    with pytest.raises(AssertionError, match="cannot answer"):
        fb.eval("1 + 1")
    with pytest.raises(OSError) as e:
        fb.sha256("/nothing")
    assert e.value.errno == 2
    with pytest.raises(OSError):
        fb.write("/no/folder/x", b"1")  # littlefs has no folder /no
    fb.restart()
    with pytest.raises(BoardError, match="lost the board"):
        fb.size("/main.py")  # the firmware runs: no raw REPL until stop()


# --- deploy -----------------------------------------------------------------------


def test_first_deploy_fills_slot_a_then_switches(source_prep, cfg_path):
    fb = FakeBoard()
    res = deploy.run(fb, source_prep, boot_wait_s=1)
    bld = source_prep.build
    n = len(bld.files)
    assert (res.uploaded, res.board_copied, res.unchanged) == (n, 0, 0)
    assert res.slot == "a" and res.config_written and res.main_written
    assert res.bytes_sent == sum(len(f.data) for f in bld.files)
    # the slot holds every file, hashed, and the MANIFEST; the switch points at it
    got = slot_files(fb, "a")
    assert got.pop("MANIFEST") == bld.manifest()
    assert got == {f.name: f.data for f in bld.files}
    assert fb.files["/app/active"] == b"a"
    assert fb.files["/config.json"] == cfg_path.read_bytes()
    assert fb.files["/main.py"] == deploy.MAIN_PY.encode()
    assert "/flash" in fb.dirs
    # order: main.py, the slot's files, their hashes checked, MANIFEST, config, switch
    main = index_of_effect(fb, "rename", "/main.py.tmp", "/main.py")
    writes = [i for i, e in enumerate(fb.effects)
              if e[0] == "write" and e[1].startswith("/app/a/jkfw")]  # fmt: skip
    manifest = index_of_effect(fb, "rename", "/app/a/MANIFEST.tmp", "/app/a/MANIFEST")
    config = index_of_effect(fb, "rename", "/config.json.tmp", "/config.json")
    switch = index_of_effect(fb, "rename", "/app/active.tmp", "/app/active")
    assert main < min(writes) and max(writes) < manifest < config < switch
    assert switch == len(fb.effects) - 1  # nothing after the switch
    checked = fb.index("hashes", "/app/a")
    assert fb.index("write_atomic", "/app/a/MANIFEST") > checked > 0
    assert not fb.called("write", "/app/b/*") and "/app/b" not in fb.dirs
    assert not fb.called("write", "/app/active")  # only write_atomic: never torn
    # then the board is restarted, once, and boots this build from slot a
    assert [c.method for c in fb.calls].count("restart") == 1
    assert fb.calls[-1].method == "restart"
    assert res.booted == f"jkfw {bld.version} build {bld.build_id} from /app/a"


def test_second_deploy_copies_nothing(source_prep):
    fb = FakeBoard()
    deploy.run(fb, source_prep, check_boot=False)
    assert not fb.called("restart")  # no --boot-check: never reset
    fb.reconnect()
    res = deploy.run(fb, source_prep, check_boot=False)
    n = len(source_prep.build.files)
    assert (res.uploaded, res.unchanged, res.bytes_sent) == (0, n, 0)
    assert not res.config_written and not res.main_written
    assert fb.changes() == []  # not one byte written, renamed or removed
    for m in ("write", "write_atomic", "copy", "remove", "rename", "restart"):
        assert not fb.called(m), m
    assert deploy.summary(res).startswith(f"copied 0 of {n} files, 0.0 KB; {n} unch")


def test_deploy_cut_mid_stage_leaves_the_running_slot(source_prep, mpy_prep):
    fb = FakeBoard()
    deploy.run(fb, source_prep, check_boot=False)
    before = slot_files(fb, "a")
    fb.reconnect()
    fb.cut("write", "/app/b/*", nth=4)  # the cable goes while the 4th file is sent
    with pytest.raises(BoardError, match="lost the board"):
        deploy.run(fb, mpy_prep)
    assert fb.files["/app/active"] == b"a"
    assert slot_files(fb, "a") == before  # the running slot was never touched
    assert "/app/b/MANIFEST" not in fb.files
    assert not fb.called("write_atomic", "/app/active")
    assert not fb.called("restart")
    written = [c.path for c in fb.called("write", "/app/b/*")]
    assert len(written) == 4
    cut_file = next(f for f in mpy_prep.build.files if written[-1].endswith(f.name))
    assert fb.files[written[-1]] != cut_file.data  # torn mid-transfer
    # a power-on now boots the previous version
    fb.reconnect()
    assert b"from /app/a\r\n" in fb.restart()
    # the next deploy sends what is missing and switches
    fb.reconnect()
    res = deploy.run(fb, mpy_prep, boot_wait_s=1)
    assert res.slot == "b" and fb.files["/app/active"] == b"b"
    assert res.booted and res.booted.endswith("from /app/b")
    got = slot_files(fb, "b")
    assert got.pop("MANIFEST") == mpy_prep.build.manifest()
    assert got == {f.name: f.data for f in mpy_prep.build.files}


def test_deploy_cut_at_the_switch_keeps_the_old_one(source_prep, mpy_prep):
    fb = FakeBoard()
    deploy.run(fb, source_prep, check_boot=False)
    fb.reconnect()
    fb.cut("rename", "/app/active.tmp")
    with pytest.raises(BoardError):
        deploy.run(fb, mpy_prep, check_boot=False)
    assert fb.files["/app/active"] == b"a"
    assert "/app/b/MANIFEST" in fb.files  # slot b complete, not switched to
    fb.reconnect()
    res = deploy.run(fb, mpy_prep, check_boot=False)
    assert (res.uploaded, res.bytes_sent, res.slot) == (0, 0, "b")
    assert fb.files["/app/active"] == b"b"


def test_config_rewritten_only_when_changed(source_prep, tmp_path):
    fb = FakeBoard()
    deploy.run(fb, source_prep, check_boot=False)
    # the same size, other bytes: the sha256 tells them apart
    changed = write_config(tmp_path / "config.json", population=600)
    assert changed.stat().st_size == len(source_prep.config_bytes)
    prep = dataclasses.replace(source_prep, config_bytes=changed.read_bytes())
    fb.reconnect()
    res = deploy.run(fb, prep, check_boot=False)
    assert res.config_written and not res.main_written and res.uploaded == 0
    assert fb.files["/config.json"] == changed.read_bytes()
    assert fb.changes() == [
        ("write", "/config.json.tmp"),
        ("rename", "/config.json.tmp", "/config.json"),
    ]
    fb.reconnect()
    res = deploy.run(fb, prep, check_boot=False)
    assert not res.config_written and fb.changes() == []


def test_changed_module_alone_crosses_the_cable(source_prep):
    fb = FakeBoard()
    deploy.run(fb, source_prep, check_boot=False)
    bld = source_prep.build
    files = [deploy.File(f.name, f.data + b"\n# changed\n")
             if f.name == "jkfw/pump.py" else f for f in bld.files]  # fmt: skip
    prep = dataclasses.replace(
        source_prep, build=deploy.Build(files, bld.version, None)
    )
    fb.reconnect()
    res = deploy.run(fb, prep, boot_wait_s=1)
    assert (res.uploaded, res.board_copied, res.slot) == (1, len(files) - 1, "b")
    assert [c.path for c in fb.called("write", "/app/b/*")] == ["/app/b/jkfw/pump.py"]
    copies = {c.args for c in fb.called("copy")}
    assert ("/app/a/jkfw/app.py", "/app/b/jkfw/app.py") in copies
    assert len(copies) == len(files) - 1
    assert res.booted == f"jkfw {bld.version} build {prep.build.build_id} from /app/b"


@pytest.mark.parametrize(
    "board, message",
    [
        (dict(release="1.25.0"), "the firmware needs 1.26.0 or newer"),
        (dict(uname_machine="Generic ESP32S3 module with ESP32S3"), "is an ESP32S3"),
        (dict(mpy=5 | 10 << 10), "reads .mpy version 5, mpy-cross makes 6"),
    ],
)
def test_deploy_checks_the_board_before_writing(mpy_prep, board, message):
    fb = FakeBoard(**board)
    with pytest.raises(JalkalError, match=message):
        deploy.run(fb, mpy_prep)
    assert fb.changes() == [] and fb.files == {}


def test_deploy_reports_a_firmware_that_stops(source_prep):
    crash = (
        b"Traceback (most recent call last):\r\n"
        b'  File "jkfw/main.py", line 90\r\n'
        b"OSError: [Errno 5] EIO\r\nMicroPython v1.27.0\r\n>>> "
    )
    fb = FakeBoard(after_boot=crash)
    with pytest.raises(
        JalkalError, match=r"stopped with an error: OSError: \[Errno 5\]"
    ):
        deploy.run(fb, source_prep, boot_wait_s=1)
    assert fb.files["/app/active"] == b"a"  # deployed; it is the boot that failed


# --- pull -------------------------------------------------------------------------

DAYS = (20260301, 20260302, 20260303)
TODAY_UTC = calendar.timegm((2026, 3, 3, 6, 0, 0))  # 11:30 IST on 2026-03-03


def board_with_logs(tmp_path: Path, up: list[int] | None = None, uplink=False,
                    **kw) -> FakeBoard:  # fmt: skip
    root = tmp_path / "board"
    firmware_logs(root, {d: 96 for d in DAYS}, ring=5)
    if up is not None:
        uplink_state(root, up)
    fb = FakeBoard(**{"clock": TODAY_UTC, **kw})
    fb.load_dir(root / "sd", "/sd")
    fb.load_dir(root / "flash", "/flash")
    fb.put("/flash/ring/05.jkl", b"JK")  # torn before its header: an empty slot
    extra = {"uplink_url": "http://ingest.example:8080"} if uplink else {}
    cfg = write_config(tmp_path / "cfg.json", **extra)
    fb.put("/config.json", cfg.read_bytes())
    return fb


def assert_removed_only_verified(fb: FakeBoard, out: Path) -> None:
    """Every file pull removed was hashed on the board after its last read, and the
    copy here holds exactly what the board had."""
    for i, c in enumerate(fb.calls):
        if c.method != "remove":
            continue
        reads = [j for j, d in enumerate(fb.calls[:i]) if d.method == "read"
                 and d.path == c.path]  # fmt: skip
        hashed = [j for j, d in enumerate(fb.calls[:i]) if d.method == "sha256"
                  and d.path == c.path and d.args[1] == -1]  # fmt: skip
        assert reads and hashed and hashed[-1] > reads[-1], c.path
        local = out / DEVICE / "sd" / "log" / c.path.rsplit("/", 1)[1]
        assert local.read_bytes() == fb.removed[c.path]


def test_pull_copies_every_log_verified(tmp_path):
    fb = board_with_logs(tmp_path)
    before = fb.snapshot()
    out = tmp_path / "out"
    res = pull.run(fb, str(out), restart=False)
    for d in DAYS:
        local = out / DEVICE / "sd" / "log" / f"{d}.jkl"
        assert local.read_bytes() == fb.files[f"/sd/log/{d}.jkl"]
    ring = out / DEVICE / "ring" / "g00000001.jkl"
    assert ring.read_bytes() == fb.files["/flash/ring/00.jkl"]
    assert len(res.copied) == 4  # the torn ring slot is no log
    assert all(c.verified and c.action == "copied" for c in res.copied)
    frames = [c.stats["frames"] for c in res.copied]
    assert frames == [96, 96, 96, 5] and not any(
        c.stats["crc_errors"] for c in res.copied
    )
    for c in res.copied:  # each copy was checked against the board's sha256
        assert fb.called("sha256", c.remote.path)
    assert fb.snapshot() == before and fb.changes() == []  # pull only reads
    assert not fb.called("restart") and not fb.called("remove")
    assert not (out / DEVICE / ".partial" / "sd" / f"{DAYS[0]}.jkl").exists()
    assert "4 files" in pull.totals(res) and "all verified" in pull.totals(res)

    fb.reconnect()
    res = pull.run(fb, str(out))  # again: nothing new
    assert [c.action for c in res.copied] == ["up to date"] * 4
    assert not fb.called("read", "/sd/log/*")
    assert [c.method for c in fb.calls].count("restart") == 1


def test_pull_cut_then_resumed(tmp_path, monkeypatch):
    monkeypatch.setattr(pull, "CHUNK", 1024)
    fb = board_with_logs(tmp_path)
    path = f"/sd/log/{DAYS[1]}.jkl"
    fb.cut("read", path, nth=3)  # the cable goes on the 3rd chunk of the 2nd day
    out = tmp_path / "out"
    with pytest.raises(BoardError):
        pull.run(fb, str(out))
    local = out / DEVICE / "sd" / "log" / f"{DAYS[1]}.jkl"
    part = out / DEVICE / ".partial" / "sd" / local.name
    assert not local.exists() and part.stat().st_size == 2048
    fb.reconnect()
    res = pull.run(fb, str(out))
    c = next(c for c in res.copied if c.remote.path == path)
    assert c.action == "resumed" and c.new_bytes == len(fb.files[path]) - 2048
    assert [r.args[1] for r in fb.called("read", path)] == [2048, 3072]
    assert local.read_bytes() == fb.files[path] and not part.exists()

    # a partial copy that is not the board's file is dropped, and copied anew
    local.unlink()
    part.write_bytes(b"\xa5" * 100)
    fb.reconnect()
    res = pull.run(fb, str(out))
    c = next(c for c in res.copied if c.remote.path == path)
    assert c.action == "copied" and fb.called("read", path)[0].args[1] == 0
    assert local.read_bytes() == fb.files[path]


def test_pull_tail_and_superseded(tmp_path):
    fb = board_with_logs(tmp_path)
    out = tmp_path / "out"
    pull.run(fb, str(out))
    today = f"/sd/log/{DAYS[2]}.jkl"
    old = len(fb.files[today])
    grown = fb.files[today] + fb.files[today][-80:]  # two more frames logged
    fb.files[today] = grown
    other = f"/sd/log/{DAYS[0]}.jkl"
    local_other = out / DEVICE / "sd" / "log" / f"{DAYS[0]}.jkl"
    mine = local_other.read_bytes()
    fb.files[other] = mine[:40] + b"\x00" * 40 + mine[80:]  # a new card, other bytes
    fb.reconnect()
    res = pull.run(fb, str(out))
    acts = {c.remote.path: c.action for c in res.copied}
    assert acts[today] == "tail" and acts[other] == "copied"
    assert [r.args[1] for r in fb.called("read", today)] == [old]
    assert (out / DEVICE / "sd" / "log" / f"{DAYS[2]}.jkl").read_bytes() == grown
    kept = out / DEVICE / "superseded" / "sd" / f"{DAYS[0]}.jkl.1"
    assert kept.read_bytes() == mine  # never overwritten: kept aside
    assert local_other.read_bytes() == fb.files[other]


def test_pull_refuses_a_copy_that_does_not_verify(tmp_path):
    fb = board_with_logs(tmp_path)
    path = f"/sd/log/{DAYS[0]}.jkl"
    fb.garbled.add(path)
    out = tmp_path / "out"
    with pytest.raises(JalkalError, match="does not match the board's file"):
        pull.run(fb, str(out), clear_after=True)
    assert not (out / DEVICE / "sd" / "log" / f"{DAYS[0]}.jkl").exists()
    assert (out / DEVICE / ".partial" / "sd" / f"{DAYS[0]}.jkl").exists()
    assert not fb.called("remove") and fb.changes() == []


def test_pull_clear_after_keeps_today_and_not_uploaded(tmp_path):
    # the server has everything up to the 2nd day's byte 800
    fb = board_with_logs(tmp_path, up=[DAYS[1], 800, 0, 0, 0, 0, 0, 0], uplink=True)
    out = tmp_path / "out"
    res = pull.run(fb, str(out), clear_after=True)
    assert res.removed == [f"{DAYS[0]}.jkl"]
    assert f"{DAYS[1]}.jkl (not yet uploaded)" in res.kept
    assert f"{DAYS[2]}.jkl (today's, still open)" in res.kept
    assert set(fb.removed) == {f"/sd/log/{DAYS[0]}.jkl"}
    assert "/flash/ring/00.jkl" in fb.files  # the ring is never cleared
    assert_removed_only_verified(fb, out)
    assert fb.index("remove") < fb.index("restart") == len(fb.calls) - 1


def test_pull_clear_after_without_uplink_keeps_the_newest(tmp_path):
    fb = board_with_logs(tmp_path, clock=calendar.timegm((2000, 1, 1, 0, 5, 0)))
    out = tmp_path / "out"
    res = pull.run(fb, str(out), clear_after=True)  # the clock unset: no "today"
    assert res.removed == [f"{DAYS[0]}.jkl", f"{DAYS[1]}.jkl"]
    assert res.kept == [f"{DAYS[2]}.jkl (the newest: the board may still write to it)"]
    assert_removed_only_verified(fb, out)


def test_pull_keeps_a_file_that_changed_after_its_copy(tmp_path):
    fb = board_with_logs(tmp_path)
    path = f"/sd/log/{DAYS[0]}.jkl"

    def log_more(b: FakeBoard) -> None:
        b.files[path] += b.files[path][-40:]

    fb.when("sha256", path, nth=2, do=log_more)  # before the check that clears it
    res = pull.run(fb, str(tmp_path / "out"), clear_after=True)
    assert f"{DAYS[0]}.jkl (changed on the board)" in res.kept
    assert path not in fb.removed and path in fb.files
    assert res.removed == [f"{DAYS[1]}.jkl"]


def test_pull_lost_board_removes_nothing(tmp_path):
    fb = board_with_logs(tmp_path)
    fb.cut("sha256", f"/sd/log/{DAYS[0]}.jkl", nth=2)  # at the check before removing
    with pytest.raises(BoardError):
        pull.run(fb, str(tmp_path / "out"), clear_after=True)
    assert not fb.removed and not fb.called("restart")


# --- doctor -----------------------------------------------------------------------


def healthy_board(tmp_path: Path, prep: deploy.Prepared, **kw) -> FakeBoard:
    """A board after `jalkal deploy`, its firmware logging for a day."""
    opts = dict(modem=sim800_answers(), modem_pins=(PINS["modem_tx"], PINS["modem_rx"]))
    fb = FakeBoard(**{**opts, **kw})
    deploy.run(fb, prep, check_boot=False)
    root = tmp_path / "logs"
    today = int(time.strftime("%Y%m%d", time.gmtime(fb.clock + IST)))
    yesterday = int(time.strftime("%Y%m%d", time.gmtime(fb.clock + IST - 86400)))
    if fb.sd_state == "card":  # 12 readings on the card, none waiting in the ring
        firmware_logs(root, {yesterday: 4, today: 8})
        fb.load_dir(root / "sd", "/sd")
    else:  # no card since boot: 6 readings in the ring
        firmware_logs(root, {}, ring=6)
    fb.load_dir(root / "flash", "/flash")
    fb.reconnect()
    return fb


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_doctor_on_a_healthy_board(tmp_path, source_prep):
    fb = healthy_board(tmp_path, source_prep)
    before = fb.snapshot()
    checks, head = doctor.run(fb)
    got = by_name(checks)
    assert head == f"jalkal doctor on {fb.port}: device {DEVICE}, board {BOARD}"
    n = len(source_prep.build.files)
    want_ok = {
        "MicroPython": "1.27.0 on Generic ESP32 module with ESP32",
        "free heap": "110 KB free of 150 KB",
        "config": f"device {DEVICE}, board {BOARD}, population 500",
        "firmware": f"all {n} files match",
        "SD card": "mounted, 7,168 MB free, 2 log files, writable",
        "modem": "answers AT",
        "SIM": "registered",
        "signal": "CSQ 15 (-83 dBm)",
        "switches": "dry off, low off, high off, pump on, mains on",
        "meters": "over the last 12 readings: source +330 pulses, supply +275 "
        "pulses (2,750 L), pump ran 3,300 s",
    }
    for name, text in want_ok.items():
        assert got[name].status == doctor.OK, got[name]
        assert text in got[name].detail, got[name]
    assert got["clock"].status == doctor.OK
    assert got["flash"].status == doctor.OK
    assert "ring empty (everything is on the SD card)" in got["flash"].detail
    assert got["last upload"].status == doctor.NA
    # --test-relay not given: no relay check, no pin driven, no Pin.OUT sent
    assert "relay test" not in got and fb.pin_writes == []
    assert not any("Pin.OUT" in str(c.args) for c in fb.calls)
    # nothing changed: the SD write test's file is gone again
    assert fb.snapshot() == before
    assert {e[-1] for e in fb.changes()} == {"/sd/.jalkal-doctor"}
    assert fb.calls[-1].method == "restart" and len(fb.called("restart")) == 1
    text = doctor.render(checks, head)
    assert text.splitlines()[0] == head
    assert f"✓ firmware     jkfw {source_prep.build.version} build" in text
    assert (
        text.splitlines()[-1]
        == f"{len(checks)} checks: {len(checks) - 1} ✓, 0 ✗, 1 – (not checked)"
    )


def test_doctor_without_an_sd_card(tmp_path, source_prep):
    fb = healthy_board(tmp_path, source_prep, sd="none")
    checks, head = doctor.run(fb, restart=False)
    sd = by_name(checks)["SD card"]
    assert sd.status == doctor.BAD
    assert sd.fix.startswith(
        "insert a FAT32 SD card and check its wiring (pins sd_cs 5"
    )
    assert "meanwhile frames go to the flash ring" in sd.fix
    text = doctor.render(checks, head)
    assert "✗ SD card" in text and "  fix: insert a FAT32 SD card" in text
    assert "ring holds 1 slot," in by_name(checks)["flash"].detail
    assert not fb.called("restart")  # --no-restart
    assert "/sd/.jalkal-doctor" not in {e[-1] for e in fb.effects}  # no write test


def test_doctor_says_a_missing_card_is_not_found(tmp_path, source_prep):
    fb = healthy_board(tmp_path, source_prep, sd="none")
    checks, _head = doctor.run(fb, restart=False)
    sd = by_name(checks)["SD card"]
    assert sd.status == doctor.BAD and sd.detail.startswith("not found"), sd
    assert "OSError(16,)" in sd.detail  # what the failed mount said


def test_doctor_says_a_plain_sd_folder_is_no_card(tmp_path, source_prep):
    """No card, but someone made a /sd folder on the flash: said as such."""
    fb = healthy_board(tmp_path, source_prep, sd="none")
    fb.put("/sd/log/20260301.jkl", b"")
    checks, _head = doctor.run(fb, restart=False)
    sd = by_name(checks)["SD card"]
    assert sd.status == doctor.BAD and "folder on the internal flash" in sd.detail, sd


def test_doctor_relay_test_only_when_dry_run_is_safe(tmp_path, source_prep):
    relay, dry = PINS["relay"], PINS["sw_dry"]
    fb = healthy_board(tmp_path, source_prep, pin_levels={dry: 0})
    checks, _ = doctor.run(fb, test_relay=True, restart=False)
    assert by_name(checks)["relay test"].status == doctor.OK
    assert fb.pin_writes == [(relay, 1), (relay, 0)]  # on for 2 s, then off

    fb = healthy_board(tmp_path / "2", source_prep)  # dry-run input reads asserted
    checks, _ = doctor.run(fb, test_relay=True, restart=False)
    r = by_name(checks)["relay test"]
    assert r.status == doctor.BAD and "dry-run is asserted" in r.detail
    assert fb.pin_writes == []

    fb = healthy_board(tmp_path / "3", source_prep, machine=False, pin_levels={dry: 0})
    checks, _ = doctor.run(fb, test_relay=True, restart=False)
    assert by_name(checks)["relay test"].status == doctor.NA
    assert by_name(checks)["modem"].status == doctor.NA
    assert fb.pin_writes == []


def test_doctor_clock(tmp_path, source_prep):
    fb = healthy_board(tmp_path, source_prep, clock=946684800 + 60)  # RTC never set
    checks, _ = doctor.run(fb, restart=False)
    c = by_name(checks)["clock"]
    assert c.status == doctor.BAD and c.detail.startswith("2000-01-01 00:0")
    assert "--set-clock" in c.fix and fb.clock < 946684800 + 3600  # left alone
    fb.reconnect()
    checks, _ = doctor.run(fb, set_clock=True, restart=False)
    assert by_name(checks)["clock"].status == doctor.OK
    assert abs(fb.clock - time.time()) < 60


def test_doctor_finds_a_changed_firmware_file(tmp_path, source_prep):
    fb = healthy_board(tmp_path, source_prep)
    fb.files["/app/a/jkfw/pump.py"] += b"# edited on the board\n"
    checks, _ = doctor.run(fb, restart=False)
    fw = by_name(checks)["firmware"]
    n = len(source_prep.build.files)
    assert (
        fw.status == doctor.BAD and f"1 of {n} files differ (jkfw/pump.py" in fw.detail
    )
    assert fw.fix.startswith(f"jalkal deploy --port {fb.port}")


def test_doctor_stops_on_a_lost_board(tmp_path, source_prep):
    fb = healthy_board(tmp_path, source_prep)
    fb.cut("sd")
    with pytest.raises(BoardError, match="lost the board"):
        doctor.run(fb)  # not a ✗ line: the checks after it would all fail too
    assert not fb.called("restart")


# --- doctor: the sensors ------------------------------------------------------------

S3 = "esp32s3-devkitc-sim7600"
S3_PINS = jkboards.load(S3)["pins"]
S3_CHIP = "Generic ESP32S3 module with ESP32S3"
# the wiring of the sensors' board (docs/sensors.md): a 150 ohm shunt into the
# ADS1115, a 50 m transducer hung at 45 m, the sonar's face 3.3 m above the floor
# of a 2.9 m tank, an EC board of 1 V per 1000 uS/cm, a pH board at 2.5 V for pH 7
# and -5.7 pH per volt, a CT of 30 A per volt, a 100k/10k supply divider
SENSORS = {
    "bore": {"in": "ads0", "shunt_ohm": 150, "range_m": 50, "install_m": 45},
    "tank": {"in": "sonar", "height_m": 3, "diameter_m": 2.9, "mount_mm": 3300},
    "quality": {"ec_in": "ads1", "ph_in": "ads2", "temp": True, "ec_slope": 1000.0,
                "ec_date": "2026-11-02", "ph_slope": -5.7, "ph_offset": 21.25,
                "ph_date": "2026-11-02"},
    "motor": {"sense": "ct", "amps_per_volt": 30.0},
    "volts": {"supply": {"in": "adc", "r_top": 100000, "r_bottom": 10000}},
}  # fmt: skip
# what is on the wires: 11.68 mA in the loop, 2512 mm to the water, 700 mV from
# the EC board, 2500 mV from the pH board, 26.5 C water, 8 A in the motor, 1.1 V
# at the supply divider's tap
WIRES = {"ma": 11.68, "sonar_mm": 2512, "ec_v": 0.7, "ph_v": 2.5, "temp_c": 26.5,
         "amps": 8.0, "supply_v": 1.1, "sonar_mode": "auto"}  # fmt: skip


def wires(**over):
    """The probes on the fake board's wires (jksim.probes.Probes); a value of None
    is a sensor that gives nothing (an open loop reads 0 V through its shunt)."""
    w = {**WIRES, **over}
    p = probes.Probes()
    ma = w["ma"]
    p.ads_volts = {0: lambda: (ma or 0.0) / 1000 * 150, 1: lambda: w["ec_v"],
                   2: lambda: w["ph_v"]}  # fmt: skip
    p.pin_volts = {S3_PINS["supply_adc"]: lambda: w["supply_v"]}
    p.sonar_mm = lambda: w["sonar_mm"]
    p.sonar_mode = w["sonar_mode"]
    p.temp_c = lambda: w["temp_c"]
    p.amps = lambda: w["amps"]
    return p


def sensor_prep(tmp: Path, **over) -> deploy.Prepared:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = write_config(tmp / "config.json", board=S3, pins=S3_PINS,
                       **{**SENSORS, **over})  # fmt: skip
    return deploy.prepare(str(cfg), source=True)


@pytest.fixture(scope="module")
def sensors_prep(tmp_path_factory) -> deploy.Prepared:
    return sensor_prep(tmp_path_factory.mktemp("sensors"))


def sensor_lines(tmp_path, prep, **over) -> tuple[FakeBoard, dict[str, doctor.Check]]:
    fb = healthy_board(tmp_path, prep, uname_machine=S3_CHIP, sensors=wires(**over))
    before = fb.snapshot()
    checks, _ = doctor.run(fb, restart=False)
    assert fb.snapshot() == before and fb.pin_writes == []  # nothing written
    return fb, by_name(checks)


def test_doctor_shows_each_sensor_raw_and_calibrated(tmp_path, sensors_prep):
    fb, got = sensor_lines(tmp_path, sensors_prep)
    # the loop: (11.68 - 4) / 16 of 50 m above the sensor, hung at 45 m
    head = (11.68 - 4) / 16 * 50
    assert got["borewell"].status == doctor.OK
    assert got["borewell"].detail == (
        f"11.68 mA → {45 - head:.2f} m below ground ({head:.2f} m above the sensor)"
    )
    level = (3300 - 2512) / 1000  # the face 3.3 m above the floor
    litres = math.pi * 2.9**2 / 4 * level * 1000
    assert got["tank"].status == doctor.OK
    assert got["tank"].detail == (
        f"2,512 mm to the water → level {level:.2f} m, {litres:,.0f} L of "
        f"{math.pi * 2.9**2 / 4 * 3000:,.0f} L"
    )
    assert got["water temp"].detail.startswith("26.50 °C (DS18B20 28")
    # 700 uS/cm at 26.5 C is 679.6 at 25 C (ISO 7888's 2 % per C); TDS 0.64 of it;
    # the ADS1115's 125 uV step is 0.12 uS/cm
    ec25 = 700 / (1 + 0.02 * 1.5)
    ec = got["EC / TDS"]
    m = re.fullmatch(r"700 mV → (\d+) µS/cm at 25 °C, TDS (\d+) mg/L, calibrated "
                     r"2026-11-02 \(\d+ days ago\)", ec.detail)  # fmt: skip
    assert ec.status == doctor.OK and m, ec
    assert int(m[1]) == pytest.approx(ec25, abs=0.7)
    assert int(m[2]) == pytest.approx(0.64 * ec25, abs=0.7)
    assert got["pH"].detail.startswith("2,500 mV → 7.00 at 26.5 °C, calibrated 2026")
    amps = float(got["motor"].detail.split()[0])
    assert got["motor"].detail.endswith("A RMS (CT) → running")
    assert amps == pytest.approx(8.0, rel=0.02)  # 200 samples of the 50 Hz sine
    assert got["supply"].detail == "1.100 V at the input → 12.10 V"  # x 110k/10k
    assert all(got[k].status == doctor.OK for k in ("water temp", "pH", "supply"))
    assert [u.p.sonar_mode for u in fb.sonar_uarts] == ["auto"]
    assert fb.sonar_uarts[0].triggers == 0  # auto: nothing written to the sensor


def test_doctor_shows_a_sensor_fault_as_a_fault(tmp_path, sensors_prep):
    """An open loop, a silent sonar, a missing DS18B20: each a ✗ with its fault
    and what to do, never a value; EC without its temperature is no value either,
    and pH reads on (uncompensated)."""
    fb, got = sensor_lines(tmp_path, sensors_prep, ma=None, sonar_mm=None,
                           temp_c=None)  # fmt: skip
    bore, tank = got["borewell"], got["tank"]
    assert (bore.status, bore.detail) == (
        doctor.BAD, "fault: open loop (0.00 mA < 3.6 mA)")  # fmt: skip
    assert "cable" in bore.fix
    assert (tank.status, tank.detail) == (
        doctor.BAD, "fault: absent (no frame from the sensor)")  # fmt: skip
    assert 'set tank.sonar "trigger"' in tank.fix  # the other serial mode?
    assert got["water temp"].status == doctor.BAD
    assert got["water temp"].detail.startswith("fault: absent")
    assert got["EC / TDS"].status == doctor.BAD
    assert got["EC / TDS"].detail.startswith("fault: absent")
    assert got["pH"].status == doctor.OK and " at " not in got["pH"].detail
    for k in ("borewell", "tank", "water temp", "EC / TDS"):
        assert not re.search(r"→| m |µS|°C", got[k].detail), got[k]  # no value
    # a shorted loop: 25 mA, past NAMUR's 21 mA: a fault, not a level
    fb, got = sensor_lines(tmp_path / "2", sensors_prep, ma=25.0)
    assert (got["borewell"].status, got["borewell"].detail) == (
        doctor.BAD, "fault: short (25.00 mA > 21 mA)")  # fmt: skip


def test_doctor_reads_a_sonar_in_trigger_mode(tmp_path, sensors_prep):
    """A JSN-SR04T with R27 = 120k: read with five 0x55 triggers when config.json
    says tank.sonar = "trigger"; a fault, not a level, when it says auto."""
    tank = dict(SENSORS["tank"], sonar="trigger")
    prep = sensor_prep(tmp_path / "cfg", tank=tank)
    fb, got = sensor_lines(tmp_path, prep, sonar_mode="trigger")
    assert got["tank"].status == doctor.OK
    assert got["tank"].detail.startswith("2,512 mm to the water → level 0.79 m")
    assert [u.triggers for u in fb.sonar_uarts] == [5]
    fb, got = sensor_lines(tmp_path / "2", sensors_prep, sonar_mode="trigger")
    assert got["tank"].status == doctor.BAD
    assert got["tank"].detail == "fault: absent (no frame from the sensor)"
    assert [u.triggers for u in fb.sonar_uarts] == [0]


def test_doctor_sensor_code_needs_its_firmware(tmp_path, sensors_prep):
    fb = healthy_board(tmp_path, sensors_prep, uname_machine=S3_CHIP,
                       sensors=wires())  # fmt: skip
    fb.exec(ds.BOARD_CODE)
    with pytest.raises(BoardError, match="no module named 'jkfw'"):
        fb.eval("_jk_sensors('/app/b')")  # nothing deployed in slot b
    assert fb.eval("_jk_sensors('/app/a')")[0][0] == "bore"


BOARD_SENSORS = r"""
import sys, time
sys.path.insert(0, '/app/a')
import jkfw
from jksim import probes
from jksim.hw import SimHal
class Ms:
    @property
    def ms(self):
        return time.ticks_ms()
P = probes.Probes()
P.ads_volts = {0: lambda: MA / 1000 * 150, 1: lambda: EC_V, 2: lambda: PH_V}
P.pin_volts = {SUPPLY_PIN: lambda: SUPPLY_V}
P.sonar_mm = lambda: SONAR_MM
P.sonar_mode = SONAR_MODE
P.temp_c = lambda: TEMP_C
P.amps = lambda: AMPS
class Hal:  # jkfw.hal on this board: its sensors' calls are the stand-ins
    @staticmethod
    def Hal(cfg):
        h = SimHal(cfg, Ms())
        probes.fit(h, P)
        return h
jkfw.hal = Hal
"""


def approx_rows(rows):
    return [[pytest.approx(v, rel=1e-6) if isinstance(v, float) else v for v in r]
            for r in rows]  # fmt: skip


@pytest.mark.micropython
def test_fake_sensor_rows_are_what_micropython_gives(mpy, tmp_path):
    """The doctor's sensor code in real MicroPython (WebAssembly) with the
    firmware and the same stand-ins on the same wires gives the fake's rows."""
    from conftest import firmware_files

    cases = [{}, {"sonar_mode": "trigger"}]
    for over in cases:
        tank = dict(SENSORS["tank"], sonar=over.get("sonar_mode", "auto"))
        prep = sensor_prep(tmp_path / str(len(over)), tank=tank)
        fb = healthy_board(tmp_path / f"b{len(over)}", prep, uname_machine=S3_CHIP,
                           sensors=wires(**over))  # fmt: skip
        fb.exec(ds.BOARD_CODE)
        fake = fb.eval("_jk_sensors('/app/a')")
        files = {"/app/a/" + k: v for k, v in firmware_files().items()}
        for name in ("probes", "hw"):
            files[f"/app/a/jksim/{name}.py"] = (
                REPO / "sim" / f"{name}.py"
            ).read_bytes()
        files["/app/a/jksim/__init__.py"] = b""
        files["/config.json"] = fb.files["/config.json"]
        w = {**WIRES, **over}
        consts = "\n".join(f"{k.upper()} = {w[k]!r}" for k in w)
        pin = S3_PINS["supply_adc"]
        script = (f"{consts}\nSUPPLY_PIN = {pin}\n" + BOARD_SENSORS + ds.BOARD_CODE
                  + "\nprint(repr(_jk_sensors('/app/a')))\n")  # fmt: skip
        real = ast.literal_eval(mpy.run(script, files=files).strip())
        assert fake == approx_rows(real), over


# --- monitor ----------------------------------------------------------------------


def signed_frames() -> tuple[list[bytes], bytes, bytes]:
    """A boot, clock and reading frame of DEVICE; one of an unknown device; a
    reading with its MAC changed (CRC fixed again)."""
    enc = codec.Encoder(int(DEVICE, 16), KEY, boot=7)
    ours = [
        bytes(enc.frame(codec.BOOT, 5, 0, 1, 0, 1, 0, 900, 100, 100)),
        bytes(enc.frame(codec.CLOCK, 1772323200, 1, 1, 40, 0)),
        bytes(enc.frame(codec.READING, 1772324100, 1, 10, 5, 300, 24, 0, 99)),
    ]
    stranger = codec.Encoder(0x11223344, bytes(32))
    other = bytes(stranger.frame(codec.HEARTBEAT, 1772324100, 1, 60, 90000, 0, 15, 1))
    bad = bytearray(ours[2])
    bad[-5] ^= 1
    bad[-4:] = codec.crc(bad[:-4]).to_bytes(4, "little")
    return ours, other, bytes(bad)


def keys_file(tmp_path: Path) -> str:
    p = tmp_path / "keys.json"
    p.write_text(json.dumps({"devices": {DEVICE: {"key": KEY.hex()}}}))
    return str(p)


def lines_of(frames: list[bytes], before: bytes = b"") -> bytes:
    return before + b"".join(b"jkf " + f.hex().encode() + b"\r\n" for f in frames)


def test_monitor_decodes_and_checks_frames(tmp_path):
    ours, other, bad = signed_frames()
    data = lines_of(
        [*ours, other, bad], b"jalkal: jkfw 0.1.0 build abc from /app/a\r\n"
    )
    data += b"jkf 00ff\r\npump: start"
    chunks = [data[i : i + 37] for i in range(0, len(data), 37)]  # splits mid-line
    ser = FakeSerial(chunks)
    out = io.StringIO()
    p = monitor.run(ser, keys_file(tmp_path), out=out)  # ends on Ctrl-C
    lines = [ln.split(" ", 1)[1] for ln in out.getvalue().splitlines()]
    assert lines[0] == "| jalkal: jkfw 0.1.0 build abc from /app/a"
    assert lines[1].startswith(f"uptime 5 s  {DEVICE} 7#0  boot") and lines[1].endswith(
        "[MAC ok]"
    )
    assert lines[2].startswith(f"2026-03-01T00:00:00Z  {DEVICE} 7#1  clock")
    assert "reading   source_pulses 10 supply_pulses 5 pump_s 300" in lines[3]
    assert lines[3].endswith("[MAC ok]")
    assert lines[4].startswith("2026-03-01T00:15:00Z  11223344 0#0  heartbeat")
    assert lines[4].endswith("[unknown device]")
    assert lines[5].endswith("[MAC BAD]")
    assert lines[6] == "frame? 00ff (CRC or length wrong)"
    assert lines[7] == "| pump: start"  # the last line, without its newline
    assert (p.frames, p.lines) == (6, 2)
    assert ser.written == b""  # only listens: never a byte to the board
    # the same frames as the decoder reads them
    o = ob.to_obj(ours[2], 0, len(ours[2]))
    assert o["inputs"] == ["pump", "mains"] and "inputs pump,mains" in lines[3]


def test_monitor_without_keys_shows_no_mac_verdict():
    ours, _other, _bad = signed_frames()
    out = io.StringIO()
    p = monitor.run(FakeSerial([lines_of(ours)]), out=out)
    assert p.frames == 3 and "MAC" not in out.getvalue()


def test_monitor_restart_shows_the_boot(tmp_path, monkeypatch):
    monkeypatch.setattr(monitor.time, "sleep", lambda s: None)
    ours, _other, _bad = signed_frames()
    ser = FakeSerial(
        [b"running before the reset\r\n"],
        boot=[b"jalkal: jkfw 0.1.0 build abc from /app/a\r\n", lines_of(ours[:1])],
    )
    out = io.StringIO()
    p = monitor.run(ser, keys_file(tmp_path), do_restart=True, out=out)
    assert ser.writes == [b"\r\x03\x03", b"\r\x02", SETTLE.encode() + b"\r", b"\x04"]
    assert ser.events == ["stopped", "input flushed", "soft reset"]
    text = out.getvalue()
    assert "running before" not in text and "KeyboardInterrupt" not in text
    assert "| MPY: soft reboot" in text and "from /app/a" in text
    assert p.frames == 1 and text.rstrip().endswith("[MAC ok]")


def test_monitor_stops_after_seconds_and_on_a_lost_port():
    ours, _other, _bad = signed_frames()
    t0 = time.monotonic()
    p = monitor.run(FakeSerial([lines_of(ours)], end="silent"), seconds=0.2,
                    out=io.StringIO())  # fmt: skip
    assert 0.2 <= time.monotonic() - t0 < 2 and p.frames == 3
    with pytest.raises(JalkalError, match="lost the board on /dev/ttyFAKE0"):
        monitor.run(FakeSerial([lines_of(ours)], end="lost"), out=io.StringIO())


# --- the fake against real MicroPython --------------------------------------------


class MicroPythonTransport:
    """Board's transport, answered by real MicroPython (WebAssembly): each exec
    whose output matters runs the session so far in a fresh interpreter over the
    same files; other execs (helpers, writes) join the session."""

    def __init__(self, mpy, files: dict[str, bytes]):
        self.mpy = mpy
        self.files = files
        self.history: list[str] = []

    def exec(self, code: str, data_consumer=None) -> bytes:
        from mpremote.transport import TransportExecError

        if not code.startswith(("print(repr(", "_jk_hashes(", "_jk_cat(")):
            self.history.append(code)
            return b""
        script = "\n".join([*self.history, "print('--8<--')", code])
        try:
            out = self.mpy.run(script, files=self.files)
        except self.mpy.MicroPythonError as e:
            raise TransportExecError(1, e.traceback or str(e)) from None
        got = out.split("--8<--\n", 1)[1].encode()
        if data_consumer is not None:
            data_consumer(got)
        return got


def on_micropython(mpy, files, *ops):
    """Run ops (Board method name, args) on a Board over real MicroPython; the last
    op's answer, or the exception type it raised."""
    b = Board("micropython")
    b.t = MicroPythonTransport(mpy, files)
    return _apply(b, ops)


def on_fake(files, *ops):
    fb = FakeBoard(files, sd="none")
    return _apply(fb, ops)


def _apply(b, ops):
    out = None
    for name, args in ops:
        try:
            out = getattr(b, name)(*args)
        except OSError:
            out = "OSError"  # the errno differs: 44 is ENOENT under WebAssembly
        except BoardError:
            out = "BoardError"
    if isinstance(out, list):  # listdir: MicroPython's WebAssembly ilistdir gives no
        out = [(n, d) for n, d, _s in out]  # size (an ESP32's does)
    return out


@pytest.mark.micropython
def test_fake_answers_what_board_helpers_answer_in_micropython(mpy):
    pytest.importorskip("mpremote")
    big = bytes(range(256)) * 13  # past one _jk_cat line (1536 bytes)
    files = {
        "/app/a/MANIFEST": b"abc 0.1.0\n",
        "/app/a/jkfw/__init__.py": b"VERSION = (0, 1, 0)\n",
        "/app/a/jkfw/big.mpy": big,
        "/app/active": b"a",
    }
    cases = [
        [("size", ("/app/a/jkfw/big.mpy",))],
        [("size", ("/nothing",))],
        [("hashes", ("/app",))],
        [("hashes", ("/nothing",))],
        [("sha256", ("/app/a/jkfw/big.mpy",))],
        [("sha256", ("/app/a/jkfw/big.mpy", 1000))],
        [("sha256", ("/nothing",))],
        [("listdir", ("/app/a",))],
        [("listdir", ("/nothing",))],
        [("listdir", ("/app/active",))],
        [("read", ("/app/a/jkfw/big.mpy",))],
        [("read", ("/app/a/jkfw/big.mpy", 1500, 100))],
        [("read", ("/app/a/jkfw/big.mpy", 3000))],
        [("read", ("/nothing",))],
        [  # what deploy does to a slot, then the slot's hashes
            ("makedirs", ("/app/b/jkfw",)),
            ("write", ("/app/b/jkfw/x.mpy", big + b"!")),
            ("copy", ("/app/a/jkfw/__init__.py", "/app/b/jkfw/__init__.py")),
            ("write_atomic", ("/app/b/MANIFEST", b"def 0.1.0\n")),
            ("write_atomic", ("/app/active", b"b")),
            ("remove", ("/app/a/MANIFEST",)),
            ("rmtree", ("/app/a/jkfw",)),
            ("hashes", ("/app",)),
        ],
    ]
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
        real = list(pool.map(lambda ops: on_micropython(mpy, files, *ops), cases))
    for ops, want in zip(cases, real, strict=True):
        assert on_fake(files, *ops) == want, ops
    assert real[2]["/app/a/jkfw/big.mpy"] == (len(big), hashlib.sha256(big).hexdigest())
