# A simulated SIM800 / SIM7000 / SIM7600 behind the fake UART (sim/hw.py SimUart): it
# answers the AT command set the firmware uses, byte by byte at the line rate with
# realistic delays on the virtual clock, and can fail like a real one: registration
# that never comes, a dropped PDP context, garbled or missing answers, a hang until
# power-cycled, and network outages. Its HTTP POSTs go to a real server (post()),
# over TLS for https:// URLs, verifying the server against the root CA downloaded
# with AT+CCERTDOWN as AT+CSSLCFG set it; its MQTT client logs in to a real broker
# (MqttLink). Virtual time stands still meanwhile. Runs under CPython and
# MicroPython (the HTTP, TLS and MQTT clients are imported only when used).
import binascii

from .hw import SimPin, SimUart

BOOT_MS = {"sim800": 3000, "sim7000": 5000, "sim7600": 12000}
# the air bytes of one POST besides body and answer: TCP handshake, ACKs and close
TCP_OVERHEAD_B = 12 * 40
OK = b"\r\nOK\r\n"
ERR = b"\r\nERROR\r\n"
CMGL = b'\r\n+CMGL: %d,"REC UNREAD","%s","","26/03/01,10:00:00+22"\r\n'
SMSC = b"+919810051914"  # the service centre that relays the texts
# printable ASCII in the GSM 7-bit default alphabet (TS 23.038 6.2.1): the same
# code but '@' 0, '$' 2 and '_' 17; the rest ([\\]^{|}~`) only as UCS2 here
GSM7 = {"@": 0, "$": 2, "_": 17, "\n": 10, "\r": 13}


def _gsm7(text):
    """Septets of text in the default alphabet, or None if it needs UCS2."""
    out = []
    for ch in text:
        v = GSM7.get(ch, ord(ch))
        if ch not in GSM7 and not (32 <= v < 127 and ch not in "[\\]^{|}~`"):
            return None
        out.append(v)
    return out


def ucs2(text):
    """UCS2 as SMS carries it (UTF-16 big-endian; MicroPython has no such codec)."""
    out = bytearray()
    for ch in text:
        c = ord(ch)
        units = (
            (c,) if c < 0x10000 else (0xD800 | (c - 0x10000) >> 10, 0xDC00 | c & 0x3FF)
        )
        for u in units:
            out += bytes((u >> 8, u & 255))
    return bytes(out)


