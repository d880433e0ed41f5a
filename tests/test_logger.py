"""FrameLog: SD log with torn writes, flash ring fallback and catch-up."""

import errno
import json
import os
import textwrap

import pytest
from conftest import firmware_files

from jkfw import logger as lg
from jkfw.logger import FrameLog
from jkproto import codec
from jkproto import objects as ob

KEY = bytes(range(32))
DEVICE = 0x0A1B2C3D
DAY = 20260301
T0 = 1772323200  # 2026-03-01T00:00:00Z


def make_frames(n, boot=1, kinds=(codec.READING, codec.EVENT, codec.HEARTBEAT)):
    """n chained frames of one boot (bytes), kinds taken in turn."""
    enc = codec.Encoder(DEVICE, KEY, boot=boot)
    values = {
        codec.READING: (1000, 2000, 60, 0x18, 124, 21),
        codec.EVENT: (1, 19, 0),
        codec.HEARTBEAT: (3600, 50000, 12, 21, 2),
    }
    out = []
    for i in range(n):
        k = kinds[i % len(kinds)]
        out.append(bytes(enc.frame(k, T0 + 60 * i, 2, *values[k])))
    return out


def frames_in(data):
    return [bytes(data[o : o + n]) for o, n in codec.scan(data)]


def log_bytes(log):
    """All frames on the card, in files() order (ring slots excluded)."""
    data = b""
    for p in log.files():
        if p.startswith(log.log_dir):
            with open(p, "rb") as f:
                data += f.read()
    return data


def roots(tmp_path, name="x"):
    sd = tmp_path / name / "sd"
    fl = tmp_path / name / "flash"
    sd.mkdir(parents=True)
    fl.mkdir(parents=True)
    return str(sd), str(fl)


def test_day_files_and_nodate(tmp_path):
    sd, fl = roots(tmp_path)
    log = FrameLog(sd, fl)
    fr = make_frames(6)
    assert log.append(fr[0], 0)
    assert log.append(fr[1], DAY)
    assert log.append(memoryview(bytearray(fr[2])), DAY)
    assert log.append(fr[3], DAY + 1)
    assert (log.mode, log.sd_ok) == ("sd", True)
    log.close()
    names = [os.path.basename(p) for p in log.files()]
    assert names == ["20260301.jkl", "20260302.jkl", "nodate.jkl"]
    read = {n: open(os.path.join(sd, "log", n), "rb").read() for n in names}
    assert read == {
        "nodate.jkl": fr[0],
        "20260301.jkl": fr[1] + fr[2],
        "20260302.jkl": fr[3],
    }


def test_torn_last_frame_at_every_offset(tmp_path):
    before = make_frames(7, boot=1)
    after = make_frames(4, boot=2)  # the board rebooted: a new boot epoch
    total = sum(map(len, before))
    start = total - len(before[-1])
    for cut in range(start, total + 1):
        sd, fl = roots(tmp_path, "cut%d" % cut)
        log = FrameLog(sd, fl)
        for f in before:
            assert log.append(f, DAY)
        log.close()
        path = os.path.join(sd, "log", "20260301.jkl")
        os.truncate(path, cut)  # power lost with `cut` bytes on the card
        log = FrameLog(sd, fl)
        for f in after:
            assert log.append(f, DAY)
        assert log.mode == "sd"
        log.close()
        data = open(path, "rb").read()
        kept = before if cut == total else before[:-1]
        assert frames_in(data) == kept + after, cut
        objs, stats = ob.decode_stream(data)
        keys = [(o["boot"], o["seq"]) for o in objs]
        assert keys == [(1, i) for i in range(len(kept))] + [(2, i) for i in range(4)]
        assert {o["chain"] for o in objs} == {"ok"}
        assert stats["frames"] == len(kept) + 4
        assert stats["skipped_runs"] == (0 if cut in (start, total) else 1)
        assert not os.listdir(os.path.join(fl, "ring"))


class Card:
    """A fake SD card behind the logger's open(): it can vanish, fail after a
    byte budget (tearing the write) or fail at flush after a whole write."""

    def __init__(self, root):
        self.root = root
        self.present = True
        self.budget = None  # bytes the card still takes before failing
        self.fail_flush = False
        self.writes = self.flushes = 0

    def open(self, path, mode="r", *a):
        if not str(path).startswith(self.root):
            return open(path, mode, *a)
        if not self.present:
            raise OSError(errno.ENODEV, "no card")
        return CardFile(open(path, mode, *a), self)


