# Store and forward: frames go up in batches from a cursor over the frame log files
# (kept in the state file) and leave the backlog only when the server acknowledged
# them; a power cut mid-send re-sends, and the server keeps one copy. Sessions back
# off exponentially after a failure and are capped per hour and per day, with a daily
# byte budget on top: SIM data costs money. The session also reads the signal, sets
# the clock from the network and carries the SMS alerts and commands. An answer moves
# the cursor only when its sig verifies with the device's key for this very batch
# (protocol/SPEC.md "Uplink"): a forged or replayed answer is no answer. On the
# board the modem's driver (jkfw.modem, and jkfw.mqtt for an mqtt uplink) is loaded
# for a session and dropped after it: between sessions it holds no heap.
import hashlib
import os

from jkproto import codec, local_day

from . import unload
from .logger import RING_HDR_LEN

# air bytes of one POST besides its body: TCP/IP handshake, ACKs and close (~12
# packets of 40 B), the modem's request headers (~190 B), the server's answer
# (headers ~150 B, JSON ~250 B); docs/uplink.md has the measured figures
OVERHEAD_B = 1000
FIRST_S = 60  # after boot the pump logic goes first
REG_MS = 120000  # network registration
SKIP1, FEWER, SKIPALL = -1, -2, -3
BADSIG = -4  # an answer whose sig does not verify: no answer, send again later
CLOCK_NET = 2  # time quality: set from the network
# state["up"]: cursor (day file, its offset, nodate.jkl offset, ring generation,
# its offset), then the day, its sessions and air bytes (the caps survive reboots)
UP = [0, 0, 0, 0, 0, 0, 0, 0]


def _val(body, key):
    # the value after key in the server's JSON answer: a number's digits or a
    # string's text, None when key is absent or the string is cut off. The keys are
    # jkproto.link's field names, spelt out here (a module costs heap on the board);
    # tests/test_link.py holds every wire literal of the firmware to link's
    i = body.find(key)
    if i < 0:
        return None
    i += len(key)
    while body[i : i + 1] == b" ":
        i += 1
    q = body[i : i + 1] == b'"'
    i += q
    j = i
    while j < len(body) and (body[j] != 34 if q else 47 < body[j] < 58):
        j += 1
    return bytes(body[i:j]) if j < len(body) or not q else None


def verdict(status, body, n, nf, sha=b"", signer=None, device=""):
    """The server's answer (docs/uplink.md) to nf frames in n body bytes of SHA-256
    sha: the bytes acknowledged (a prefix); SKIP1 / SKIPALL when the first / every
    frame is refused for good (bad MAC, conflict...); FEWER: send fewer at once;
    None: send again later (no answer, server trouble, a body damaged on the way);
    BADSIG: an answer whose sig does not verify with signer (device's key) for
    this batch: forged, another batch's, or a server without the key; as None.
    Only the signed numbers decide, never the status: a status is not signed."""
    if status == 413:
        return FEWER
    if not status or status // 100 not in (2, 4) or status in (408, 429):
        return None
    try:
        f = int(_val(body, b'"frames":'))
        s = int(_val(body, b'"stored":'))
        d = int(_val(body, b'"duplicate":'))
        a = int(_val(body, b'"acked_bytes":'))
        g = _val(body, b'"sig":') + b""  # TypeError when there is none
        e = (_val(body, b'"error":') or b"").decode()
        msg = codec.ack_msg(device, sha, n, f, s, d, a, e)
    except (TypeError, ValueError):  # a field missing or unreadable
        # cut short by the modem's buffer: fewer frames make a shorter answer
        return FEWER if status == 200 and b"}" not in body[-2:] else BADSIG
    if signer is None or codec.ack_sig(signer, msg) != g:
        return BADSIG
    if a > n or not (a or f):
        return None  # refused as a whole (damaged on the way, the store failed)
    if a:
        return a  # this much of the body is on the server
    # the first frame refused for good; every frame when none was taken
    return SKIPALL if f == nf and not s + d else SKIP1