def pack7(septets, fill=0):
    """GSM 7-bit packing (TS 23.038 6.1.2.1), after fill bits (a header's)."""
    out = bytearray((fill + 7 * len(septets) + 7) // 8)
    for k, v in enumerate(septets):
        b = fill + 7 * k
        i, sh = b >> 3, b & 7
        out[i] |= (v << sh) & 255
        if sh > 1:
            out[i + 1] |= v >> (8 - sh)
    return bytes(out)


def _semi(digits):
    # semi-octets, swapped in each octet, F-padded (TS 23.040 9.1.2.3)
    d = digits + ("F" if len(digits) % 2 else "")
    return bytes(int(d[k + 1] + d[k], 16) for k in range(0, len(d), 2))


def address(number, sc=False):
    """An address field (TS 23.040 9.1.2.5, 24.008 10.5.4.9 for the service centre):
    '+<digits>' international (type 91), digits unknown (81), letters alphanumeric
    (D0, GSM 7-bit)."""
    if number.startswith("+"):
        typ, body, n = 0x91, _semi(number[1:]), len(number) - 1
    elif number.isdigit():
        typ, body, n = 0x81, _semi(number), len(number)
    else:
        typ, body = 0xD0, pack7(_gsm7(number) or [63] * len(number))
        n = (7 * len(number) + 3) // 4  # semi-octets of the packed text
    if sc:
        return bytes([len(body) + 1, typ]) + body
    return bytes([n, typ]) + body


def deliver_pdu(sender, text, scts=(26, 3, 1, 10, 0, 0, 22), udh=b""):
    """An SMS-DELIVER PDU (TS 23.040 9.2.2.1) as a modem lists it, service centre
    first: GSM 7-bit when the text allows it, else UCS2. sender and text: str."""
    fo = 0x04 | (0x40 if udh else 0)  # SMS-DELIVER, no more messages to send
    sept = _gsm7(text)
    hl = len(udh) + 1 if udh else 0
    head = bytes([hl - 1]) + udh if udh else b""
    if sept is not None:
        fill = (7 - (8 * hl) % 7) % 7
        ud = head + pack7(sept, fill)
        udl, dcs = (8 * hl + fill) // 7 + len(sept), 0x00
    else:
        ud = head + ucs2(text)
        udl, dcs = len(ud), 0x08
    ts = "".join("%02d" % v for v in scts[:6])
    tz = scts[6]
    z = _semi("%02d" % abs(tz))[0] | (0x08 if tz < 0 else 0)
    return (
        address(SMSC.decode(), sc=True)
        + bytes([fo])
        + address(sender)
        + bytes([0, dcs])
        + _semi(ts)
        + bytes([z, udl])
        + ud
    )


# SIM7600 HTTP(S) <errcode>s (AT Command Manual V3.00 §13.3.2): the handshake
# failed, the CA file is missing
HANDSHAKE_FAILED, CA_MISSED = 715, 719
# +CMQTTCONNECT <err>s (§16.3.1): socket connect failed, CONNACK refusals 1-5 as
# 27-31 (bad user name or password 30, not authorized 31), handshake failed, no
# certificate set
MQ_SOCK, MQ_REFUSED, MQ_HANDSHAKE, MQ_NO_CERT = 3, 26, 32, 33


def http_post(url, body, timeout_s=10.0, tls=None):
    """(status, answer bytes, air bytes) of a real POST over loopback; (601, b"", 0)
    when the server cannot be reached (SIM800: network error); tls: (ssl context,
    SNI) for an https:// URL, (715, b"", 0) when its handshake fails."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url.decode() if isinstance(url, bytes) else url)
    if tls is not None:
        import ssl

        conn = http.client.HTTPSConnection(
            u.hostname, u.port or 443, timeout=timeout_s, context=tls[0]
        )
        try:
            conn.connect()
        except ssl.SSLError:
            conn.close()
            return HANDSHAKE_FAILED, b"", 0
        except OSError:
            conn.close()
            return 601, b"", 0
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout_s)
    # the headers a SIM800 sends with AT+HTTPACTION=1
    headers = {
        "Content-Type": "application/octet-stream",
        "Cache-Control": "no-cache",
        "Connection": "keep-alive",
        "User-Agent": "SIMCOM_MODULE",
    }
    try:
        conn.request("POST", u.path or "/", body=bytes(body), headers=headers)
        r = conn.getresponse()
        data = r.read()
    except OSError:
        return 601, b"", 0
    finally:
        conn.close()
    req = len("POST %s HTTP/1.1\r\n" % (u.path or "/")) + len(body) + 2
    req += sum(len(k) + len(v) + 4 for k, v in headers.items())
    req += len("Host: %s\r\nContent-Length: %d\r\n" % (u.netloc, len(body)))
    resp = len("HTTP/1.1 %d %s\r\n" % (r.status, r.reason)) + 2 + len(data)
    resp += sum(len(k) + len(v) + 4 for k, v in r.getheaders())
    return r.status, data, req + resp + TCP_OVERHEAD_B


class SimModem:
    """Settings (attributes): reg_ms, p_reg_fail (per power-on), p_pdp_drop (per
    POST), p_garble / p_drop (per answer), outage (no network), nitz_ms (network
    time that late after registration), utc0 None (no network time at all).
    Counters: air_bytes, posts, sms_sent, power_ons; http_log holds (status, body)
    of the last 4 POSTs."""

    def __init__(self, clock, uart, family="sim800", pins=None, pwrkey_active=0,
                 seed=1, utc0=None, post=http_post):  # fmt: skip
        self.clock = clock
        self.uart = uart
        uart.peer = self
        self.family = family
        self.s76 = family == "sim7600"
        self.pins = pins or {}
        self.pk = pwrkey_active
        self.post = post
        self.utc0 = utc0  # UTC at virtual ms 0 (the network's clock)
        self.rng = seed * 2654435761 % 4294967291 or 1
        for role, pin in self.pins.items():
            pin.on_write = lambda p, v, role=role: self.pin(role, v)
        self.reg_ms = 8000  # registration after boot
        self.nitz_ms = 0  # the network's time after registration (NITZ)
        self.p_reg_fail = 0.0
        self.p_pdp_drop = 0.0
        self.p_garble = 0.0
        self.p_drop = 0.0
        self.outage = False
        self.hung = False
        self.inbox = []  # [index, sender, text, pdu(, read)]
        self.certs = {}  # AT+CCERTDOWN: file name -> bytes (kept in its flash)
        self.reg_n = {}  # AT+CREG=<n> etc. (2: the cell too), saved as by AT&W
        self.sent = []  # (number, text) of every SMS sent
        self.http_log = []
        self.air_bytes = 0
        self.posts = 0
        self.power_ons = 0
        self.on = False
        self._press = None
        self._next_index = 1
        self._reset_state()
        if not self.pins:
            self._boot()  # nothing to switch it: it starts with the board

    # --- randomness (an LCG: the same seed gives the same run on both interpreters)
    def rand(self):
        self.rng = (self.rng * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.rng >> 4) / float(1 << 27)

    def _reset_state(self):
        self.ready_ms = None
        self.echo = True
        self.line = bytearray()
        self.data_left = 0
        self.data = bytearray()
        self.data_to = None
        if getattr(self, "mq", None) and "link" in self.mq:
            self.mq["link"].close()
        self.mq = None
        self.ssl = {}  # AT+CSSLCFG: context -> {parameter: value} (not saved)
        self.sms_to = None
        self.text_mode = False  # AT+CMGF: PDU mode after a power-on (27.005 3.2.3)
        self.http = None
        self.bearer = False
        self.clts = False
        self.no_reg = False
        self.radio_ms = 0  # when the radio came on (AT+CFUN=1); None: off
        self.answer = b""

    # --- power
    def _boot(self):
        self._reset_state()
        self.on = True
        self.power_ons += 1
        self.hung = False
        self.ready_ms = self.clock.ms + BOOT_MS[self.family]
        self.no_reg = self.rand() < self.p_reg_fail
        urc = b"\r\nRDY\r\n\r\n+CPIN: READY\r\n"
        if self.s76:
            urc += b"\r\nSMS DONE\r\n"
        else:
            urc += b"\r\nCall Ready\r\n\r\nSMS Ready\r\n"
        self.uart.send(urc, BOOT_MS[self.family])

    def _off(self):
        self.on = False
        self._reset_state()
        self.uart.clear()

    def _up(self, role):
        p = self.pins.get(role)
        return p is None or p.level == 1

    def pin(self, role, level):
        """The firmware drove one of the modem's control pins (level already set)."""
        if not (self._up("power") and self._up("rst")):
            if self.on:
                self._off()  # supply cut or held in reset
            self._press = None
            return
        if role != "pwrkey":
            if "pwrkey" not in self.pins and not self.on:
                self._boot()  # a module without a power key starts by itself
            return
        if level == self.pk:
            self._press = self.clock.ms
        elif self._press is not None:
            held = self.clock.ms - self._press
            self._press = None
            if not self.on and held >= (500 if self.s76 else 1000):
                self._boot()
            elif self.on and held >= 2500:
                self._off()

    def supply(self, on):
        """The board's supply (the modem shares it): off drops it and every control
        pin to its level at reset; on starts a module that has no pins to switch."""
        if not on:
            self._off()
            for pin in self.pins.values():
                pin.level = getattr(pin, "reset_level", pin.level)
        elif not self.pins:
            self._boot()

    def hang(self):
        """Stop answering until the power is cycled."""
        self.hung = True

    def registered(self):
        ms = self.clock.ms
        return (
            self.on
            and not self.outage
            and not self.no_reg
            and self.radio_ms is not None
            and ms >= max(self.ready_ms, self.radio_ms) + self.reg_ms
        )

    # --- the wire
    def _say(self, data, delay_ms=None):
        if delay_ms is None:
            delay_ms = 20 + int(self.rand() * 80)
        if self.p_drop and self.rand() < self.p_drop:
            return
        if self.p_garble and self.rand() < self.p_garble and data:
            b = bytearray(data)
            i = int(self.rand() * len(b))
            b[i] = 33 + int(self.rand() * 90)  # a printable character in a wrong place
            data = bytes(b)
        self.uart.send(data, delay_ms)

    def receive(self, data):
        if not self.on or self.hung or self.clock.ms < self.ready_ms:
            return  # off, hung or still booting: the bytes are lost
        for c in data:
            if self.data_left:
                self.data.append(c)
                self.data_left -= 1
                if not self.data_left:
                    if isinstance(self.data_to, bytes):  # AT+CCERTDOWN's file
                        self.certs[self.data_to] = bytes(self.data)
                    elif self.data_to:  # an MQTT topic or payload after its prompt
                        self.mq[self.data_to] = bytes(self.data)
                    self._say(OK)
            elif self.sms_to is not None:
                if c == 0x1A:
                    self._sms_sent(bytes(self.line))
                    self.line = bytearray()
                elif c != 0x1B:
                    self.line.append(c)
            elif c == 13:
                line = bytes(self.line)
                self.line = bytearray()
                if self.echo:
                    self.uart.send(line + b"\r")
                if line.upper().startswith(b"AT"):
                    self.command(line[2:])
            elif c != 10 and len(self.line) < 560:
                self.line.append(c)

    # --- commands
    def command(self, cmd):
        head = cmd.upper()
        for prefix, fn in (
            (b"+CMQTT", self.cmd_mqtt), (b"+CCERT", self.cmd_cert),
            (b"+CSSLCFG", self.cmd_ssl),
            (b"+HTTP", self.cmd_http), (b"+SAPBR", self.cmd_sapbr),
            (b"+CMG", self.cmd_sms), (b"+C", self.cmd_c),
        ):  # fmt: skip
            if head.startswith(prefix):
                return fn(head, cmd)
        if head in (b"", b"E0", b"E1", b"&W"):
            if head.startswith(b"E"):
                self.echo = head == b"E1"
            return self._say(OK)
        self._say(ERR)

    def _stat(self):
        if self.registered():
            return 1
        return 2 if self.on and not self.no_reg else 0

    def cmd_c(self, head, cmd):
        for q in (b"+CREG", b"+CGREG", b"+CEREG"):
            if head == q + b"?":
                # TS 27.007 7.2: <n>,<stat>[,<lac/tac>,<ci>[,<AcT>]] (n 2: location)
                n, st = self.reg_n.get(q, 0), self._stat()
                loc = b',"1A2B","00C3D4E5"' if n == 2 and st in (1, 5) else b""
                if loc and q != b"+CREG":
                    loc += b",7" if self.s76 or q == b"+CEREG" else b",3"
                return self._say(b"\r\n%s: %d,%d%s\r\n" % (q, n, st, loc) + OK)
            if head.startswith(q + b"=") and head[len(q) + 1 :] in (b"0", b"1", b"2"):
                self.reg_n[q] = int(head[len(q) + 1 :])  # kept while powered
                return self._say(OK)
        if head == b"+CSQ":
            q = 10 + (self.rng >> 7) % 15 if self.registered() else 99
            return self._say(b"\r\n+CSQ: %d,0\r\n" % q + OK)
        if head == b"+CCLK?":
            return self._say(b'\r\n+CCLK: "%s"\r\n' % self._cclk() + OK)
        if head in (b"+CFUN=0", b"+CFUN=1"):
            on = head[-1:] == b"1"
            if not on:
                self.radio_ms = None
                self.bearer = False
            elif self.radio_ms is None:
                self.radio_ms = self.clock.ms
            return self._say(OK, 300 if on else 1500)
        if head in (b"+CLTS=1", b"+CTZU=1"):
            self.clts = True
            return self._say(OK)
        if head.startswith(b"+CGDCONT="):
            return self._say(OK)
        if head == b"+CGACT=1,1":
            self.bearer = self.registered()
            return self._say(OK if self.bearer else ERR, 1000)
        if head == b"+CGACT=0,1":
            self.bearer = False
            return self._say(OK)
        if head in (b"+CPOWD=1", b"+CPOF"):
            self.uart.send(b"\r\nNORMAL POWER DOWN\r\n" if not self.s76 else OK, 50)
            self.on = False
            self._reset_state()
            return
        self._say(ERR)

    def _cclk(self):
        nitz = self.registered() and self.clock.ms >= (
            max(self.ready_ms, self.radio_ms) + self.reg_ms + self.nitz_ms
        )
        if not (self.clts and nitz) or self.utc0 is None:
            # the module's own clock before network time: SIM800 2004-01-01, SIM7000
            # and SIM7600 1980-01-06 (docs/modem.md cites the reports)
            y = b"04/01/01" if self.family == "sim800" else b"80/01/06"
            return y + b",00:00:%02d+00" % (self.clock.ms // 1000 % 60)
        t = self.utc0 + self.clock.ms // 1000 + 330 * 60  # IST: +22 quarters
        days, s = divmod(t, 86400)
        from jkproto.codec import civil

        y, m, d = civil(days)
        return b"%02d/%02d/%02d,%02d:%02d:%02d+22" % (
            y % 100, m, d, s // 3600, s // 60 % 60, s % 60)  # fmt: skip

    def cmd_sapbr(self, head, cmd):
        if head == b"+SAPBR=2,1":
            st = b'1,1,"10.64.3.17"' if self.bearer else b'1,3,"0.0.0.0"'
            return self._say(b"\r\n+SAPBR: %s\r\n" % st + OK)
        if head.startswith(b"+SAPBR=3,1,"):
            return self._say(OK)
        if head == b"+SAPBR=1,1":
            if self.bearer or not self.registered():
                return self._say(ERR, 2000 if self.bearer else 10000)
            self.bearer = True
            return self._say(OK, 1500)
        if head == b"+SAPBR=0,1":
            ok = self.bearer
            self.bearer = False
            return self._say(OK if ok else ERR, 500)
        self._say(ERR)

    def cmd_http(self, head, cmd):
        if head == b"+HTTPINIT":
            if self.http is not None:
                return self._say(ERR)
            self.http = {}
            return self._say(OK)
        if self.http is None:
            return self._say(ERR)
        if head == b"+HTTPTERM":
            self.http = None
            return self._say(OK)
        if head.startswith(b"+HTTPPARA="):
            k, _, v = cmd[10:].partition(b",")
            self.http[k.strip(b'"').upper()] = v.strip(b'"')
            return self._say(OK)
        if head.startswith(b"+HTTPDATA="):
            self.data_left = int(head[10:].split(b",")[0])
            self.data = bytearray()
            self.data_to = None
            return self._say(b"\r\nDOWNLOAD\r\n")
        if head == b"+HTTPACTION=1":
            self._say(OK)
            return self._action()
        if head.startswith(b"+HTTPREAD"):
            a = self.answer
            if self.s76:
                return self._say(
                    OK
                    + b"\r\n+HTTPREAD: DATA,%d\r\n" % len(a)
                    + a
                    + b"\r\n+HTTPREAD: 0\r\n"
                )
            return self._say(b"\r\n+HTTPREAD: %d\r\n" % len(a) + a + OK)
        self._say(ERR)

    def _action(self):
        self.answer = b""
        if self.bearer and (
            self.outage or (self.p_pdp_drop and self.rand() < self.p_pdp_drop)
        ):
            self.bearer = False  # the network dropped the PDP context
        if not self.bearer or not self.registered():
            return self._say(b"\r\n+HTTPACTION: 1,601,0\r\n", 3000)
        body = bytes(self.data)
        url = self.http.get(b"URL", b"")
        if self.s76 and url[:8].lower() == b"https://":
            tls = self._tls(int(self.http.get(b"SSLCFG", b"0") or 0))
            if not isinstance(tls, tuple):
                return self._say(b"\r\n+HTTPACTION: 1,%d,0\r\n" % tls, 3000)
            status, answer, air = self.post(url, body, tls=tls)
        else:
            status, answer, air = self.post(url, body)
        self.posts += 1
        self.air_bytes += air
        del self.http_log[:-3]  # the last 4
        self.http_log.append((status, body))
        self.answer = answer
        ms = 800 + len(body) // 5 + len(answer) // 5  # GPRS: ~40 kbit/s
        self._say(b"\r\n+HTTPACTION: 1,%d,%d\r\n" % (status, len(answer)), ms)

    # --- certificates and SSL contexts (SIM7600, AT Command Manual V3.00 §10.2)
    def cmd_cert(self, head, cmd):
        if not self.s76:
            return self._say(ERR)
        arg = cmd[cmd.find(b"=") + 1 :]
        if head == b"+CCERTLIST":  # §10.2.14: a line per file, then OK
            out = b"".join(b'+CCERTLIST: "%s"\r\n' % n for n in sorted(self.certs))
            return self._say((b"\r\n" + out if out else b"") + OK)
        if head.startswith(b"+CCERTDOWN="):  # §10.2.13: ">", the bytes, OK
            name, _, n = arg.rpartition(b",")
            name = name.strip(b'"')
            if not (_cert_name(name) and n.isdigit() and 0 < int(n) <= 10240):
                return self._say(ERR)
            self.data_left = int(n)
            self.data = bytearray()
            self.data_to = name
            return self._say(b"\r\n>", 50)
        if head.startswith(b"+CCERTDELE="):  # §10.2.15
            name = arg.strip(b'"')
            return self._say(OK if self.certs.pop(name, None) is not None else ERR)
        self._say(ERR)

    def cmd_ssl(self, head, cmd):
        # §10.2.12 AT+CSSLCFG="<parameter>",<ctx>,<value>: these parameters
        if not self.s76 or not head.startswith(b"+CSSLCFG="):
            return self._say(ERR)
        f = cmd[9:].split(b",")
        k = f[0].strip(b'"').lower()
        top = {b"sslversion": 4, b"authmode": 3, b"ignorelocaltime": 1,
               b"enablesni": 1, b"negotiatetime": 300}  # fmt: skip
        if len(f) != 3 or not f[1].isdigit() or int(f[1]) > 9:
            return self._say(ERR)
        v = f[2].strip(b'"')
        if k in top:
            if not v.isdigit() or int(v) > top[k]:
                return self._say(ERR)
            v = int(v)
        elif k == b"cacert":
            if not _cert_name(v):
                return self._say(ERR)
        else:
            return self._say(ERR)
        self.ssl.setdefault(int(f[1]), {})[k] = v
        self._say(OK)

    def _tls(self, n):
        """(ssl context, SNI) as SSL context n is set, or the HTTP(S) errcode when
        it cannot be made (CA_MISSED: server authentication without its CA file).
        The documents describe the server check as the root CA's (authmode 1), with
        no host name check: the pinned certificate is what authenticates."""
        import ssl

        c = self.ssl.get(n, {})
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        if c.get(b"sslversion", 4) == 3:  # 3: TLS 1.2 only; 4: all
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if c.get(b"authmode", 0) in (1, 2):
            pem = self.certs.get(c.get(b"cacert"))
            if pem is None:
                return CA_MISSED
            try:
                ctx.load_verify_locations(cadata=pem.decode("latin-1"))
            except (ssl.SSLError, ValueError):
                return HANDSHAKE_FAILED
            if c.get(b"ignorelocaltime", 1):  # the default: no time check
                ctx.verify_flags |= 0x200000  # OpenSSL X509_V_FLAG_NO_CHECK_TIME
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return ctx, bool(c.get(b"enablesni", 0))

    # --- MQTT (SIM7600): the module's client, here paho-mqtt to a real broker
    def cmd_mqtt(self, head, cmd):
        if not self.s76:
            return self._say(ERR)
        if head == b"+CMQTTSTART":
            if self.mq is not None:
                return self._say(ERR)
            self.mq = {}
            return self._say(OK + b"\r\n+CMQTTSTART: 0\r\n")
        mq = self.mq
        if mq is None:
            return self._say(ERR)
        args = cmd[cmd.find(b"=") + 1 :].split(b",")
        for name in (b"SUBTOPIC", b"TOPIC", b"PAYLOAD"):
            if head.startswith(b"+CMQTT%s=" % name):
                self.data_left = int(args[1])
                self.data = bytearray()
                self.data_to = name.decode().lower()
                return self._say(b"\r\n>", 50)
        if head.startswith(b"+CMQTTACCQ="):  # <index>,<id>[,<server_type>]
            mq["id"] = args[1].strip(b' "').decode()
            mq["tls"] = len(args) > 2 and args[2].strip() == b"1"  # 1: SSL/TLS
            return self._say(OK)
        if head.startswith(b"+CMQTTSSLCFG="):  # <session>,<ssl context>
            mq["ctx"] = int(args[1])
            return self._say(OK)
        if head.startswith(b"+CMQTTCONNECT="):
            return self._connect(mq, [a.strip(b' "') for a in args])
        link = mq.get("link")
        if head == b"+CMQTTSUB=0":
            ok = link is not None and link.subscribe(mq.get("subtopic", b""))
            self.air_bytes += 40 + 5 + 2 * 40
            return self._say(OK + b"\r\n+CMQTTSUB: 0,%d\r\n" % (0 if ok else 11), 500)
        if head.startswith(b"+CMQTTPUB=0"):
            return self._publish(link)
        if head.startswith(b"+CMQTTDISC="):
            if link is not None:
                link.close()
                mq.pop("link")
                self.air_bytes += 2 + 4 * 40
            return self._say(OK + b"\r\n+CMQTTDISC: 0,0\r\n")
        if head in (b"+CMQTTREL=0", b"+CMQTTSTOP"):
            if head == b"+CMQTTSTOP":
                self.mq = None
            return self._say(
                OK + (b"\r\n+CMQTTSTOP: 0\r\n" if self.mq is None else b"")
            )
        self._say(ERR)

    def _connect(self, mq, args):
        # §16.2.9: <index>,"tcp://HOST:PORT",<keepalive>,<clean>[,<user>[,<pass>]]
        hostport = args[1][6:].decode()  # "tcp://" with TLS too
        login = [a.decode() for a in args[4:6]]
        err, extra = 0, 60 + sum(len(a) for a in login)
        if not self.registered():
            err = MQ_SOCK
        else:
            tls = None
            if mq.get("tls"):
                # the context AT+CMQTTSSLCFG named, else the client's index (0);
                # the setting is cleared by a failed CONNECT (§16.2.5)
                tls = self._tls(mq.pop("ctx", 0))
                if not isinstance(tls, tuple):
                    err = MQ_NO_CERT if tls == CA_MISSED else MQ_HANDSHAKE
                extra += 2 * 1500  # the handshake: certificates both ways
            if not err:
                if mq.get("link") is not None:
                    mq.pop("link").close()
                try:
                    kw = {"tls": tls} if tls else {}
                    mq["link"] = MqttLink(hostport, mq.get("id", "jk"), *login, **kw)
                    self.air_bytes += extra + 4 + 7 * 40  # CONNECT, CONNACK, TCP
                except MqttRefused as e:
                    err = MQ_REFUSED + e.rc
                except OSError as e:
                    err = MQ_HANDSHAKE if _is_ssl(e) else MQ_SOCK
        return self._say(OK + b"\r\n+CMQTTCONNECT: 0,%d\r\n" % err, 1500)

    def _publish(self, link):
        mq = self.mq
        payload = mq.get("payload", b"")
        if link is None or not self.registered() or self.outage:
            return self._say(OK + b"\r\n+CMQTTPUB: 0,11\r\n", 3000)
        ok = link.publish(mq.get("topic", b""), payload)
        self.posts += 1
        del self.http_log[:-3]  # the last 4
        self.http_log.append((200 if ok else 0, payload))
        self.air_bytes += 30 + len(payload) + 4 + 3 * 40  # PUBLISH, PUBACK, TCP
        ms = 800 + len(payload) // 5
        self._say(OK + b"\r\n+CMQTTPUB: 0,%d\r\n" % (0 if ok else 11), ms)
        got = link.answer(10.0) if ok else None
        if got is None:
            return
        topic, ans = got
        self.air_bytes += 30 + len(ans) + 4 + 3 * 40
        self.uart.send(
            b"\r\n+CMQTTRXSTART: 0,%d,%d\r\n" % (len(topic), len(ans))
            + b"+CMQTTRXTOPIC: 0,%d\r\n%s\r\n" % (len(topic), topic)
            + b"+CMQTTRXPAYLOAD: 0,%d\r\n%s\r\n" % (len(ans), ans)
            + b"+CMQTTRXEND: 0\r\n",
            ms + 300 + len(ans) // 5,
        )

    # --- SMS
    def deliver(self, sender, text, pdu=None):
        """A text arrives from sender (stored on the SIM, +CMTI announced); pdu:
        the SMS-DELIVER as the network sent it (else made from sender and text)."""
        i = self._next_index
        self._next_index += 1
        if pdu is None:
            pdu = deliver_pdu(_str(sender), _str(text))
        self.inbox.append([i, sender, text, bytes(pdu)])
        if self.on and not self.hung:
            self.uart.send(b'\r\n+CMTI: "SM",%d\r\n' % i)

    def _sms_sent(self, text):
        ok = self.registered()
        if ok:
            self.sent.append((self.sms_to, text))
        self.sms_to = None
        self._say(b"\r\n+CMGS: %d\r\n" % len(self.sent) + OK if ok else ERR, 2500)

    def cmd_sms(self, head, cmd):
        if head in (b"+CMGF=0", b"+CMGF=1"):
            self.text_mode = head[-1:] == b"1"
            return self._say(OK)
        if head.startswith(b"+CMGS="):
            self.sms_to = cmd[6:].strip(b'"')
            return self._say(b"\r\n> ", 100)
        if head.startswith(b"+CMGL"):
            # TS 27.005 3.4.2: text mode +CMGL: <index>,<stat>,<oa>,[<alpha>],
            # [<scts>] and the raw text; PDU mode +CMGL: <index>,<stat>,[<alpha>],
            # <length> and the PDU in hex. Every message is marked read.
            out = b""
            for msg in self.inbox:
                i, sender, text, pdu = msg[:4]
                if self.text_mode:
                    out += CMGL % (i, sender) + text
                else:
                    n = len(pdu) - pdu[0] - 1  # the TPDU: no service centre
                    out += b"\r\n+CMGL: %d,%d,,%d\r\n" % (i, len(msg) > 4, n)
                    out += binascii.hexlify(pdu).upper()
                msg[4:] = [1]
            return self._say(out + b"\r\n" + OK if out else OK)
        if head.startswith(b"+CMGD="):
            i = int(head[6:].split(b",")[0])
            self.inbox = [m for m in self.inbox if m[0] != i]
            return self._say(OK)
        self._say(ERR)


def _str(v):
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else v


def _cert_name(name):
    # §10.2.13: 5 to 128 bytes, of type .pem or .der
    return 5 <= len(name) <= 128 and name[-4:].lower() in (b".pem", b".der")


def _is_ssl(e):
    import ssl

    return isinstance(e, ssl.SSLError)


class MqttRefused(OSError):
    """The broker answered CONNACK with return code rc (MQTT 3.1.1 §3.2.2.3: 4 bad
    user name or password, 5 not authorized)."""

    def __init__(self, rc):
        super().__init__("MQTT connection refused: %d" % rc)
        self.rc = rc


# paho-mqtt 2 gives a refusal as an MQTT 5 reason code; MQTT 3.1.1's own for it
_CONNACK = {128: 5, 132: 1, 133: 2, 134: 4, 135: 5, 136: 3}


class MqttLink:
    """The module's MQTT client: paho-mqtt on a real broker, clean session, QoS 1,
    the user name and password given, over TLS with tls (ssl context, SNI): the
    handshake fails with an ssl.SSLError, a login the broker refuses with
    MqttRefused (CPython only)."""

    def __init__(self, hostport, client_id, user=None, password=None, tls=None,
                 timeout_s=10.0):  # fmt: skip
        import queue

        import paho.mqtt.client as mqtt

        host, _, port = hostport.rpartition(":")
        self.got = queue.Queue()
        self.timeout_s = timeout_s
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True
        )
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls is not None:
            self.c.tls_set_context(tls[0])
            self.c.tls_insecure_set(True)  # no host name check (see SimModem._tls)
        rc = []
        self.c.on_connect = lambda c, u, f, reason, p: rc.append(reason.value)
        self.c.on_message = lambda c, u, msg: self.got.put((msg.topic, msg.payload))
        self.c.connect(host, int(port), 60)  # TLS: the handshake is made here
        self.c.loop_start()
        if not self._until(lambda: rc):
            self.close()
            raise OSError("MQTT broker did not answer")
        if rc[0]:
            self.close()
            raise MqttRefused(_CONNACK.get(rc[0], rc[0] if rc[0] < 6 else 5))

    def _until(self, cond):
        import time

        end = time.monotonic() + self.timeout_s
        while not cond() and time.monotonic() < end:
            time.sleep(0.005)
        return cond()

    def subscribe(self, topic):
        done = []
        self.c.on_subscribe = lambda *a: done.append(1)
        self.c.subscribe(topic.decode(), 1)
        return self._until(lambda: done)

    def publish(self, topic, payload):
        info = self.c.publish(topic.decode(), bytes(payload), qos=1)
        info.wait_for_publish(self.timeout_s)
        return info.is_published()

    def answer(self, timeout_s):
        """(topic, payload) of the next message received, or None."""
        import queue

        try:
            topic, payload = self.got.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return topic.encode(), payload

    def close(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()


def fit(hal, clock, family="sim800", board_pins=(), pwrkey_active=0, **kw):
    """Fit a simulated modem to a SimHal: its UART and one pin per modem role the
    board has (modem_power, modem_pwrkey, modem_rst, modem_flight)."""
    uart = SimUart(clock)
    pins = {}
    for role in ("power", "pwrkey", "rst", "flight"):
        if "modem_" + role in board_pins:
            idle = 1 - pwrkey_active if role == "pwrkey" else 0
            pins[role] = SimPin(clock, idle)
            pins[role].reset_level = idle
    modem = SimModem(clock, uart, family, pins, pwrkey_active, **kw)
    hal.modem = (uart, pins)
    return modem