class CardFile:
    def __init__(self, f, card):
        self.f = f
        self.card = card

    def write(self, b):
        c = self.card
        if not c.present:
            raise OSError(errno.EIO, "card gone")
        c.writes += 1
        if c.budget is not None and len(b) > c.budget:
            self.f.write(bytes(b[: c.budget]))
            self.f.flush()
            c.budget = 0
            raise OSError(errno.EIO, "card failed mid-write")
        if c.budget is not None:
            c.budget -= len(b)
        return self.f.write(b)

    def flush(self):
        self.card.flushes += 1
        self.f.flush()
        if self.card.fail_flush or not self.card.present:
            raise OSError(errno.EIO, "flush failed")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.fixture
def card(tmp_path, monkeypatch):
    sd, fl = roots(tmp_path, "card")
    c = Card(sd)
    c.flash = fl
    monkeypatch.setattr(lg, "open", c.open, raising=False)
    return c


def ring_size(fl):
    d = os.path.join(fl, "ring")
    return len(os.listdir(d)), sum(
        os.path.getsize(os.path.join(d, n)) for n in os.listdir(d)
    )


def test_one_write_and_flush_per_frame(card):
    log = FrameLog(card.root, card.flash)
    for f in make_frames(20):
        assert log.append(f, DAY)
    assert (card.writes, card.flushes) == (20, 20)


def test_ring_wraps_bounded_and_catches_up(card):
    ring_bytes = 400  # 9 reading frames (40 bytes) after the 8-byte header
    log = FrameLog(card.root, card.flash, ring_files=4, ring_file_bytes=ring_bytes)
    assert log.ring_capacity_frames == 3 * 9
    fr = make_frames(70, kinds=(codec.READING,))
    pre, away, post = fr[:10], fr[10:60], fr[60:]
    for f in pre:
        assert log.append(f, DAY)
    card.present = False
    for f in away:
        assert log.append(f, DAY)  # in the ring
        assert (log.mode, log.sd_ok) == ("flash", False)
        files, size = ring_size(card.flash)
        assert files <= 4 and size <= 4 * ring_bytes
    assert not log.retry_sd()  # still away: nothing changes
    # 50 frames, 9 per slot, 4 slots: two slots (18 frames) were overwritten
    assert log.lost_frames == 18
    assert 50 - log.lost_frames >= log.ring_capacity_frames
    card.present = True
    assert log.retry_sd()
    assert log.mode == "sd" and not log.ring_pending()
    assert ring_size(card.flash) == (0, 0)
    for f in post:
        assert log.append(f, DAY)
    assert frames_in(log_bytes(log)) == pre + away[18:] + post


def test_sd_missing_at_start_then_inserted(tmp_path):
    sd, fl = roots(tmp_path)
    os.rmdir(sd)  # no card mounted
    log = FrameLog(sd, fl)
    fr = make_frames(12)
    for f in fr[:8]:
        assert log.append(f, 0)
    assert log.mode == "flash"
    assert [os.path.basename(p) for p in log.files()] == ["00.jkl"]
    os.mkdir(sd)
    assert log.retry_sd()
    for f in fr[8:]:
        assert log.append(f, DAY)
    log.close()
    assert [os.path.basename(p) for p in log.files()] == ["20260301.jkl", "nodate.jkl"]
    # the ring went to the file of the last day it was given (day 0 here)
    read = [open(p, "rb").read() for p in log.files()]
    assert [frames_in(d) for d in read] == [fr[8:], fr[:8]]


def test_torn_sd_write_goes_to_ring_exactly_once(card):
    log = FrameLog(card.root, card.flash)
    fr = make_frames(10)
    for f in fr[:4]:
        assert log.append(f, DAY)
    card.budget = 17  # the card dies 17 bytes into the next frame
    for f in fr[4:7]:
        assert log.append(f, DAY)
    assert log.mode == "flash"
    assert not log.retry_sd()  # the card still fails
    card.budget = None
    assert log.retry_sd()
    for f in fr[7:]:
        assert log.append(f, DAY)
    data = log_bytes(log)
    assert frames_in(data) == fr
    assert len(data) == sum(map(len, fr)) + 17


def test_flush_failure_after_whole_write_is_not_duplicated(card):
    log = FrameLog(card.root, card.flash)
    fr = make_frames(6)
    for f in fr[:3]:
        assert log.append(f, DAY)
    card.fail_flush = True  # fr[3] reaches the card, yet the write reports failure
    assert log.append(fr[3], DAY)
    assert log.mode == "flash"
    card.fail_flush = False
    assert log.append(fr[4], DAY)  # still in flash mode until retry_sd
    assert log.retry_sd()
    assert log.append(fr[5], DAY)
    assert frames_in(log_bytes(log)) == fr


