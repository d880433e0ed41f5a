"""Run one simulated village: the real firmware on simulated hardware and virtual time,
beside the plant, with the scenario's faults; write what a field visit would find.

The board boots, and boots again after every power return and watchdog reset,
through its own boot sequence, jkfw.main.start: it reads the config.json the
installer left on its flash, mounts the card if one is in the slot, and starts the
controller. Only the HAL (sim/hw.py) and the clock (sim/vclock.py) are the
simulator's."""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import jkboards
from jkfw import config
from jkfw import main as board
from jkfw.app import Controller
from jkproto import objects as ob

from .control import Control
from .control import board_config as control_config
from .fitted import Fitted, board_config
from .hw import SimHal
from .modem import SimModem, fit
from .plant import Plant
from .vclock import VirtualClock

CHUNK_MS = 6 * 3600 * 1000  # progress is reported this often


def identity(sc: dict) -> tuple[str, bytes]:
    """Device id and key, the same for the same scenario and seed."""
    h = hashlib.sha256(
        f"jalkal-sim:{sc['village']['name']}:{sc['seed']}".encode()
    ).digest()
    return h[:4].hex(), hashlib.sha256(b"key:" + h).digest()


class Village:
    def __init__(self, sc: dict, out: Path, uplink: str | None = None):
        """uplink: the server's URL (http://HOST:PORT); the board's modem then
        uploads to it through the simulated modem."""
        self.sc = sc
        self.out = out
        self.device, self.key = identity(sc)
        b = jkboards.load(sc["board"])
        raw = {
            "device": self.device,
            "key": self.key.hex(),
            "board": sc["board"],
            "pins": b["pins"],
            "external_pullups": b.get("external_pullups", []),
            "population": sc["village"]["population"],
            "tz_offset_min": sc["tz_offset_min"],
            "source_litres_per_pulse": sc["scheme"]["source_litres_per_pulse"],
            "supply_litres_per_pulse": sc["scheme"]["litres_per_pulse"],
            "display": "none",
        }
        if uplink:
            if uplink.startswith("mqtt:") and b["modem"] != "sim7600":
                raise ValueError(
                    f"MQTT goes through a SIM7600; board {sc['board']} has a "
                    f"{b['modem']} (use http://, or a SIM7600 board in the scenario)"
                )
            raw.update(modem=b["modem"], uplink_url=uplink)
        raw.update(sc["pump"])
        if sc["sensors"]["fitted"]:
            raw.update(board_config(sc["sensors"], sc["scheme"]))
        raw.update(control_config(sc))
        self.cfg, bad = config.validate(raw)
        if bad:
            raise ValueError(
                f"scenario gives bad controller settings: {', '.join(bad)}"
            )
        self.sd = out / "sd"
        self.flash = out / "flash"  # the board's internal flash file system
        self.config = self.flash / "config.json"
        self.provision(raw)
        has_rtc = not any(f["kind"] == "clock_unset" for f in sc["fault"])
        self.clock = VirtualClock(sc["start_utc"] if has_rtc else None, quality=1)
        self.hal = SimHal(self.cfg, self.clock)
        self.modem: SimModem | None = None
        if uplink:
            self.modem = fit(
                self.hal, self.clock, b["modem"], b["pins"], seed=sc["seed"],
                utc0=sc["start_utc"],
            )  # fmt: skip
        self.rng = random.Random(sc["seed"])
        self.plant = Plant(sc, self.clock, self.hal, self.rng)
        self.fitted: Fitted | None = None
        if sc["sensors"]["fitted"]:
            self.fitted = Fitted(sc, self.clock, self.hal)
            self.fitted.plant = self.plant
            self.plant.fitted = self.fitted
        self.control: Control | None = None
        if sc["tank_level"]["fitted"] or sc["solar"]["fitted"]:
            self.control = Control(sc, self.clock, self.hal, self.plant)
            self.plant.fitted = self.control
        self.ctl: Controller | None = None
        self.boots = 0

    # --- the board
    def provision(self, raw: dict) -> None:
        """What `jalkal provision` leaves on a board: its config.json (it holds the
        device key: owner-only, as keys.json)."""
        self.flash.mkdir(parents=True, exist_ok=True)
        write_secret(self.config, json.dumps(raw))

    def make_hal(self, cfg: dict) -> SimHal:
        """The board's HAL for the config start() read: the one simulated board,
        whose pins, counters and RTC memory outlive a reboot as the hardware's do."""
        self.hal.cfg = cfg
        return self.hal

    def boot(self) -> None:
        """The board powers up (or resets): jkfw.main.start, as on the board."""
        try:
            self.ctl = board.start(
                self.make_hal, self.clock, str(self.config), str(self.flash),
                str(self.sd),
            )  # fmt: skip
        except Exception as e:  # a board that cannot boot: the run's finding
            raise RuntimeError(
                f"firmware boot {self.boots + 1} (jkfw.main.start) crashed: {e!r}"
            ) from e
        self.boots += 1

    def tear_last_frame(self) -> None:
        """A brown-out mid-write: part of the frame being written reached the card."""
        logs = sorted((self.sd / "log").glob("*")) if self.sd.exists() else []
        if not logs:
            return
        last = logs[-1]
        size = last.stat().st_size
        if size < 41:
            return
        keep = size - self.rng.randint(1, 39)
        with open(last, "r+b") as f:
            f.truncate(keep)

    def corrupt_sd(self) -> None:
        """A bad sector: a run of bytes in a log file turns to garbage."""
        logs = sorted((self.sd / "log").glob("*")) if self.sd.exists() else []
        if not logs:
            return
        f = logs[-1]
        data = bytearray(f.read_bytes())
        if len(data) < 600:
            return
        at = self.rng.randrange(0, len(data) - 512)
        for i in range(at, at + 512):
            data[i] = self.rng.randrange(256)
        f.write_bytes(bytes(data))

    def watchdog_check(self) -> None:
        """The chip resets when the firmware stops feeding its watchdog."""
        if self.plant.board_alive and self.hal.wdt_expired():
            self.clock.reboot()  # an RTC, if the board has one, keeps its time
            self.hal.reset_code = 3  # watchdog: RTC memory survives
            self.boot()
        self.clock.at(self.clock.ms + 1000, self.watchdog_check)

    def hang(self) -> None:
        """A firmware hang: every task stops; only the watchdog can bring it back."""
        self.clock.stop()

    def power(self, on: bool, tear: bool = False) -> None:
        self.plant.set_mains(on)
        if on:
            self.clock.reboot()  # an RTC, if the board has one, keeps its time
            self.hal.reset_code = 1  # power on
            self.plant.board_alive = True
            if self.modem is not None:
                self.modem.supply(True)
            self.boot()
        else:
            # no battery: the board dies with the mains; its RAM and RTC memory go
            self.clock.stop()
            if self.modem is not None:
                self.modem.supply(False)
            self.plant.board_alive = False
            self.hal.relay(False)  # the coil loses power: the contact opens
            self.hal.rtc_memory = None
            if self.ctl is not None:
                self.ctl.log.close()
            if tear:
                self.tear_last_frame()

    def sd_present(self, present: bool) -> None:
        gone = self.out / "sd.removed"
        if not present and self.sd.exists():
            os.rename(self.sd, gone)
        elif present and gone.exists():
            os.rename(gone, self.sd)
        self.hal.sd_present = present

    # --- faults
    def schedule(self) -> None:
        p = self.plant
        for f in self.sc["fault"]:
            a = f["at_s"] * 1000
            b = a + int(f["hours"] * 3600 * 1000)
            k = f["kind"]
            if k == "power_cut":
                self.clock.at(a, lambda: self.power(False))
                self.clock.at(b, lambda: self.power(True))
            elif k == "brownout":
                self.clock.at(a, lambda: self.power(False, tear=True))
                self.clock.at(b, lambda: self.power(True))
            elif k == "sd_corrupt":
                self.clock.at(a, self.corrupt_sd)
            elif k == "relay_stuck":
                self.clock.at(a, lambda: p.weld(True))
                self.clock.at(b, lambda: p.weld(False))
            elif k == "watchdog":
                self.clock.at(a, self.hang)
            elif k in ("motor_trip", "motor_bypass") and self.fitted is not None:
                m, what = self.fitted, k[6:] + ("ped" if k[6] == "t" else "ed")
                self.clock.at(a, lambda m=m, w=what: m.motor_fault(w, True))
                self.clock.at(b, lambda m=m, w=what: m.motor_fault(w, False))
            elif k == "dry_borewell":
                self.clock.at(a, lambda f=f: setattr(p, "recharge_factor", f["factor"]))
                self.clock.at(b, lambda: setattr(p, "recharge_factor", 1.0))
            elif k == "sd_removed":
                self.clock.at(a, lambda: self.sd_present(False))
                self.clock.at(b, lambda: self.sd_present(True))
            elif k == "switch_chatter":
                self.clock.at(a, lambda: setattr(p, "chatter", True))
                self.clock.at(b, lambda: setattr(p, "chatter", False))
            elif k == "wire_break":
                self.clock.at(a, lambda f=f: p.wires_cut.add(f["switch"]))
                self.clock.at(b, lambda f=f: p.wires_cut.discard(f["switch"]))
            elif k == "float_stuck":
                self.clock.at(a, lambda: setattr(p, "float_stuck", True))
                self.clock.at(b, lambda: setattr(p, "float_stuck", False))
            elif k == "sim_outage" and self.modem is not None:
                m = self.modem
                self.clock.at(a, lambda m=m: setattr(m, "outage", True))
                self.clock.at(b, lambda m=m: setattr(m, "outage", False))
            # clock_unset: no RTC (above); sim_outage without a modem: nothing

    def run(self, progress: Callable[[int, int], None] | None = None) -> None:
        # a few seconds past the last midnight: a board that rebooted mid-second reads
        # its grid a fraction of a second late, and the last day needs that reading
        end = self.sc["days"] * 86400 * 1000 + 5000
        self.plant.wire()
        self.boot()
        self.plant.start()
        if self.control is not None:
            self.control.start()
        self.schedule()
        self.clock.at(1000, self.watchdog_check)
        t = 0
        while t < end:
            t = min(end, t + CHUNK_MS)
            self.clock.run_until(t)
            if progress:
                progress(t, end)
        self.drain()
        if self.clock.failures:
            name, e = self.clock.failures[0]
            raise RuntimeError(f"firmware task {name} crashed: {e!r}")
        if self.ctl is not None:
            self.ctl.log.close()
        self.sd_present(True)

    def drain(self, most_ms: int = 30 * 60 * 1000) -> None:
        """With an uplink: one more upload session at the end (caps allowing), so
        that the server has what the card has."""
        up = self.ctl.uplink if self.ctl is not None else None
        if up is None or not self.plant.board_alive:
            return
        clock = self.clock
        up.next_s = clock.uptime_s()
        up.flag.set()
        end = clock.ms + most_ms
        while clock.ms < end and up.next_s <= clock.uptime_s():
            clock.run_until(clock.ms + 10000)

    # --- what a field visit finds
    def truth(self) -> dict:
        sc = self.sc
        days = [
            {"date": d, "litres": round(litres, 3), "pump_hours": round(h, 4)}
            for d, litres, h in self.plant.days()
        ][: sc["days"]]
        pump = {
            "min_off_s": self.cfg["min_off_s"],
            "max_run_s": self.cfg["max_run_s"],
            "debounce_s": self.cfg["debounce_s"],
        }
        trace = [[ob.iso(t), what] for t, what in self.plant.trace]
        out = {
            "village": sc["village"]["name"],
            "device": self.device,
            "population": sc["village"]["population"],
            "days": days,
            "pump": pump,
            "trace": trace,
        }
        if self.fitted is not None:
            out["sensors"] = self.fitted_truth()
        if self.control is not None:
            out.update(self.control.truth([d["date"] for d in days]))
        return out

    def fitted_truth(self) -> dict:
        """The sensors' ground truth: every borewell transducer sample (UTC ms, the
        true depth below ground in m, the loop current in mA), and the injected
        sensor and motor faults (UTC s from, to)."""
        assert self.fitted is not None
        t0 = self.sc["start_utc"] * 1000
        s = self.sc["sensors"]
        faults = [
            {"kind": f["kind"], "sensor": f.get("sensor"), "mode": f.get("mode"),
             "from": self.sc["start_utc"] + f["at_s"],
             "to": self.sc["start_utc"] + f["at_s"] + int(f["hours"] * 3600)}
            for f in self.sc["fault"]
            if f["kind"] in ("sensor", "motor_trip", "motor_bypass")
        ]  # fmt: skip
        return {
            "install_m": s["install_m"], "intake_m": s["intake_m"],
            "margin_m": s["margin_m"], "dry_probe_m": s["dry_probe_m"],
            "range_m": s["range_m"], "faults": faults,
            "bore": [[t0 + ms, d, ma] for ms, d, ma in self.fitted.truth],
            "static_0600": self.fitted.aquifer.static_days(self.sc["days"]),
            "quality": self.fitted.quality.truth(self.sc["days"]),
            "motor_days": self.motor_days(),
        }  # fmt: skip

    def motor_days(self) -> list[dict]:
        """The motor's own running seconds per local day of the plant's days (not
        the relay's: a tripped motor runs none, a bypassed one with the relay off)."""
        fit = self.fitted
        assert fit is not None
        fit.motor_until(fit.t())
        return [
            {"date": d, "run_s": round(fit.motor_days.get(_day_no(d), 0.0), 3)}
            for d, _l, _h in self.plant.days()[: self.sc["days"]]
        ]