class Uplink:
    def __init__(
        self, cfg, clock, modem, log, state, save, event, set_time, sms=None,
        link=None, signer=None, make=None,
    ):  # fmt: skip
        self.cfg = cfg
        self.clock = clock
        self.modem = modem
        self.log = log
        self.save = save  # persists state
        self.event = event  # event(name, reason, value): the controller's frames
        self.set_time = set_time  # set_time(utc_s): the clock from the network
        self.sms = sms
        url = cfg["uplink_url"].rstrip("/").encode()
        self.url = url + b"/v1/frames" if url[:4] == b"http" else url
        self.link = link or modem  # HTTP through the modem, or mqtt.Mqtt
        # make() -> (modem, link or None): the driver made for each session and
        # dropped after it (start() gives one); modem is None then between sessions
        self.make = make
        self.kept = [False, 0, 0]  # a dropped modem's on, dead and cycles
        up = state.get("up")
        if not isinstance(up, list) or len(up) != len(UP):
            up = list(UP)
        state["up"] = self.up = up
        self.buf = bytearray(cfg["uplink_batch_bytes"])
        self.mv = memoryview(self.buf)
        self.flag = clock.flag()  # set() wakes the task (an SMS alert)
        self.limit = 255  # frames per batch: halved when asked, doubled when acked
        self.fails = 0
        self.next_s = FIRST_S  # uptime of the next upload
        self.hour = [0, 0]  # uptime the hour began, sessions in it
        self.csq = 99
        self.backlog = 0  # bytes waiting
        self.faulty = False
        self.last_ok = None  # uptime of the last good upload session
        self.skipped = 0  # frames the server refused for good
        self.signer = signer  # the device's key: answers are signed with it
        self.badsig = 0  # answers whose sig did not verify
        self.sha = b""  # SHA-256 of the last body sent
        self.rng = int(cfg["device"], 16) | 1
        self.batch = self.best = None
        self.nf = 0

    # --- the cursor over the log files: a file is (kind, key), kind 0 nodate.jkl,
    # 1 a day file (key YYYYMMDD), 4 a ring slot (key: its generation)
    def _set(self, kind, key, off):
        if kind:
            self.up[kind - 1] = key
        self.up[kind or 2] = off

    def _pending(self):
        """(kind, key, path, offset) of the oldest file with bytes not yet
        acknowledged: nodate.jkl, the days, then the flash ring; sets backlog."""
        log = self.log
        self.backlog = 0
        self.best = None
        d = log.log_dir
        try:  # an iterator where there is one: a year of day files is no list
            for e in os.ilistdir(d) if hasattr(os, "ilistdir") else os.listdir(d):
                name = e if isinstance(e, str) else e[0]
                if name == "nodate.jkl":
                    self._see(0, 0, d + "/" + name)
                elif name[8:] == ".jkl" and name[:8].isdigit():
                    self._see(1, int(name[:8]), d + "/" + name)
        except (OSError, TypeError):
            pass
        ring = 0
        for i in range(log.ring_files):
            p = log.ring_path(i)
            try:
                with open(p, "rb") as f:
                    h = f.read(RING_HDR_LEN)
            except OSError:
                continue
            if len(h) == RING_HDR_LEN:
                ring = self._see(4, int.from_bytes(h[4:], "little"), p)
        if not ring:
            self.up[3] = self.up[4] = 0  # the ring was emptied: generations restart
        return self.best

    def _see(self, kind, key, p):
        u = self.up
        if not kind:
            off = u[2]
        elif key < u[kind - 1]:
            return 1  # all acknowledged
        elif key == u[kind - 1]:
            off = u[kind]
        else:
            off = RING_HDR_LEN if kind == 4 else 0
        try:
            left = os.stat(p)[6] - off
        except OSError:
            left = 0
        if left < 0:  # shorter than what was sent: a new file (logs cleared)
            off = RING_HDR_LEN if kind == 4 else 0
            self._set(kind, key, off)
            left = os.stat(p)[6] - off
        if left > 0:
            self.backlog += left
            if self.best is None or (kind, key) < self.best[:2]:
                self.best = (kind, key, p, off)
        return 1

    def _next(self):
        """Read the next batch: self.batch = (kind, key, offset, span of the file
        it covers, frames, body bytes), or None when nothing waits."""
        self.batch = None
        while True:
            f = self._pending()
            if f is None:
                return
            kind, key, path, off = f
            with open(path, "rb") as fh:
                fh.seek(off)
                n = fh.readinto(self.buf)
            nf = blen = end = 0
            for o, k in codec.scan(self.buf, 0, n):
                if nf == self.limit:
                    break
                nf += 1
                blen += k
                end = o + k
            if nf < self.limit:
                # past the last whole frame: a write torn by a power cut, or
                # garbage; a frame never grows once it is written
                end = n if n < len(self.buf) else max(end, n - codec.MAX_LEN + 1)
            if nf:
                self.batch = (kind, key, off, end, nf, blen)
                return
            self._set(kind, key, off + end)  # nothing whole: step over it

    def _frames(self, write=None, upto=1 << 30):
        # the batch's frames: written out, or the end of the last one within upto
        # body bytes (their count in self.nf)
        acc = pos = self.nf = 0
        h = write and hashlib.sha256()  # of the body as it was sent
        for o, k in codec.scan(self.buf, 0, self.batch[3]):
            if self.nf == self.batch[4] or acc + k > upto:
                break
            if write:
                write(self.mv[o : o + k])
                h.update(self.mv[o : o + k])
            acc += k
            pos = o + k
            self.nf += 1
        if h:
            self.sha = h.digest()
        return pos

    def _ack(self, v):
        """Move the cursor over what the answer v (verdict) acknowledged or
        refused for good; False when nothing moved."""
        kind, key, off, span, nf, blen = self.batch
        if v == SKIP1 or v == SKIPALL:
            pos = span
            for o, k in codec.scan(self.buf, 0, span if v == SKIP1 else 0):
                pos = o + k  # the first frame only
                break
            n = nf if v == SKIPALL else 1
            if not self.skipped:  # refused frames must not hold the backlog
                self.event("fault_raised", "modem", n)
            self.skipped += n
        else:
            pos = span if v >= blen else self._frames(None, v)
        if pos:
            self._set(kind, key, off + pos)
        return pos > 0

    # --- caps and back-off
    def _day(self):
        u = self.up
        day = self.clock.now()[0] // 86400
        if u[5] != day:
            u[5], u[6], u[7] = day, 0, 0
        return u

    # --- a session with the modem
    async def session(self, upload):
        """Modem up, registered, signal, time, SMS, then the backlog; True when it
        all went well (nothing to send counts as well)."""
        m, c = self.modem, self.clock
        ok = (m.on and m.dead < m.dead_max and await m.sync(2000)) or (
            (not m.on and await m.power_on()) or await m.cycle()
        )
        if ok == self.faulty:  # the modem's fault: raised and cleared once each
            self.faulty = not ok
            self.event("fault_raised" if self.faulty else "fault_cleared", "modem", 0)
        ok = ok and await m.attach(REG_MS)
        if self.sms:
            self.sms.ok = ok
            if not ok:
                self.sms.next_s = c.uptime_s() + 600
        if ok:
            self.csq = await m.csq()
            await self._time()
            if self.sms:
                await self.sms.session(m, self._day()[5], c.uptime_s())
            if upload and self.url:
                ok = await self._upload()
            await self._time()  # network time can come after registration
        if not (self.sms and self.sms.allow):
            await m.power_off()  # asleep until the next upload
        return ok

    async def _time(self):
        # the network's time (AT+CCLK?): better than none or the RTC; a modem
        # clock the network never set is refused (cclk_utc), so it never wins
        m = self.modem
        if self.clock.quality < CLOCK_NET and await m.at(b"+CCLK?", 2000, b"+CCLK"):
            from .modem import cclk_utc  # loaded: a session holds the modem

            t = m.info and cclk_utc(m.info)
            if t:
                self.set_time(t)

    async def _upload(self):
        m, cfg = self.modem, self.cfg
        self._next()
        if not self.batch:
            return True
        link = self.link
        ok = await m.bearer(cfg["apn"].encode()) and await link.http_start(self.url)
        while ok and self.batch:
            u = self._day()
            nf, blen = self.batch[4:]
            if u[7] + blen + OVERHEAD_B > cfg["uplink_day_bytes"]:
                ok = False  # today's budget is spent: the rest waits
                break
            u[7] += blen + OVERHEAD_B
            st = await link.post(blen, self._frames)
            v = st and verdict(
                st, m.body[: m.blen], blen, nf, self.sha, self.signer, cfg["device"]
            )
            if v == BADSIG:  # counted; raised once: forged, or the key is not known
                if not self.badsig:
                    self.event("fault_raised", "bad_ack", st)
                self.badsig += 1
                v = None
            if v == FEWER and nf == 1:
                v = None  # one frame cannot be fewer: later (an answer moves nothing)
            if v == FEWER:
                self.limit = max(1, nf // 2)
            elif v is None or not self._ack(v):
                ok = False
                self.limit = 4  # while it fails, each try costs little
            else:
                self.limit = min(255, self.limit * 2)
            self.save()
            self._next()
        self.save()
        await link.http_end()
        return ok

    async def run(self):
        c = self.clock
        while True:
            now = c.uptime_s()
            wait = min(self.next_s - now, self.sms.due_s(now) if self.sms else 1 << 30)
            if wait > 0:
                await c.wait(self.flag, wait * 1000)
                continue
            upload = now >= self.next_s
            h, u, cfg = self.hour, self._day(), self.cfg
            if now - h[0] >= 3600:
                h[0], h[1] = now, 0
            if upload and not (  # the caps per hour, per day, and on the day's bytes
                h[1] < cfg["uplink_max_hour"]
                and u[6] < cfg["uplink_max_day"]
                and u[7] + OVERHEAD_B <= cfg["uplink_day_bytes"]
            ):
                upload = False
                self.next_s = now + 600  # a cap holds: look again later
                if not self.sms or self.sms.due_s(now) > 0:
                    continue
            if upload:
                h[1] += 1
                u[6] += 1
                self.save()
            try:
                self.open()
                ok = await self.session(upload)
            except (OSError, ValueError, IndexError):
                ok = False  # a file or an answer it could not read: try again later
            self.close()
            if upload:
                self.fails = 0 if ok else self.fails + 1
                s = cfg["uplink_s"]
                if ok:
                    self.last_ok = c.uptime_s()
                else:  # exponential, capped, +-25 % (boards do not retry in step)
                    s = cfg["uplink_retry_s"] << min(self.fails - 1, 16)
                    s = min(s, cfg["uplink_retry_max_s"])
                    self.rng = (self.rng * 1103515245 + 12345) & 0x7FFFFFFF
                    s = s * 3 // 4 + (self.rng >> 8) % (s // 2 + 1)
                self.next_s = c.uptime_s() + s

    def open(self):
        """The modem's driver for a session (made by make(), its state as the last
        session left it)."""
        if self.modem is None:
            m, link = self.make()
            m.on, m.dead, m.cycles = self.kept
            self.modem, self.link = m, link or m

    def close(self):
        """After a session: the driver dropped, its code unloaded (make() loads it
        again for the next one); a modem given to the constructor stays."""
        m = self.modem
        if self.make is None or m is None:
            return
        self.kept = [m.on, m.dead, m.cycles]
        self.modem = self.link = None
        unload("mqtt")
        unload("modem")

    def cycles(self):
        """Power cycles of the modem so far (it may be dropped between sessions)."""
        return self.kept[2] if self.modem is None else self.modem.cycles

    def alert(self, text):
        """An SMS to the configured numbers, if SMS is set up."""
        if self.sms is not None:
            self.sms.alert(("jalkal %s: %s" % (self.cfg["device"], text)).encode())
            self.flag.set()


def start(ctl):
    """The controller's uplink (app.Controller.boot calls this when a modem is
    configured), or None when the board has no modem UART."""
    m = ctl.hal.start_modem()
    if m is None:
        return None
    cfg, clock = ctl.cfg, ctl.clock

    def make():
        # the driver for one session: its modules are loaded here, dropped after
        from .modem import Modem

        modem = Modem(m[0], clock, cfg["modem"], m[1], cfg["modem_pwrkey_active"])
        modem.pin = cfg["uplink_cert_sha256"]  # https/mqtts (tls.py)
        if cfg["uplink_url"][:4] != "mqtt":
            return modem, None
        from .mqtt import Mqtt

        return modem, Mqtt(modem, cfg["device"].encode(), ctl.enc.signer)

    sms = None
    if cfg["sms_to"] or cfg["sms_allow"]:
        from .sms import for_controller

        sms = for_controller(ctl)

    def set_time(utc_s):
        step = clock.set_utc(utc_s, CLOCK_NET)
        ctl.emit(codec.CLOCK, CLOCK_NET, clock.uptime_s(), step)
        day = local_day(utc_s, cfg["tz_offset_min"])
        if day < up.up[0]:  # a clock that ran ahead past midnight was put back:
            up.up[0], up.up[1] = day, 0  # that day's file gets frames again

    def save():
        ctl.store.save(ctl.state)

    up = Uplink(cfg, clock, None, ctl.log, ctl.state, save, ctl.event, set_time,
                sms, None, ctl.enc.signer, make)  # fmt: skip
    if ctl.hal.reset_cause() in (1, 6):  # power-on or brown-out reset: power is back
        up.alert("power back")
    return up