def test_power_cut_during_catch_up(card):
    log = FrameLog(card.root, card.flash, ring_files=3, ring_file_bytes=300)
    fr = make_frames(40)
    for f in fr[:5]:
        log.append(f, DAY)
    card.present = False
    for f in fr[5:25]:
        assert log.append(f, DAY)
    assert log.lost_frames == 0
    card.present = True
    card.budget = 250  # the copy stops part way (a torn frame on the card)
    assert not log.retry_sd()
    log.close()  # power cut: the next boot starts from the files alone
    card.budget = None
    log = FrameLog(card.root, card.flash, ring_files=3, ring_file_bytes=300)
    for f in fr[25:30]:
        assert log.append(f, DAY)  # catches up first
    assert not log.ring_pending()
    assert frames_in(log_bytes(log)) == fr[:30]


def test_power_cut_while_clearing_the_ring(card, monkeypatch):
    log = FrameLog(card.root, card.flash, ring_files=3, ring_file_bytes=300)
    fr = make_frames(30)
    log.append(fr[0], DAY)
    card.present = False
    for f in fr[1:20]:
        assert log.append(f, DAY)
    card.present = True

    class PowerCut(Exception):
        pass

    real_remove = os.remove
    calls = []

    def remove(path):
        calls.append(path)
        if len(calls) > 1:
            raise PowerCut
        real_remove(path)

    monkeypatch.setattr(os, "remove", remove)
    with pytest.raises(PowerCut):
        log.retry_sd()
    monkeypatch.setattr(os, "remove", real_remove)
    log.close()
    log = FrameLog(card.root, card.flash, ring_files=3, ring_file_bytes=300)
    for f in fr[20:]:
        assert log.append(f, DAY)
    assert frames_in(log_bytes(log)) == fr


def test_no_storage_at_all_never_raises(tmp_path):
    log = FrameLog(str(tmp_path / "nosd"), str(tmp_path / "noflash"))
    fr = make_frames(3)
    assert not log.append(fr[0], DAY)
    assert not log.append(fr[1], DAY)
    assert not log.retry_sd()
    assert log.lost_frames == 2 and log.mode == "flash"
    assert log.files() == []


def test_default_ring_capacity():
    log = FrameLog("/sd", "/flash")
    # 7 whole slots of (16384 - 8) // 41 frames: about 25 days at ~110 frames a day
    assert log.ring_capacity_frames == 2793
    with pytest.raises(ValueError):
        FrameLog("/sd", "/flash", ring_files=1)


MPY_SCRIPT = textwrap.dedent(
    """
    import gc, os, binascii
    from jkproto import codec
    from jkfw.logger import FrameLog

    def frames(n, boot):
        enc = codec.Encoder(0x0A1B2C3D, bytes(range(32)), boot=boot)
        return [bytes(enc.frame(codec.READING, %(t0)d + 60 * i, 2,
                                1000, 2000, 60, 0x18, 124, 21)) for i in range(n)]

    def readall(path):
        with open(path, "rb") as f:
            return f.read()

    def show(tag, data):
        print(tag, binascii.hexlify(data).decode())

    os.mkdir("/sd")
    os.mkdir("fl")
    fr = frames(60, 1)
    log = FrameLog("/sd", "fl", ring_files=3, ring_file_bytes=300)
    for f in fr[:10]:
        assert log.append(f, %(day)d)
    log.close()
    path = "/sd/log/%(day)d.jkl"
    data = readall(path)
    with open(path, "wb") as f:  # power cut 23 bytes into the last frame
        f.write(data[: len(data) - 17])
    log = FrameLog("/sd", "fl", ring_files=3, ring_file_bytes=300)
    log.append(fr[10], %(day)d)
    log.close()
    # the card is away: sd_root points at a folder that is not there
    away = FrameLog("/nosd", "fl", ring_files=3, ring_file_bytes=300)
    for f in fr[11:50]:
        assert away.append(f, %(day)d)
    print("mode", away.mode, away.sd_ok, away.lost_frames, away.ring_capacity_frames)
    print("ring", sorted(os.listdir("fl/ring")),
          sum(os.stat("fl/ring/" + n)[6] for n in os.listdir("fl/ring")))
    os.mkdir("/nosd")
    print("retry", away.retry_sd(), away.mode, os.listdir("fl/ring"))
    f = fr[50]
    away.append(f, %(day)d)
    gc.collect()
    a = gc.mem_alloc()
    for f in fr[51:]:
        away.append(f, %(day)d)
    print("alloc", gc.mem_alloc() - a)
    away.close()
    show("sd", readall(path))
    d = readall("/nosd/log/%(day)d.jkl")
    print("frames", len(list(codec.scan(d))))
    show("nosd", d)
    print("files", away.files())
    """
)


