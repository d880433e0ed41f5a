"""`jalkal doctor`: one screen of checks on a board, each ✓ / ✗ / – with a fix.

Everything is read, nothing is changed: the firmware is stopped with Ctrl-C for the
checks and started again by a soft reset at the end. The pump relay is switched only
with --test-relay (and only while the dry-run switch reads safe). A check that cannot
be made on this board (no `machine.UART` on the virtual board, no uplink configured)
shows "–" and why, never a ✓. The exit status is 1 when any check is ✗."""

from __future__ import annotations

import binascii
import calendar
import json
import time
from dataclasses import dataclass
from typing import Any

from jkproto import codec
from jkproto import objects as ob

from ..console import duration, plural, visible
from ..errors import JalkalError
from . import deploy, doctor_sensors, layout, pull
from .board import Board
from .doctor_board import DOCTOR_HELPERS, relay_pulse, set_rtc

OK, BAD, NA = "✓", "✗", "–"
MIN_FREE_HEAP = 20 * 1024
MIN_FLASH_FREE = 64 * 1024
CLOCK_SLACK_S = 120
TAIL_BYTES = 4096  # of the newest log: the last readings
MAX_BACKLOG = 16 * 1024
MODEM_BAUD = 115200
RELAY_S = 2  # --test-relay: on for this long, then off
# what `jalkal provision` always writes: a config without one was not made by it
PROVISIONED = ("device", "key", "board", "pins", "population")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


