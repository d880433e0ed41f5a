# SMS (text mode, SIM800 and SIM7600): alerts to the configured numbers (dry-run
# lockout, pump fault, power back) and commands from authorised numbers only:
# STATUS, PUMP ON, PUMP OFF, AUTO. A command goes to the pump state machine as the
# button's does, so it never bypasses the safety rules. Texts from anyone else are
# deleted unanswered. Loaded only when sms_to or sms_allow is configured.
from .modem import fields

COMMANDS = {b"PUMP ON": "on", b"PUMP OFF": "off", b"AUTO": "auto", b"STATUS": None}
QUEUE = 4  # alerts waiting for the network; the oldest is dropped first
POLL_S = 300  # inbox check while commands are allowed


def digits(number):
    """The last 10 digits: +91 98..., 098... and 98... are the same phone."""
    return bytes(c for c in number if 47 < c < 58)[-10:]


def parse(text):
    """b' pump  on ' -> b'PUMP ON' if it is a command, else None."""
    t = b" ".join(text.upper().split())
    return t if t in COMMANDS else None


async def send(modem, number, text):
    if await modem.at(b"+CMGF=1") and await modem.at(
        b'+CMGS="%s"' % number, 5000, None, b">"
    ):
        modem.write(text + b"\x1a")
        return await modem.wait(60000)
    return False


async def inbox(modem, out, most=4):
    """Append (index, sender, text) of up to `most` stored texts to out."""
    if not await modem.at(b"+CMGF=1"):
        return
    modem.write(b'AT+CMGL="ALL"\r')
    head = None
    while True:
        line = await modem.readline(10000)
        if line is None or line == b"OK" or b"ERROR" in line[:10]:
            return
        if line.startswith(b"+CMGL:"):
            f = fields(line)
            head = (int(f[0]), f[2]) if len(f) > 2 and f[0].isdigit() else None
        elif head:
            if len(out) < most:
                out.append(head + (line,))
            head = None


class Sms:
    def __init__(self, cfg, command, status):
        self.to = [n.encode() for n in cfg["sms_to"]]
        self.allow = [digits(n.encode()) for n in cfg["sms_allow"]]
        self.max_day = cfg["sms_max_day"]
        self.command = command  # command(mode): the pump, as the button does
        self.status = status  # status() -> bytes: the STATUS reply
        self.queue = []
        self.dropped = 0
        self.day = [0, 0]  # day number, texts sent that day
        self.next_s = 0
        self.ok = True  # the last session reached the network
        self.ignored = 0  # texts from numbers not allowed

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

    def handle(self, sender, text):
        """A received text: the reply to send, or None (ignored)."""
        d = digits(sender)
        if len(d) < 6 or d not in self.allow:
            self.ignored += 1
            return None
        cmd = parse(text)
        if cmd is None:
            return b"? STATUS, PUMP ON, PUMP OFF, AUTO"
        if COMMANDS[cmd]:
            self.command(COMMANDS[cmd])
        return self.status()

    async def _send(self, modem, number, text, day):
        if self.day[0] != day:
            self.day[0], self.day[1] = day, 0
        if self.day[1] < self.max_day and await send(modem, number, text):
            self.day[1] += 1
            return 1
        return 0

    async def session(self, modem, day=0, now_s=0):
        """Send the queued alerts, then act on the inbox (every text is deleted)."""
        while self.queue:
            sent = 0
            for n in self.to:
                sent += await self._send(modem, n, self.queue[0], day)
            if not sent:
                break  # kept for the next session
            self.queue.pop(0)
        self.next_s = now_s + POLL_S
        got = []
        if self.allow:
            await inbox(modem, got)
        for index, sender, text in got:
            reply = self.handle(sender, text)
            await modem.at(b"+CMGD=%d" % index)
            if reply:
                await self._send(modem, sender, reply, day)


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

    return Sms(ctl.cfg, command, status)
