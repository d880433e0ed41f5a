"""Store and forward (firmware/uplink.py) over the simulated modem: a cursor over the
frame log that moves only over acknowledged frames, re-sends after a power cut,
steps over frames refused for good, backs off and stays under its caps. The fake
server signs its answers with the device's key, as jalkal serve does."""

import hashlib

import pytest
from signed_ack import answer

from jkfw.logger import FrameLog
from jkfw.modem import Modem
from jkfw.store import Store
from jkfw.uplink import BADSIG, FEWER, SKIP1, SKIPALL, Uplink, verdict
from jkproto import codec, local_day
from jksim.modem import fit
from jksim.vclock import VirtualClock

T0 = 1772303400  # 2026-03-01T00:00+05:30
DEV = 0x0A1B2C3D
KEY = bytes(range(32))
T_CALL = ("modem_power", "modem_pwrkey", "modem_rst")
DAY_MS = 86400 * 1000
CFG = {
    "device": "0a1b2c3d",
    "uplink_url": "http://127.0.0.1:9/",
    "apn": "internet",
    "uplink_s": 3600,
    "uplink_batch_bytes": 1024,
    "uplink_retry_s": 120,
    "uplink_retry_max_s": 3600,
    "uplink_max_hour": 4,
    "uplink_max_day": 48,
    "uplink_day_bytes": 150000,
    "tz_offset_min": 330,
}