@pytest.mark.micropython
def test_frame_log_in_micropython(mpy):
    script = MPY_SCRIPT % {"t0": T0, "day": DAY}
    out = mpy.run(script, files=firmware_files()).splitlines()
    rows = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out}
    fr = make_frames(60, kinds=(codec.READING,))
    # 39 frames in 3 slots of 7: three slots overwritten once, 18 kept
    assert rows["mode"] == "flash False 21 14"
    names, size = rows["ring"].rsplit(" ", 1)
    assert json.loads(names.replace("'", '"')) == ["00.jkl", "01.jkl", "02.jkl"]
    assert int(size) <= 3 * 300
    assert rows["retry"] == "True sd []"
    sd = bytes.fromhex(rows["sd"])
    assert frames_in(sd) == fr[:9] + fr[10:11]  # fr[9] was torn
    assert len(sd) == 9 * 40 + 23 + 40
    nosd = bytes.fromhex(rows["nosd"])
    assert frames_in(nosd) == fr[32:]
    objs, _ = ob.decode_stream(nosd)
    assert [o["seq"] for o in objs] == list(range(32, 60))
    assert rows["files"] == "['/nosd/log/20260301.jkl']"
    assert int(rows["alloc"]) < 64 * 9  # appends allocate (almost) nothing


def test_echo_sees_every_frame_once_on_card_or_ring(tmp_path):
    """The board's console (jalkal monitor) gets each logged frame, whichever store
    took it."""
    sd, fl = roots(tmp_path)
    os.rmdir(sd)  # starts on the flash ring
    log = FrameLog(sd, fl)
    seen = []
    log.echo = seen.append
    fr = make_frames(6)
    for f in fr[:3]:
        assert log.append(f, DAY)
    os.mkdir(sd)
    assert log.retry_sd(DAY)
    for f in fr[3:]:
        assert log.append(f, DAY)
    log.close()
    assert seen == fr  # the ring's catch-up copy is not echoed again
    assert frames_in(log_bytes(log)) == fr


@pytest.mark.parametrize("on_card", [True, False])
def test_a_ctrl_c_while_the_console_is_written_loses_no_frame(tmp_path, on_card):
    """A tool's Ctrl-C lands while the board writes its console: the frame being
    echoed is on the card (or ring) already, so the frames after it (the stop's
    event, the next boot) keep an unbroken chain."""
    sd, fl = roots(tmp_path)
    if not on_card:
        os.rmdir(sd)  # the flash ring takes them
    log = FrameLog(sd, fl)
    fr = make_frames(4)

    def echo(f):
        if f == fr[1]:
            raise KeyboardInterrupt

    log.echo = echo
    assert log.append(fr[0], DAY)
    with pytest.raises(KeyboardInterrupt):
        log.append(fr[1], DAY)
    for f in fr[2:]:  # what the firmware writes on its way out
        assert log.append(f, DAY)
    if not on_card:
        os.mkdir(sd)
        assert log.retry_sd(DAY)  # the ring copied to the card
    log.close()
    assert frames_in(log_bytes(log)) == fr


@pytest.mark.parametrize("card", [True, False])
def test_board_boot_makes_its_flash_folder(tmp_path, card):
    """jkfw.main.start on a fresh file system (no /flash folder yet), with and
    without a card in the slot: without one the frames go to the flash ring."""
    from jkfw.main import start
    from jksim.hw import SimHal
    from jksim.vclock import VirtualClock

    (tmp_path / "config.json").write_text(json.dumps({"device": "0a1b2c3d"}))
    clock = VirtualClock(T0)
    echoed = []

    def make_hal(cfg):
        hal = SimHal(cfg, clock)
        hal.sd_present = card
        return hal

    if card:
        (tmp_path / "sd").mkdir()  # the mounted card
    ctl = start(
        make_hal,
        clock,
        str(tmp_path / "config.json"),
        str(tmp_path / "flash"),
        str(tmp_path / "sd"),
        echo=lambda f: echoed.append(bytes(f)),
    )
    clock.run_until(60000)
    # the console sees every frame from the boot frame on (jalkal monitor)
    assert len(echoed) == ctl.frames and echoed[0][3] == codec.BOOT
    assert (tmp_path / "flash" / "state.json").exists()
    assert ctl.frames > 0
    assert ctl.log.mode == ("sd" if card else "flash")
    ring = list((tmp_path / "flash" / "ring").glob("*.jkl"))
    assert bool(ring) is not card