class Doctor:
    def __init__(self, b: Board, set_clock: bool = False, test_relay: bool = False):
        self.b = b
        self.set_clock = set_clock
        self.test_relay = test_relay
        self.checks: list[Check] = []
        self.cfg: dict[str, Any] = {}
        self.raw_cfg: dict[str, Any] | None = None
        self.no_config = "no /config.json"  # or what is wrong with it
        self.machine = False
        self.frames: list[dict[str, Any]] = []

    sensors = doctor_sensors.sensors  # a line per sensor (doctor_sensors.py)

    def add(self, name: str, status: str, detail: str, fix: str = "") -> None:
        self.checks.append(Check(name, status, detail, fix))

    def run(self) -> list[Check]:
        steps = (
            self.micropython, self.heap, self.config, self.firmware, self.sd,
            self.flash, self.clock, self.modem, self.upload, self.switches,
            self.meters, self.sensors,
        )  # fmt: skip
        for step in steps:
            try:
                step()
            except (OSError, JalkalError) as e:
                if isinstance(e, JalkalError) and "lost the board" in str(e):
                    raise
                self.add(step.__name__, BAD, f"could not check: {e}")
            self.b.keepalive()
        if self.test_relay:
            self.relay()
        return self.checks

    # --- the checks

    def micropython(self) -> None:
        info = self.b.info()
        self.info = info
        self.machine = bool(self.b.eval("_jk_has_machine()"))
        want = ".".join(map(str, deploy.MIN_MICROPYTHON))
        if info.version >= deploy.MIN_MICROPYTHON:
            self.add("MicroPython", OK, f"{info.release} on {info.machine}")
        else:
            self.add(
                "MicroPython", BAD, f"{info.release}: older than {want} (no "
                "machine.Counter for the meters)",
                f"jalkal flash --port {self.b.port} ESP32_GENERIC-v1.26.0.bin",
            )  # fmt: skip

    def heap(self) -> None:
        free, used = self.b.eval("(gc.collect(), gc.mem_free(), gc.mem_alloc())[1:]")
        text = f"{free // 1024:,} KB free of {(free + used) // 1024:,} KB"
        if free >= MIN_FREE_HEAP:
            self.add("free heap", OK, text)
        else:
            self.add("free heap", BAD, text,
                     "a display-less config (display none) or a build with the "
                     "firmware frozen in; reset the board")  # fmt: skip

    def config(self) -> None:
        from jkfw import config as fwconfig

        fix = self.provision_fix()
        if self.b.size(layout.CONFIG) < 0:
            self.add("config", BAD, "no /config.json: this board was never "
                     "provisioned", fix)  # fmt: skip
            return
        raw = pull.read_json(self.b, layout.CONFIG)
        if not isinstance(raw, dict):
            self.no_config = "/config.json is not a JSON object"
            self.add("config", BAD, self.no_config, fix)
            return
        self.raw_cfg = raw
        cfg, bad = fwconfig.validate(raw)
        self.cfg = cfg
        where = self.named("device", "board", "population")
        missing = [k for k in PROVISIONED if k not in raw]
        problems = []
        if bad:
            problems.append("refused: " + ", ".join(map(str, bad)))
        pins = cfg["pins"]  # each goes into board code: a GPIO number or none
        odd = [k for k in pins if pins[k] is not None and pull.gpio(pins, k) is None]
        if odd:
            problems.append("pins not a GPIO number: " + ", ".join(map(repr, odd)))
        if missing:
            problems.append("config.json has no " + ", ".join(missing))
        elif cfg["device"] == "00000000" or not cfg["key"]:
            problems.append("no device id or key")
        if problems:
            self.add("config", BAD, "; ".join([where, *problems] if where else
                                              problems), fix)  # fmt: skip
        else:
            self.add("config", OK, where)

    def named(self, *keys: str) -> str:
        """ "device 0a1b2c3d, board ..." for the keys config.json has."""
        raw = self.raw_cfg or {}
        return ", ".join(f"{k} {raw[k]}" for k in keys if k in raw)

    def provision_fix(self) -> str:
        return (
            "jalkal provision --board BOARD ... --out DIR (it writes DIR/config.json), "
            f"then jalkal deploy --port {self.b.port} --config DIR/config.json"
        )

    def firmware(self) -> None:
        b = self.b
        fix = f"jalkal deploy --port {b.port} --config DIR/config.json"
        active = deploy.read_active(b, rom=True)
        if active is None:
            self.add("firmware", BAD, "no firmware deployed (no /app/active)", fix)
            return
        where = deploy.slot_dir(active)
        files, man = deploy.slot_state(b, b.hashes(where), active)
        if man is None:
            self.add("firmware", BAD, f"{where} has no MANIFEST", fix)
            return
        source = any(n.endswith(".py") and not n.endswith("__init__.py") for n in files)
        chip = deploy.board_chip(self.cfg) if self.cfg else "esp32"
        bld = deploy.build(None if source else deploy.MARCH.get(chip, "xtensawin"))
        want = {f.name: f.sha for f in bld.files}
        differ = sorted(n for n in want if files.get(n) != want[n])
        extra = sorted(n for n in files if n not in want)
        main_ok = b.size(deploy.MAIN) >= 0 and b.sha256(deploy.MAIN) == (
            deploy.File("main.py", deploy.MAIN_PY.encode()).sha
        )
        where = f"jkfw {bld.version} build {man[0]} in {where}"
        if not differ and not extra and main_ok and man[0] == bld.build_id:
            self.add("firmware", OK, f"{where}: all {len(want)} files match")
            return
        what = []
        if differ:
            what.append(f"{len(differ)} of {len(want)} files differ ({differ[0]}…)")
        if extra:
            what.append(f"{len(extra)} unknown files")
        if not main_ok:
            what.append("/main.py is not jalkal's")
        if not what:
            what.append(f"MANIFEST says build {man[0]}, this jalkal {bld.build_id}")
        self.add("firmware", BAD, f"{where}: " + "; ".join(what), fix)

    def sd(self) -> None:
        pins = pull.gpios(self.cfg.get("pins"), pull.SD_PINS)
        state = self.b.sd(pins)
        self.sd_state = state
        why, fix = self.sd_pins(pins)
        if state.startswith("none"):
            self.add("SD card", BAD, f"not found ({why or state[6:]})", fix)
            return
        logs = [n for n, d, _s in self.b.listdir(layout.SD_LOG) if not d]
        if state == "folder":
            self.add("SD card", BAD,
                     f"/sd is a folder on the internal flash, not a card "
                     f"({plural(len(logs), 'log file')} in it)"
                     + (f"; {why}" if why else ""), fix)  # fmt: skip
            return
        ok = self.b.eval(
            "(lambda p: (open(p, 'w').write('jalkal'), open(p).read() == 'jalkal', "
            "os.remove(p))[1])('/sd/.jalkal-doctor')"
        )
        free = self.b.eval("(lambda s: s[0] * s[3])(os.statvfs('/sd'))")
        text = (
            f"mounted, {free // (1 << 20):,} MB free, {plural(len(logs), 'log file')}"
        )
        if ok:
            self.add("SD card", OK, text + ", writable")
        else:
            self.add("SD card", BAD, text + ", but a test write did not read back",
                     "replace the card (FAT32)")  # fmt: skip

    def sd_pins(self, pins: dict[str, Any]) -> tuple[str, str]:
        """Why a card cannot be mounted when config.json lacks its pins ("" when it
        has them all), and the fix."""
        missing = [k for k in pull.SD_PINS if k not in pins]
        if missing and self.raw_cfg is None:
            return f"{self.no_config}: the SD card's pins are not known", (
                self.provision_fix()
            )
        if missing:
            return (
                f"config.json has no {', '.join(missing)} "
                f"{'pin' if len(missing) == 1 else 'pins'} to mount a card with",
                "make config.json again with jalkal provision (it copies the board's "
                "pins), then jalkal deploy",
            )
        wiring = ", ".join(f"{k} {pins[k]}" for k in pull.SD_PINS)
        return "", (
            f"insert a FAT32 SD card and check its wiring (pins {wiring}); meanwhile "
            "frames go to the flash ring"
        )

    def flash(self) -> None:
        b = self.b
        free = b.eval("(lambda s: s[0] * s[3])(os.statvfs('/'))")
        slots: list[tuple[str, int]] = []
        damaged: list[tuple[str, int]] = []
        for name, d, size in b.listdir(layout.RING):
            if d or not name.endswith(".jkl"):
                continue
            head = b.read(f"{layout.RING}/{name}", 0, layout.RING_HDR_LEN)
            (slots if head[:4] == layout.RING_MAGIC else damaged).append((name, size))
        state = self._state_file()
        parts = [f"{free // 1024:,} KB free"]
        if slots:
            n = sum(s for _n, s in slots)
            parts.append(
                f"ring holds {plural(len(slots), 'slot')}, {n:,} bytes not yet on SD"
            )
        else:
            parts.append("ring empty (everything is on the SD card)")
        if damaged:
            parts.append(
                f"{plural(len(damaged), 'ring slot')} torn before their header"
            )
        parts.append(state[1])
        text = "; ".join(parts)
        if free < MIN_FLASH_FREE or not state[0]:
            self.add("flash", BAD, text,
                     "jalkal pull --port PORT --out DIR, then re-deploy; a state file "
                     "that fails its CRC is rebuilt at boot")  # fmt: skip
        else:
            self.add("flash", OK, text)

    def _state_file(self) -> tuple[bool, str]:
        b = self.b
        for name in ("state.json", "state.bak"):
            path = f"{layout.FLASH}/{name}"
            if b.size(path) < 0:
                continue
            raw = b.read(path)
            k = raw.find(b',"state":')
            try:
                crc_s, n_s = raw[7:k].decode().split(',"n":')
                body = raw[k + 9 :].rstrip()[:-1]
                good = int(crc_s) == binascii.crc32(body) & 0xFFFFFFFF
                st = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                good, st = False, {}
            if good:
                self.state = st
                when = st.get("ckpt_utc") or 0
                at = (
                    time.strftime(" %Y-%m-%d %H:%M UTC", time.gmtime(when))
                    if when
                    else ""
                )
                return True, (
                    f"{name} ok (boots {st.get('boots')}, checkpoint save {n_s}{at})"
                )
            return False, f"{name} fails its CRC"
        self.state = {}
        return True, "no state file yet (first boot writes it)"

    def clock(self) -> None:
        b = self.b
        b.exec("import time")
        t = b.eval("time.gmtime()")
        board = calendar.timegm(tuple(int(x) for x in t[:6]) + (0, 0, 0))  # type: ignore[arg-type]
        now = time.time()
        shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(board))
        off = board - now
        if abs(off) <= CLOCK_SLACK_S:
            self.add("clock", OK, f"{shown} ({clock_off(off)})")
            return
        if self.set_clock and self.machine:
            b.exec(set_rtc(time.gmtime(time.time())))
            self.add("clock", OK, f"was {shown}; set from this laptop")
            return
        self.add("clock", BAD, f"{shown} ({clock_off(off)})",
                 "jalkal doctor --set-clock (the laptop's time must be right); "
                 "the firmware also sets it from the network")  # fmt: skip

    def modem(self) -> None:
        pins = pull.gpios(self.cfg.get("pins"), ("modem_tx", "modem_rx"))
        if self.raw_cfg is None:
            self.add("modem", NA, f"{self.no_config}: the modem's pins are not known")
            return
        if len(pins) < 2:
            self.add("modem", NA, "the board has no modem pins in config.json")
            return
        if not self.b.eval("_jk_has_uart()"):
            self.add("modem", NA, "cannot test: this board has no machine.UART "
                     "(virtual board)")  # fmt: skip
            return
        ans = self.b.eval(
            "_jk_at(%d, %d, %d, (b'AT', b'AT+CPIN?', b'AT+CREG?', b'AT+CSQ'))"
            % (pins["modem_tx"], pins["modem_rx"], MODEM_BAUD)
        )
        at, cpin, creg, csq = (a.decode(errors="replace") for a in ans)
        if "OK" not in at:
            self.add("modem", BAD, "no answer to AT",
                     "check the modem's power (2 A peaks: a thick short cable, the "
                     "battery or supply), its TX/RX wires and the antenna")  # fmt: skip
            return
        self.add("modem", OK, "answers AT")
        if "READY" not in cpin:
            self.add("SIM", BAD, f"SIM not ready ({_line(cpin, '+CPIN')})",
                     "insert the SIM (PIN lock off)")  # fmt: skip
        elif ",1" in creg or ",5" in creg:
            roam = " (roaming)" if ",5" in creg else ""
            self.add("SIM", OK, f"registered{roam}")
        else:
            self.add(
                "SIM",
                BAD,
                f"not registered ({_line(creg, '+CREG')})",
                "a SIM with a data plan; move the antenna; wait a minute",
            )
        rssi = _csq(csq)
        if rssi is None or rssi == 99:
            self.add("signal", BAD, "no signal reading", "check the antenna")
        else:
            dbm = -113 + 2 * rssi
            st = OK if rssi >= 10 else BAD
            self.add("signal", st, f"CSQ {rssi} ({dbm} dBm)",
                     "" if st == OK else "move or raise the antenna")  # fmt: skip

    def upload(self) -> None:
        if not self.raw_cfg or not self.raw_cfg.get("uplink_url"):
            self.add("last upload", NA, "no uplink configured (uplink_url)")
            return
        up = getattr(self, "state", {}).get("up")
        if not isinstance(up, list) or len(up) < 2 or not up[0]:
            self.add("last upload", BAD, "nothing acknowledged by the server yet",
                     "check the SIM's data plan, the APN and uplink_url")  # fmt: skip
            return
        day, off = int(up[0]), int(up[1])
        waiting = 0
        for name, d, size in self.b.listdir(layout.SD_LOG):
            stem = name[:-4]
            if d or not stem.isdigit():
                continue
            if int(stem) > day:
                waiting += size
            elif int(stem) == day:
                waiting += max(0, size - off)
        text = f"the server has up to {day}.jkl byte {off:,}; {waiting:,} bytes waiting"
        if waiting <= MAX_BACKLOG:
            self.add("last upload", OK, text)
        else:
            self.add(
                "last upload",
                BAD,
                text,
                "check the SIM, APN, signal and the server (jalkal serve)",
            )

    def _last_frames(self) -> list[dict[str, Any]]:
        if self.frames:
            return self.frames
        b = self.b
        files = [f"{layout.SD_LOG}/{n}" for n, d, _s in sorted(b.listdir(layout.SD_LOG))
                 if not d and n.endswith(".jkl")]  # fmt: skip
        rings = [f"{layout.RING}/{n}" for n, d, _s in sorted(b.listdir(layout.RING))
                 if not d and n.endswith(".jkl")]  # fmt: skip
        out: list[dict[str, Any]] = []
        for path in [*files[-2:], *rings]:
            size = b.size(path)
            data = b.read(path, max(0, size - TAIL_BYTES))
            for off, n in codec.scan(data):
                try:
                    out.append(ob.to_obj(data, off, n))
                except codec.FrameError:
                    pass
        out.sort(key=lambda o: (o.get("boot", 0), o.get("seq", 0)))
        self.frames = out
        return out

    def switches(self) -> None:
        readings = [o for o in self._last_frames() if o.get("kind") == "reading"]
        if not readings:
            self.add("switches", NA, "no reading frame in the logs yet")
            return
        r = readings[-1]
        on = set(r.get("inputs") or [])
        names = ("dry", "low", "high", "pump", "mains")
        text = ", ".join(f"{n} {'on' if n in on else 'off'}" for n in names)
        text += f" (last reading, {r.get('ts') or 'time unknown'})"
        if "low" in on and "high" in on:
            self.add("switches", BAD, text,
                     "tank low and high at once: a cut wire (open reads asserted); "
                     "check both float switches and their wires")  # fmt: skip
        elif "dry" in on:
            self.add("switches", BAD, text,
                     "dry-run asserted: the borewell is low or the probe wire is cut "
                     "(open reads dry)")  # fmt: skip
        else:
            self.add("switches", OK, text)

    def meters(self) -> None:
        readings = [o for o in self._last_frames() if o.get("kind") == "reading"]
        if len(readings) < 2:
            self.add("meters", NA, "needs two reading frames in the logs")
            return
        a, z = readings[0], readings[-1]
        src = z["source_pulses"] - a["source_pulses"]
        sup = z["supply_pulses"] - a["supply_pulses"]
        pump_s = sum(o.get("pump_s", 0) for o in readings[1:])
        lpp = self.cfg.get("supply_litres_per_pulse", 0) or 0
        text = (
            f"over the last {len(readings)} readings: source +{src:,} pulses, supply "
            f"+{sup:,} pulses ({sup * lpp:,.0f} L), pump ran {pump_s:,} s "
            f"({duration(pump_s)})"
        )
        if pump_s >= 120 and src <= 0 and self.cfg.get("source_litres_per_pulse"):
            self.add("meters", BAD, text,
                     "the pump ran but the source meter did not count: check its "
                     "wire and pull-up")  # fmt: skip
        elif src < 0 or sup < 0:
            self.add("meters", BAD, text, "totals went down: check for a reset")
        else:
            self.add("meters", OK, text)

    def relay(self) -> None:
        pins = pull.gpios(self.cfg.get("pins"), ("relay", "sw_dry"))
        if "relay" not in pins:
            self.add("relay test", BAD, "no relay pin in config.json")
            return
        if not self.machine:
            self.add("relay test", NA, "no machine module (virtual board)")
            return
        sense = self.cfg["switch_sense"].get("dry", 1)
        dry = pins.get("sw_dry")
        if (
            dry is not None
            and self.b.eval(
                "(lambda m: m.Pin(%d, m.Pin.IN).value())(__import__('machine'))" % dry
            )
            == sense
        ):
            self.add("relay test", BAD, "not switched: dry-run is asserted",
                     "fix the dry-run input first")  # fmt: skip
            return
        active = self.cfg["relay_active"]
        self.b.exec(relay_pulse(pins["relay"], active, RELAY_S))
        self.add("relay test", OK, f"relay switched on for {duration(RELAY_S)}, "
                 "then off: did it click and did the pump start?")  # fmt: skip