def utc_day(ms):
    return (T0 + ms // 1000) // 86400


class Server:
    """The ingest contract of docs/uplink.md, in memory: one copy per (device, boot,
    seq), acked_bytes = the acknowledged prefix of the body; the answer signed with
    ack_key (None: the device is unknown, its sig random)."""

    def __init__(self):
        self.frames = {}
        self.signer = codec.Signer(KEY)  # checks the frames' MACs
        self.ack_key = KEY
        self.status = None  # force an HTTP status (e.g. 503)
        self.reachable = True
        self.posts = 0
        self.dups = 0
        self.air = 0
        self.on_post = None
        self.pad = 0  # bytes of "acked" runs before acked_bytes in the answer

    def post(self, url, body):
        if not self.reachable:
            return 601, b"", 0
        self.posts += 1
        if self.on_post:
            self.on_post()
        if self.status:
            ans = b'{"error":"internal_error"}'
            self.air += len(body) + len(ans) + 700
            return self.status, ans, len(body) + len(ans) + 700
        body = bytes(body)
        frames = list(codec.scan(body))
        if sum(k for _o, k in frames) != len(body):
            ans = answer(self.ack_key, body, 0, 0, 0, 0, "malformed_body")
            return 400, ans, 0
        acked = rejected = stored = dups = 0
        prefix = True
        for o, k in frames:
            f = body[o : o + k]
            h = codec.unpack_head(f)
            ok = codec.verify(f, 0, k, self.signer)
            key = (h[4], h[5], h[6])
            if ok and key in self.frames:
                self.dups += 1
                dups += 1
            elif ok:
                self.frames[key] = f
                stored += 1
            if ok and prefix:
                acked += k
            if not ok:
                rejected += 1
                prefix = False
        # pad: one "acked" run per frame put first, as a server that wrote them
        # before the signed fields would (the board keeps 160 bytes of an answer)
        front = {"acked": [["0a1b2c3d", 1, 0, 1]] * len(frames)} if self.pad else None
        error = "bad_mac" if rejected else ""
        ans = answer(self.ack_key, body, len(frames), stored, dups, acked, error,
                     front=front)  # fmt: skip
        status = 200 if rejected < len(frames) else 403
        self.air += len(body) + len(ans) + 700
        return status, ans, len(body) + len(ans) + 700


class Board:
    """The uplink with the frame log, state file and modem of a board, plus a task
    that logs a reading every 15 min; power cuts and reboots keep the flash."""

    def __init__(self, tmp, server, family="sim800", sd=True, **over):
        self.tmp = tmp
        self.sd = tmp / "sd"
        self.flash = tmp / "flash"
        self.sd.mkdir(exist_ok=True)
        self.flash.mkdir(exist_ok=True)
        self.cfg = dict(CFG, **over)
        self.clock = VirtualClock(T0)
        self.family = family
        self.sm = fit(self, self.clock, family, T_CALL, utc0=T0, post=server.post)
        self.server = server
        self.sd_ok = sd
        self.events = []
        self.logged = []  # (boot, seq) of every frame logged
        self.boot()

    def boot(self):
        self.store = Store(str(self.flash))
        self.state = self.store.load()
        self.state["epoch"] += 1
        self.store.save(self.state)
        self.enc = codec.Encoder(DEV, KEY, boot=self.state["epoch"])
        self.log = FrameLog(
            str(self.sd) if self.sd_ok else "/nonexistent", str(self.flash)
        )
        uart, pins = self.modem
        self.m = Modem(uart, self.clock, self.family, pins)
        self.up = Uplink(
            self.cfg, self.clock, self.m, self.log, self.state,
            lambda: self.store.save(self.state), self.event, self.set_time,
            signer=codec.Signer(KEY),
        )  # fmt: skip
        self.clock.spawn(self.readings())
        self.clock.spawn(self.up.run())

    def event(self, name, reason, value):
        self.events.append((name, reason, value))

    def set_time(self, t):
        self.clock.set_utc(t, 2)

    def frame(self, kind=codec.READING, values=(1, 2, 3, 24, 0, 99)):
        t, q = self.clock.now()
        f = self.enc.frame(kind, t, q, *values)
        self.log.append(f, local_day(t, 330) if q else 0)
        self.logged.append((self.enc.boot, self.enc.seq - 1))
        return f

    async def readings(self):
        while True:
            self.frame()
            await self.clock.sleep_ms(900000)

    def power_cut(self, off_ms=60000):
        self.clock.stop()
        self.log.close()
        self.sm._off()
        self.clock.run_until(self.clock.ms + off_ms)
        self.clock.reboot()
        self.boot()

    def run_days(self, days):
        self.clock.run_until(self.clock.ms + int(days * DAY_MS))
        assert self.clock.failures == []

    def delivered(self):
        keys = {(b, s) for (_d, b, s) in self.server.frames}
        return [k for k in self.logged if k in keys]


def test_frames_go_up_once_and_the_cursor_persists(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.run_days(2)
    assert len(b.logged) == 193
    # everything logged before the last upload is on the server, once
    assert set(b.delivered()) >= set(b.logged[:-4])
    assert srv.dups == 0 and b.up.fails == 0
    saved = Store(str(b.flash)).load()["up"]
    assert saved[:2] == b.state["up"][:2] and saved[0] == 20260302
    # sessions: one an hour, each one POST (a dozen readings in 1 KB)
    assert 47 <= srv.posts <= 50
    assert b.events == []


def test_a_week_without_network_then_everything_goes_up(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.sm.outage = True
    b.run_days(7)
    assert srv.posts == 0 and srv.air == 0  # no network: no data used
    sessions_per_day = b.state["up"][6]
    assert sessions_per_day <= b.cfg["uplink_max_day"]
    assert b.up.fails > 10
    b.sm.outage = False
    b.run_days(1)
    assert set(b.delivered()) >= set(b.logged[:-4])
    assert srv.dups == 0


def test_power_cut_mid_send_re_sends_and_the_server_keeps_one(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.run_days(0.5)
    cut = []

    def once():
        if not cut:  # the server stores, the board dies before it reads the ack
            cut.append(b.clock.ms)
            b.clock.at(b.clock.ms + 1, lambda: b.power_cut())

    srv.on_post = once
    b.run_days(1)
    assert cut and srv.dups >= 1
    assert set(b.delivered()) >= set(b.logged[:-4])
    # the boot after the cut logged on; its frames went up too
    assert {bt for bt, _s in b.logged} == {1, 2}


def test_a_frame_refused_for_good_is_stepped_over_with_a_fault(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.clock.run_until(10 * 60000)
    good = codec.Encoder(DEV, KEY, boot=1, seq=b.enc.seq)
    bad = codec.Encoder(DEV, bytes(32), boot=1, seq=b.enc.seq)
    t, q = b.clock.now()
    f = bytes(bad.frame(codec.EVENT, t, q, 3, 21, 0))  # forged: wrong key
    b.log.append(f, local_day(t, 330))
    b.enc.seq = good.seq + 1  # the board's own frames go on after it
    b.logged.append((99, 99))
    b.run_days(1)
    assert ("fault_raised", "modem", 1) in b.events
    assert b.up.skipped == 1
    want = [k for k in b.logged[:-4] if k != (99, 99)]
    assert set(b.delivered()) >= set(want)


def test_frames_refused_for_good_do_not_block_forever(tmp_path):
    srv = Server()
    srv.signer = codec.Signer(bytes(32))  # every frame fails its MAC (an old key)
    b = Board(tmp_path, srv)
    b.run_days(1)
    assert srv.frames == {}
    assert b.up.skipped >= 90  # stepped over, whole batches at a time
    assert srv.posts < 40  # not one request per frame
    assert [e for e in b.events if e[0] == "fault_raised"] == [
        ("fault_raised", "modem", b.events[0][2])
    ]


def test_a_device_the_server_does_not_know_keeps_its_backlog(tmp_path):
    # its answers carry a random sig: nothing verifies, nothing is skipped; once
    # the server has its key (provisioned late) every frame goes up
    srv = Server()
    srv.signer = codec.Signer(bytes(32))
    srv.ack_key = None
    b = Board(tmp_path, srv)
    b.run_days(1)
    assert srv.frames == {} and b.up.skipped == 0 and b.up.badsig >= 5
    assert b.events == [("fault_raised", "bad_ack", 403)]  # once
    assert b.up.fails >= 5 and srv.posts < 40  # backing off
    srv.signer = codec.Signer(KEY)
    srv.ack_key = KEY
    b.run_days(1)
    assert set(b.delivered()) >= set(b.logged[:-4])
    assert b.up.skipped == 0


def test_torn_and_garbage_bytes_in_the_log_are_stepped_over(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.clock.run_until(10 * 60000)
    t, q = b.clock.now()
    path = b.log.day_path(local_day(t, 330))
    f = bytes(
        codec.Encoder(DEV, KEY, boot=9).frame(codec.READING, t, q, 1, 2, 3, 4, 5, 6)
    )
    with open(path, "ab") as fh:
        fh.write(b"\x00garbage" + f[:20])  # a bad sector, then a torn write
    b.run_days(1)
    assert set(b.delivered()) >= set(b.logged[:-4])
    assert srv.dups == 0


def test_retries_back_off_and_are_capped(tmp_path):
    srv = Server()
    srv.status = 503
    b = Board(tmp_path, srv, uplink_max_hour=2, uplink_max_day=10)
    starts = []
    orig = b.up.session

    async def spy(upload):
        if upload:
            starts.append(b.clock.ms)
        return await orig(upload)

    b.up.session = spy
    b.run_days(2)
    gaps = [(y - x) / 1000 for x, y in zip(starts, starts[1:], strict=False)]
    assert gaps[0] >= 90 and gaps[1] >= 180 and gaps[2] >= 360  # doubling, +-25 %
    # the day of the caps is the UTC day
    per_day = {}
    for s in starts:
        per_day[utc_day(s)] = per_day.get(utc_day(s), 0) + 1
    assert max(per_day.values()) <= 10
    for h in range(48):  # per hour (the window starts at a session)
        assert sum(1 for s in starts if h * 3600000 <= s < (h + 1) * 3600000) <= 4
    assert b.log.files() and srv.frames == {}


def test_the_daily_byte_budget_holds(tmp_path):
    srv = Server()
    srv.status = 503
    fast = {"uplink_retry_s": 60, "uplink_retry_max_s": 60, "uplink_max_hour": 100}
    b = Board(tmp_path, srv, uplink_day_bytes=10000, uplink_max_day=1000, **fast)
    days = []
    srv.on_post = lambda: days.append(utc_day(b.clock.ms))
    b.run_days(1)
    assert len(days) > 5
    for d in set(days):  # each POST counts its body (>= 40 B) and 1000 B overhead
        assert days.count(d) <= 10000 // 1040
    assert b.state["up"][7] <= 10000


def test_frames_on_the_flash_ring_go_up(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv, sd=False)
    b.run_days(1)
    assert b.log.mode == "flash"
    assert set(b.delivered()) >= set(b.logged[:-4])


def test_an_answer_cut_short_makes_batches_smaller(tmp_path):
    srv = Server()
    srv.pad = 12  # the answer's "acked" runs push acked_bytes past the modem buffer
    b = Board(tmp_path, srv)
    b.run_days(1)
    assert set(b.delivered()) >= set(b.logged[:-4])


def test_the_network_sets_the_clock(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.clock.quality = 0
    b.run_days(0.1)
    assert b.clock.quality == 2


@pytest.mark.parametrize("family", ["sim800", "sim7600"])
def test_a_modem_clock_the_network_never_set_never_outranks_the_rtc(tmp_path, family):
    # SIM800 keeps 2004-01-01, SIM7000/SIM7600 1980-01-06 ("80/01/06": 2080 in
    # two digits) until the network gives the time; here it never does
    srv = Server()
    b = Board(tmp_path, srv, family)
    b.sm.utc0 = None
    b.clock.quality = 1  # a good RTC
    b.run_days(0.5)
    assert b.clock.quality == 1 and abs(b.clock.now()[0] - (T0 + 43200)) < 60
    assert len(srv.frames) > 10  # uploads went on


def test_network_time_that_comes_after_registration_is_read_before_the_end(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.clock.quality = 0
    b.sm.nitz_ms = 2000  # NITZ 2 s after registration, while the batch goes up
    b.clock.run_until(300000)  # the first session (at 60 s), not the next hour's
    assert b.clock.quality == 2
    assert abs(b.clock.now()[0] - (T0 + b.clock.ms // 1000)) <= 1
    assert len(srv.frames) == 1


BODY = bytes(range(80))  # a batch of 80 bytes (its SHA-256 is what is signed)
SHA = hashlib.sha256(BODY).digest()


def ans(*args, key=KEY, body=BODY, **kw):
    return answer(key, body, *args, **kw)


VERDICTS = [
    # signed answers: the signed numbers decide, whatever the status says
    (200, ans(2, 2, 0, 80), 80),
    (200, ans(2, 1, 0, 40, "bad_mac"), 40),
    (200, ans(2, 2, 0, 40).replace(b":", b": "), 40),  # spaces are read too
    (200, ans(2, 1, 0, 0, "bad_mac"), SKIP1),  # the first refused, the next taken
    (403, ans(2, 0, 0, 0, "bad_mac"), SKIPALL),
    (200, ans(2, 0, 0, 0, "bad_mac"), SKIPALL),  # a status put to 200 changes nothing
    (403, ans(2, 1, 0, 0, "bad_mac"), SKIP1),  # nor one put to 403
    (400, ans(1, 0, 0, 0, "malformed_frame"), SKIP1),
    (400, ans(0, 0, 0, 0, "malformed_body"), None),
    (409, ans(2, 0, 0, 0, "conflict"), SKIPALL),
    # no signature needed to move nothing
    (200, b'{"ok":true,"frames":2,"acked":[["0a1b2c3d",1,0', FEWER),  # cut short
    (413, b"", FEWER),
    (503, b"", None),
    (601, b"", None),
    (429, ans(2, 2, 0, 80), None),
    (408, b"", None),
    (None, b"", None),
    # answers that do not verify: no answer
    (200, b'{"ok":true,"acked_bytes":80}', BADSIG),  # unsigned (an old server)
    (200, b'{"ok":true,"frames":2,"stored":2,"duplicate":0,"acked_bytes":80}', BADSIG),
    (403, b'{"frames":2,"rejected":2,"error":"bad_mac"}', BADSIG),
    (400, b"", BADSIG),
    (200, ans(2, 2, 0, 80, key=bytes(32)), BADSIG),  # another key
    (200, ans(2, 2, 0, 80, key=None), BADSIG),  # random: a device the server lacks
    (200, ans(2, 2, 0, 80, body=BODY[::-1]), BADSIG),  # another batch's answer
    (200, ans(2, 2, 0, 80, device="0a1b2c3e"), BADSIG),  # another device's
    (200, ans(2, 1, 0, 40, "bad_mac").replace(b":40", b":80"), BADSIG),  # altered
    (403, ans(2, 0, 0, 0, "bad_mac").replace(b'"frames":2', b'"frames":1'), BADSIG),
    (200, ans(2, 2, 0, 80).replace(b'"sig":"', b'"sig":"0'), BADSIG),
]


@pytest.mark.parametrize("status, body, want", VERDICTS)
def test_verdict(status, body, want):
    assert verdict(status, body, 80, 2, SHA, codec.Signer(KEY), "0a1b2c3d") == want


def test_verdict_without_the_key_moves_nothing():
    assert verdict(200, ans(2, 2, 0, 80), 80, 2, SHA, None, "0a1b2c3d") == BADSIG


def month_of_server_trouble(tmp_path, days):
    """The network is up but the server answers 503 for `days`: every session
    reaches it and spends data. Returns (estimated air bytes, POSTs, sessions)."""
    srv = Server()
    srv.status = 503
    b = Board(tmp_path, srv)
    b.run_days(days)
    return srv.air, srv.posts, b.up.fails


def test_a_week_of_server_trouble_costs_little(tmp_path):
    air, posts, fails = month_of_server_trouble(tmp_path, 7)
    # back-off to one try an hour, small batches while failing: ~26 tries a day
    assert posts <= 7 * 30 and air < 7 * 30 * 1300
    print(f"7 days of 503: {posts} POSTs, {air:,} B")


@pytest.mark.slow
def test_a_month_of_server_trouble_stays_under_5_mb(tmp_path):
    air, posts, fails = month_of_server_trouble(tmp_path, 31)
    assert air < 5_000_000
    print(f"31 days of 503: {posts} POSTs, {air:,} B")


def test_a_log_file_cleared_under_the_cursor_is_sent_from_its_start(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    b.run_days(0.5)
    day = b.log.day_path(b.state["up"][0])
    b.log.close()
    open(day, "wb").close()  # a technician cleared the card's logs
    srv.frames.clear()
    b.logged.clear()
    b.run_days(0.5)
    assert set(b.delivered()) >= set(b.logged[:-4]) and len(b.logged) > 40


def test_a_clock_put_back_past_midnight_still_sends_that_days_frames(tmp_path):
    from jkfw.uplink import start

    class Ctl:  # what start() needs of the controller
        pass

    class Hal:
        def start_modem(self):
            return b.modem

        def reset_cause(self):
            return 3  # watchdog: no "power back"

    srv = Server()
    b = Board(tmp_path, srv)
    b.run_days(0.1)
    ctl = Ctl()
    ctl.hal = Hal()
    from jkfw.config import DEFAULTS

    ctl.cfg = dict(DEFAULTS, **b.cfg)
    ctl.cfg.update(modem="sim800", modem_pwrkey_active=0, sms_to=[], sms_allow=[])
    ctl.clock, ctl.log, ctl.state, ctl.store = b.clock, b.log, b.state, b.store
    ctl.enc = b.enc  # its Signer checks the answers
    ctl.event = b.event
    ctl.emit = lambda *a: None
    up = start(ctl)
    up.up[:2] = [20260302, 4000]  # the cursor is in a day the clock ran ahead into
    up.set_time(T0 + 3600)  # the network says it is still 1 March
    assert up.up[:2] == [20260301, 0]


def test_other_files_in_the_log_folder_are_left_alone(tmp_path):
    srv = Server()
    b = Board(tmp_path, srv)
    (b.sd / "log").mkdir(exist_ok=True)
    (b.sd / "log" / "notes_01.jkl").write_bytes(b"x" * 100)  # not a day file
    (b.sd / "log" / "readme.txt").write_text("hello")
    b.run_days(0.5)
    assert set(b.delivered()) >= set(b.logged[:-4])
