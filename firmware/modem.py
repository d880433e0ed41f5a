# Cellular modem on a UART: AT commands, line- and timeout-based, fixed buffers.
# Families: "sim800" (2G; bearer AT+SAPBR, AT+HTTP...), "sim7000" (LTE-M; the same
# SAPBR/HTTP commands), "sim7600" (LTE; PDP context, AT+HTTP...). The UART is polled
# (non-blocking readinto, clock.sleep_ms between tries): the firmware awaits nothing
# but the clock, so the simulator's virtual clock drives it. SMS: sms.py.
RX_BYTES = 128  # longest line kept; a longer one is cut in two
BODY_BYTES = 160  # the start of the server's answer (the ack comes first)
POLL_MS = 20
BOOT_MS = {"sim800": 6000, "sim7000": 12000, "sim7600": 20000}
# a modem's clock outside these years was never set by the network: SIM800 starts
# at 2004, SIM7000/SIM7600 at 1980 ("80/01/06"), which two digits make 2080
YEARS = (2026, 2046)


def fields(line):
    """b'+CREG: 0,1' -> [b'0', b'1'] (quotes stripped)."""
    return [f.strip().strip(b'"') for f in line[line.find(b":") + 1 :].split(b",")]


def cclk_utc(line):
    """UTC seconds from b'+CCLK: "26/03/01,10:15:30+22"' (local time, zone in
    quarter hours), None unless its year is in YEARS (the modem's own default)."""
    i = line.find(b'"')
    v = line[i + 1 : i + 21]
    try:
        y, m, d, hh, mi, ss = [int(v[k : k + 2]) for k in range(0, 18, 3)]
        s = hh * 3600 + mi * 60 + ss - int(v[17:20]) * 900
    except ValueError:
        return None
    y += 2000
    if not (YEARS[0] <= y < YEARS[1] and 0 < m < 13 and 0 < d < 32):
        return None
    # days since 1970 (the inverse of jkproto.codec.civil)
    y -= m < 3
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return (y * 365 + y // 4 - y // 100 + y // 400 + doy - 719468) * 86400 + s


class Modem:
    """pins: {role: Pin} for "power", "pwrkey", "rst", "flight"; pwrkey_active:
    the level that presses the power key (0 wired straight to the module, 1
    through the transistor on LilyGO boards)."""

    dead_max = 3  # commands in a row with no answer: power-cycle

    def __init__(self, uart, clock, family, pins=None, pwrkey_active=0):
        self.uart = uart
        self.write = uart.write
        self.clock = clock
        self.family = family
        self.pins = pins or {}
        self.pk = pwrkey_active
        self.s76 = family == "sim7600"
        self.buf = bytearray(RX_BYTES)
        self.mv = memoryview(self.buf)
        self.n = 0
        self.body = bytearray(BODY_BYTES)
        self.blen = 0
        self.info = self.line = None
        self.dead = 0
        self.on = False
        self.cycles = 0  # power cycles of a modem that stopped answering
        self.pin = ""  # https/mqtts: SHA-256 of the server's certificate (tls.py)

    # --- the wire
    def _take(self):
        # one line from the buffer (or the '>' prompt, which has no line end)
        b, mv, n = self.buf, self.mv, self.n
        s = 0
        while s < n and b[s] in (10, 13):
            s += 1
        if s:
            b[: n - s] = mv[s:n]
            n -= s
        e = b.find(b"\n", 0, n)
        if n and b[0] == 62:
            e = 0
        elif e < 0:
            if n < RX_BYTES:
                self.n = n
                return None
            e = n - 1
        line = bytes(mv[: e + 1]).rstrip(b"\r\n")
        b[: n - e - 1] = mv[e + 1 : n]
        self.n = n - e - 1
        return line

    def _fill(self):
        k = self.n < RX_BYTES and self.uart.readinto(self.mv[self.n :])
        self.n += k or 0
        return k

    async def readline(self, ms):
        """The next non-empty line (bytes, no CR LF), or None after ms."""
        c = self.clock
        t0 = c.ticks_ms()
        while True:
            line = self._take()
            if line:
                return line
            if not self._fill():
                if c.ticks_diff(c.ticks_ms(), t0) >= ms:
                    return None
                await c.sleep_ms(POLL_MS)

    async def wait(self, ms, end=b"OK", want=None):
        """Lines until one starts with end (True, it is self.line), an error (False)
        or ms passed (None); self.info: the last line that starts with want."""
        c = self.clock
        t0 = c.ticks_ms()
        while True:
            line = await self.readline(ms - c.ticks_diff(c.ticks_ms(), t0))
            if line is None:
                self.dead += 1
                return None
            self.dead = 0
            if line.startswith(end):
                self.line = line
                return True
            if b"ERROR" in line[:10]:  # ERROR, +CME ERROR: n, +CMS ERROR: n
                return False
            if want and line.startswith(want):
                self.info = line

    async def at(self, cmd, ms=2000, want=None, end=b"OK"):
        """Send AT<cmd>\\r and wait() for its answer."""
        self.info = None
        self.n = 0  # forget late answers and unsolicited lines
        while self._fill():
            self.n = 0
        self.write(b"AT" + cmd + b"\r")
        return await self.wait(ms, end, want)

    async def csq(self):
        """The signal: +CSQ: <rssi>,<ber>, 0-31 (99: unknown)."""
        if await self.at(b"+CSQ", 2000, b"+CSQ") and self.info:
            v = fields(self.info)[0]
            if v.isdigit() and int(v) < 100:
                return int(v)
        return 99

    # --- power
    def _pin(self, role, v):
        p = self.pins.get(role)
        if p is not None:
            p.value(v)
        return p is not None

    async def sync(self, ms):
        """AT until the modem answers OK (it autobauds on the first ones)."""
        c = self.clock
        t0 = c.ticks_ms()
        while c.ticks_diff(c.ticks_ms(), t0) < ms:
            if await self.at(b"", 500):
                return True
        return False

    async def press(self, ms):
        # the power key held for ms (long: off, short: on)
        self._pin("pwrkey", self.pk)
        await self.clock.sleep_ms(ms)
        self._pin("pwrkey", 1 - self.pk)
        await self.clock.sleep_ms(100)

    async def power_on(self):
        """Switch the modem on (unless it answers already) and set it up."""
        self._pin("flight", 1)
        self._pin("rst", 1)
        if not await self.sync(1000):
            if self._pin("power", 1):
                await self.clock.sleep_ms(100)
            if "pwrkey" in self.pins:
                await self.press(600 if self.s76 else 1200)
            if not await self.sync(BOOT_MS[self.family]):
                return False
        self.on = True
        await self.at(b"E0")  # no echo
        # network time into AT+CCLK (SIM7600: automatic time zone update)
        await self.at(b"+CTZU=1" if self.s76 else b"+CLTS=1")
        return True

    async def power_off(self):
        """Sleep between uploads: the module off (its own command, then its switch);
        one that nothing could switch on again only turns its radio off."""
        if "power" in self.pins or "pwrkey" in self.pins:
            # SIM800/SIM7000 answer NORMAL POWER DOWN, and no OK
            await self.at(b"+CPOF" if self.s76 else b"+CPOWD=1", 3000, None, b"NORMAL")
            self._pin("power", 0)
            self.on = False
        else:
            await self.at(b"+CFUN=0", 10000)

    async def cycle(self):
        """Power-cycle a modem that stopped answering: the power switch, else the reset
        line, else a long press of the power key (off) before a normal one (on)."""
        self.cycles += 1
        self.dead = 0
        if self._pin("power", 0) or self._pin("rst", 0):
            await self.clock.sleep_ms(2000)
        elif "pwrkey" in self.pins:
            await self.press(3000)
        return await self.power_on()

    # --- network
    async def attach(self, ms):
        """Wait for network registration (home or roaming) up to ms."""
        c = self.clock
        t0 = c.ticks_ms()
        await self.at(b"+CFUN=1", 10000)  # the radio on: power_off may leave it off
        qs = (b"+CREG",) if self.family == "sim800" else (b"+CEREG", b"+CGREG")
        for q in qs:  # no URCs, no location fields (a former AT+CREG=2 stays set)
            await self.at(q + b"=0")
        while c.ticks_diff(c.ticks_ms(), t0) < ms and self.dead < self.dead_max:
            for q in qs:
                # +CREG: <n>,<stat>[,"<lac>","<ci>"]: 1 home, 5 roaming
                if await self.at(q + b"?", 2000, q) and self.info:
                    if fields(self.info)[1:2] in ([b"1"], [b"5"]):
                        return True
            await c.sleep_ms(2000)
        return False

    async def bearer(self, apn):
        """The packet data context up (SAPBR bearer 1; SIM7600: PDP context 1)."""
        if self.s76:
            await self.at(b'+CGDCONT=1,"IP","%s"' % apn)
            return await self.at(b"+CGACT=1,1", 30000)
        # +SAPBR: <cid>,<status>,"<ip>": 1 open (a reset left it open)
        if await self.at(b"+SAPBR=2,1", 2000, b"+SAPBR:") and self.info:
            if fields(self.info)[1:2] == [b"1"]:
                return True
        await self.at(b'+SAPBR=3,1,"Contype","GPRS"')
        await self.at(b'+SAPBR=3,1,"APN","%s"' % apn)
        return await self.at(b"+SAPBR=1,1", 85000)

    # --- HTTP
    async def http_start(self, url):
        await self.at(b"+HTTPTERM")  # a session left open by a reset: ERROR is fine
        if url[4] == 115:  # https:// (SIM7600): the server's certificate pinned
            from .tls import setup  # self.pin: its SHA-256 (uplink.start)

            if not await setup(self):
                return False
        return (
            await self.at(b"+HTTPINIT")
            and (self.s76 or await self.at(b'+HTTPPARA="CID",1'))
            and await self.at(b'+HTTPPARA="URL","%s"' % url)
            and await self.at(b'+HTTPPARA="CONTENT","application/octet-stream"')
            # SSL context 0, the default anyway: an ERROR here changes nothing
            and (url[4] != 115 or await self.at(b'+HTTPPARA="SSLCFG","0"') is not None)
        )

    async def post(self, n, send):
        """POST n body bytes, written by send(write); the HTTP status (SIM800 network
        errors: 600-604) or None, the answer's start in self.body[:self.blen]."""
        self.blen = 0
        # the time to send the body: seconds on the SIM7600, ms on the others
        t = b"%d,10" if self.s76 else b"%d,10000"
        if not await self.at(b"+HTTPDATA=" + t % n, 5000, None, b"DOWNLOAD"):
            return None
        send(self.write)
        if not (
            await self.wait(10000)
            and await self.at(b"+HTTPACTION=1", 5000)
            and await self.wait(120000, b"+HTTPACTION:")
        ):
            return None
        try:
            _, status, size = [int(f) for f in fields(self.line)]
            # SIM800: +HTTPREAD: n, n raw bytes, OK. SIM7600: OK, then blocks of
            # +HTTPREAD: DATA,n and n raw bytes, then +HTTPREAD: 0
            q = b"+HTTPREAD=0,%d" % size if self.s76 else b"+HTTPREAD"
            if size and await self.at(q, 10000, None, b"+HTTPREAD:"):
                while True:
                    f = fields(self.line)
                    k = int(f[-1])
                    if not k or not await self.raw(k) or f[0] != b"DATA":
                        break
                    if not await self.wait(10000, b"+HTTPREAD:"):
                        break
        except ValueError:
            return None
        return status

    async def raw(self, left):
        """The next left bytes as they come (line ends and all); the first
        BODY_BYTES of them kept in self.body. False if they stopped coming."""
        c = self.clock
        t0 = c.ticks_ms()
        while left > 0 and c.ticks_diff(c.ticks_ms(), t0) < 10000:
            if self.n or self._fill():
                k = min(self.n, left)
                room = min(k, BODY_BYTES - self.blen)
                self.body[self.blen : self.blen + room] = self.mv[:room]
                self.blen += room
                self.buf[: self.n - k] = self.mv[k : self.n]
                self.n -= k
                left -= k
            else:
                await c.sleep_ms(POLL_MS)
        return left <= 0

    async def http_end(self):
        await self.at(b"+HTTPTERM")
        await self.at(b"+CGACT=0,1" if self.s76 else b"+SAPBR=0,1", 10000)