def clock_off(off: float) -> str:
    """How far the board's clock is from this laptop's, in words."""
    if abs(off) < 0.5:
        return "the same as this laptop's"
    return f"{duration(off)} {'ahead of' if off > 0 else 'behind'} this laptop"


def _line(text: str, prefix: str) -> str:
    for ln in text.splitlines():
        if ln.strip().startswith(prefix):
            return ln.strip()
    return text.strip().replace("\r", " ").replace("\n", " ")[:40] or "no answer"


def _csq(text: str) -> int | None:
    for ln in text.splitlines():
        if ln.strip().startswith("+CSQ:"):
            try:
                return int(ln.split(":")[1].split(",")[0])
            except ValueError:
                return None
    return None


def render(checks: list[Check], head: str) -> str:
    """The report; what the board said in it (config, file names, errors) with
    its control characters (an escape's ESC) as text, as `jalkal monitor`."""
    lines = [visible(head)]
    for c in checks:
        lines.append(visible(f"{c.status} {c.name:<12} {c.detail}"))
        if c.status == BAD and c.fix:
            lines.append(visible(f"  {'':<12} fix: {c.fix}"))
    n = {s: sum(1 for c in checks if c.status == s) for s in (OK, BAD, NA)}
    lines.append(
        f"{len(checks)} checks: {n[OK]} {OK}, {n[BAD]} {BAD}, {n[NA]} {NA} "
        "(not checked)"
    )
    return "\n".join(lines)


def run(
    b: Board, set_clock: bool = False, test_relay: bool = False, restart: bool = True
) -> tuple[list[Check], str]:
    """Every check on a connected board, and the report's head line."""
    b.helpers()
    b.exec(DOCTOR_HELPERS)
    d = Doctor(b, set_clock, test_relay)
    checks = d.run()
    named = d.named("device", "board")
    head = f"jalkal doctor on {b.port}" + (f": {named}" if named else "")
    if restart:
        b.restart(1.0)  # the firmware runs again, as after power-on
    return checks, head