def _day_no(d: str) -> int:
    """Days since 1970-01-01 of a YYYY-MM-DD date."""
    return (_dt.date.fromisoformat(d) - _dt.date(1970, 1, 1)).days


def write_secret(path: Path, text: str) -> None:
    """A file that holds a key: owner-only (0600), also when it replaces one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def write_outputs(out: Path, villages: list[Village], tz: str) -> None:
    """villages.csv, keys.json (owner-only) and truth.json beside the SD folder."""
    with open(out / "villages.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "village", "population", "tz"])
        for v in villages:
            w.writerow(
                [v.device, v.sc["village"]["name"], v.sc["village"]["population"], tz]
            )
    keys = {"devices": {v.device: {"key": v.key.hex()} for v in villages}}
    write_secret(out / "keys.json", json.dumps(keys, indent=2))
    truth = {"tz": tz, "villages": [v.truth() for v in villages]}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")


# --- what a run owns in its folder ---------------------------------------------
# A run writes only these names in out/; MARKER lists every file it wrote there
# with its SHA-256, so the next run replaces or deletes exactly those (unchanged
# since) and refuses anything else in their place.

MARKER = ".jalkal-sim"
OWNED = ("sd", "sd.removed", "flash", "villages.csv", "keys.json", "truth.json")
SIGNATURE = "jalkal sim output"


def earlier_run(out: Path) -> dict[str, str] | None:
    """The files an earlier run wrote in out/ (relative path -> SHA-256), from its
    marker; None when out/ holds no marker a run wrote."""
    try:
        doc = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("written_by") != SIGNATURE:
        return None
    files = doc.get("files")
    if not isinstance(files, dict):
        return None
    return {str(k): str(v) for k, v in files.items()}


def owned_files(out: Path) -> list[str]:
    """Every file (or link, or other non-folder) now at a name a run owns, as a
    path relative to out/."""
    found: list[str] = []
    for name in (*OWNED, MARKER):
        top = out / name
        if top.is_symlink() or (top.exists() and not top.is_dir()):
            found.append(name)
            continue
        for root, dirs, files in os.walk(top):
            rel = Path(root).relative_to(out)
            links = [d for d in dirs if (Path(root) / d).is_symlink()]
            found += sorted(str(rel / n) for n in files + links)
    return found


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def foreign(out: Path) -> list[str]:
    """Files at names a run owns that no earlier run wrote, or that changed since:
    a run must not replace or delete them."""
    ours = earlier_run(out)
    bad = []
    for rel in owned_files(out):
        p = out / rel
        if rel == MARKER:
            if ours is None:
                bad.append(rel)
        elif ours is None or p.is_symlink() or not p.is_file():
            bad.append(rel)
        elif ours.get(rel) != digest(p):
            bad.append(rel)
    return bad


def clear(out: Path) -> None:
    """Remove an earlier run's card and flash (only the files it wrote, unchanged
    since, and the folders they leave empty). FileExistsError, with nothing
    removed, when anything else is at a name a run owns."""
    bad = foreign(out)
    if bad:
        raise FileExistsError(
            f"{out / bad[0]} was not written by jalkal sim"
            + (f" (nor {len(bad) - 1} more)" if len(bad) > 1 else "")
        )
    for name in ("sd", "sd.removed", "flash"):
        top = out / name
        if not top.is_dir():
            continue
        for root, _dirs, files in os.walk(top, topdown=False):
            for n in files:
                os.unlink(os.path.join(root, n))
            os.rmdir(root)


def mark(out: Path) -> None:
    """Record every file now at a name a run owns (all this run's: anything else
    was refused before it started)."""
    files = {rel: digest(out / rel) for rel in owned_files(out) if rel != MARKER}
    doc = {"written_by": SIGNATURE, "files": files}
    (out / MARKER).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def simulate(
    sc: dict,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    setup: Callable[[Village], None] | None = None,
    uplink: str | None = None,
) -> Village:
    """Run the scenario into out/ (a previous run's card and flash cleared first:
    only what a run wrote; FileExistsError if anything else is in the way);
    setup(village) runs before the first boot; uplink: the server the modem
    uploads to. Returns the village. out/MARKER records what the run wrote."""
    made = not out.exists()
    clear(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        v = Village(sc, out, uplink)
        if setup is not None:
            setup(v)
        v.run(progress)
        write_outputs(out, [v], sc["tz"])
    finally:  # a run that failed keeps what it wrote (to look into), marked
        if owned_files(out):
            mark(out)
        elif made and not any(out.iterdir()):
            out.rmdir()
    return v
