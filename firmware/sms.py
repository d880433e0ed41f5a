# SMS (SIM800, SIM7000, SIM7600): alerts to the configured numbers (dry-run lockout,
# pump fault, power back) and commands with the PIN from authorised numbers only:
# "STATUS 4821", "PUMP ON 4821", "PUMP OFF 4821", "AUTO 4821". Texts are read in PDU
# mode (pdu.py): nothing in a body can look like modem output, and the sender comes
# with its type of number, so only a full international number is ever authorised,
# never an alphanumeric sender. A command goes to the pump state machine as the
# button's does, so it never bypasses the safety rules. Every text is deleted once
# read. Loaded only when sms_to or sms_allow is configured.
COMMANDS = (b"STATUS", b"PUMP ON", b"PUMP OFF", b"AUTO")  # event value: index + 1
MODES = (None, "on", "off", "auto")
QUEUE = 4  # alerts waiting for the network; the oldest is dropped first
POLL_S = 300  # inbox check while commands are allowed
CMD_HOUR = 6  # texts from authorised numbers acted on per hour (PIN guesses too)
REPLY_DAY = 10  # replies per day; alerts have their own sms_max_day
HELP = b"? STATUS, PUMP ON, PUMP OFF or AUTO, then the PIN"


def parse(text, pin):
    """(command index, PIN right): (2, True) for b' pump  off 4821 ' with PIN b'4821';
    None if it is not a command. No PIN configured: never right."""
    w = text.upper().split()
    p = w.pop() if w and w[-1].isdigit() else b""
    t = b" ".join(w)
    if t not in COMMANDS:
        return None
    return COMMANDS.index(t), bool(pin) and p == pin


async def send(modem, number, text):
    if await modem.at(b"+CMGF=1") and await modem.at(
        b'+CMGS="%s"' % number, 5000, None, b">"
    ):
        modem.write(text + b"\x1a")
        return await modem.wait(60000)
    return False


async def inbox(modem, out, most=4):
    """Append (index, PDU in hex) of up to `most` stored texts to out."""
    if not await modem.at(b"+CMGF=0"):
        return
    modem.write(b"AT+CMGL=4\r")  # all, in PDU mode
    i = None
    while True:
        line = await modem.readline(10000)
        if line is None or line == b"OK" or b"ERROR" in line[:10]:
            return
        if line.startswith(b"+CMGL:"):  # +CMGL: <index>,<stat>,[<alpha>],<length>
            from .modem import fields  # loaded: a session holds the modem

            f = fields(line)[0]
            i = int(f) if f.isdigit() else None
        elif i is not None:  # the PDU (a long one's first RX_BYTES hex digits)
            if len(out) < most:
                out.append((i, line))
            i = None


class Sms:
    def __init__(self, cfg, command, status, log=None):
        # E.164 as the network gives it: +<digits>, spaces and dashes dropped
        self.to, self.allow = [
            [n.replace(" ", "").replace("-", "").encode() for n in cfg[k]]
            for k in ("sms_to", "sms_allow")
        ]
        self.pin = cfg["sms_pin"].encode()
        self.max_day = cfg["sms_max_day"]
        self.command = command  # command(mode): the pump, as the button does
        self.status = status  # status() -> bytes: the STATUS reply
        self.log = log  # log(reason, value): the sms_command event frame
        self.queue = []
        self.dropped = 0
        self.day = [0, 0, 0]  # day number, alerts and replies sent that day
        self.hour = [0, 0]  # hour number, texts acted on in it
        self.next_s = 0
        self.ok = True  # the last session reached the network
        self.ignored = 0  # texts not acted on: strangers, over the hourly cap

    def due_s(self, now_s):
        """Seconds until this module needs a session (alerts or the inbox)."""
        if self.allow or (self.queue and self.to):
            return self.next_s - now_s
        return 1 << 30

    def alert(self, text):
        if not self.to:
            return
        if len(self.queue) >= QUEUE:
            self.queue.pop(0)
            self.dropped += 1
        self.queue.append(text)
        if self.ok:
            self.next_s = 0  # now

    def handle(self, sender, text, hour=0):
        """A received text: the reply to send, or None (ignored)."""
        h = self.hour
        if sender not in self.allow or (h[0] == hour and h[1] >= CMD_HOUR):
            self.ignored += 1
            return None
        if h[0] != hour:
            h[0], h[1] = hour, 0
        h[1] += 1
        c = parse(text, self.pin)
        slot = 10 * (self.allow.index(sender) + 1)
        if c and c[1]:
            if self.log:
                self.log("sms", slot + c[0] + 1)
            if MODES[c[0]]:
                self.command(MODES[c[0]])
            return self.status()
        if self.log:
            self.log("bad_pin" if c else "sms", slot)
        return b"? PIN" if c else HELP

    async def _send(self, modem, number, text, day, kind):
        d = self.day
        if d[0] != day:
            d[0], d[1], d[2] = day, 0, 0
        cap = self.max_day if kind == 1 else REPLY_DAY
        if d[kind] < cap and await send(modem, number, text):
            d[kind] += 1
            return 1
        return 0

    async def session(self, modem, day=0, now_s=0):
        """Send the queued alerts, then act on the inbox (every text is deleted)."""
        while self.queue:
            sent = 0
            for n in self.to:
                sent += await self._send(modem, n, self.queue[0], day, 1)
            if not sent:
                break  # kept for the next session
            self.queue.pop(0)
        self.next_s = now_s + POLL_S
        got = []
        if self.allow:
            await inbox(modem, got)
        if not got:
            return
        from .pdu import deliver  # the decoder: loaded for the texts, then dropped

        for index, pdu in got:
            m = deliver(pdu)
            await modem.at(b"+CMGD=%d" % index)
            reply = m and self.handle(m[0], m[1], now_s // 3600)
            if reply:
                await self._send(modem, m[0], reply, day, 2)
        from . import unload  # the package's: loaded already

        unload("pdu")


def for_controller(ctl):
    """The controller's SMS: commands go to its pump as the button's do."""
    clock = ctl.clock

    def command(mode):
        ctl.pump.command(clock.uptime_s(), mode, "sms")
        ctl.pump_flag.set()

    def status():
        s = ctl.status()
        return ("pump %s %s %s, mode %s, %d L today%s" % (
            s["pump"], s["state"], s["why"], s["mode"], s["litres_today"],
            "".join(", " + f for f in s["faults"]),
        )).encode()  # fmt: skip

    def log(reason, value):
        ctl.event("sms_command", reason, value)

    return Sms(ctl.cfg, command, status, log)
