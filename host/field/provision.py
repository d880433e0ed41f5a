"""`jalkal provision`: a device id and key, the board's config.json, and the device's
entries in the keys file and the village registry.

Nothing is written unless everything checks out: the board's pin map, every config
value (through the firmware's own validator), the keys file and the registry. Each
file is replaced whole (temporary file, then rename); files holding a key are
owner-only (0600)."""

from __future__ import annotations

import csv
import io
import json
import secrets
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..console import plural
from ..errors import JalkalError
from ..fileio import read_optional
from ..keys import parse_keys
from ..registry import DEFAULT_TZ, OPTIONAL, REQUIRED, check_tz, parse_villages
from . import broker, calibrate, tlspin

BLANK_DEVICE = "00000000"  # the firmware's default id: a board with no config
PUMP_KEYS = (
    "min_off_s", "max_run_s", "no_flow_s", "restart_delay_s", "lockout_s",
    "lockout_reset_run_s",
)  # fmt: skip
# settings a board file may carry, copied when the firmware knows them
BOARD_KEYS = (
    "display", "display_addr", "relay_active", "switch_sense", "meter_max_hz",
    "meter_filter_ns", "modem_pwrkey_active",
)  # fmt: skip
# values the technician never sets by hand
MANAGED = ("device", "key", "board", "pins", "external_pullups")
DEFAULT_COUNTRY = "91"  # India: a number given without +<country> is Indian


@dataclass
class Request:
    """What the technician asked for."""

    board: str
    village: str
    population: int
    out: Path
    device: str | None = None
    keys: Path | None = None
    villages: Path | None = None
    block: str = ""
    district: str = ""
    state: str = ""
    tz: str = DEFAULT_TZ
    uplink: str | None = None
    apn: str | None = None
    sms: tuple[str, ...] = ()
    sms_allow: tuple[str, ...] = ()
    sms_pin: str | None = None
    country_code: str = DEFAULT_COUNTRY
    litres_per_pulse: float | None = None
    source_litres_per_pulse: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    server_cert: Path | None = None  # https/mqtts: the certificate pinned (tlspin)
    mosquitto: Path | None = None  # `jalkal broker`'s folder: add the MQTT login
    calibration: calibrate.Calibration | None = None  # sensors (calibrate.py)


@dataclass
class ProvisionResult:
    device: str
    key: bytes
    config: dict[str, Any]
    config_path: Path
    keys_path: Path
    villages_path: Path
    devices: int
    registry_rows: int
    replaced: bool  # a deliberate re-provisioning of the same village
    notes: list[str]


# --- the board's config.json ----------------------------------------------------


def _fw_config() -> Any:
    """The firmware's config module, read at run time (its keys grow)."""
    from jkfw import config

    return config


def _board(name: str) -> dict[str, Any]:
    import jkboards

    try:
        return dict(jkboards.load(name))
    except FileNotFoundError as e:
        raise JalkalError(f"--board: {e.args[0]}")
    except ValueError as e:  # jkboards.BoardError: names the file and its problems
        raise JalkalError(str(e))


def tz_offset_min(tz: str, now: float | None = None) -> tuple[int, bool]:
    """The zone's UTC offset in minutes now, and whether it changes in the year (the
    board keeps one fixed offset for its local day)."""
    zone = ZoneInfo(tz)
    t = datetime.fromtimestamp(time.time() if now is None else now, zone)
    off = t.utcoffset()
    assert off is not None
    jan, jul = (datetime(t.year, m, 1, tzinfo=zone).utcoffset() for m in (1, 7))
    return int(off.total_seconds() // 60), jan != jul


def _option_key(known: dict[str, Any], option: str, key: str) -> str:
    if key not in known:
        raise JalkalError(
            f"{option}: this firmware has no {key!r} setting yet; update jalkal (it "
            f"carries the firmware), or leave {option} out"
        )
    return key


def e164(number: str, country: str = DEFAULT_COUNTRY, option: str = "--sms") -> str:
    """A phone number as the network gives a sender: +<country><number>, digits
    only. '+91 98765-43210', '0091 9876543210', '098765 43210' and '9876543210'
    (country 91) are all '+919876543210'."""
    if not (country.isdigit() and 1 <= len(country) <= 3):
        raise JalkalError(f"--country-code {country!r}: 1 to 3 digits, e.g. 91")
    d = "".join(c for c in number if c not in " -.()")
    if d.startswith("00"):
        d = "+" + d[2:]
    elif d.startswith("0") and d[1:].isdigit():
        d = "+" + country + d[1:]  # a trunk prefix: a national number
    elif d.isdigit() and len(d) <= 10:
        d = "+" + country + d
    if not (d[:1] == "+" and d[1:].isdigit() and 8 <= len(d) - 1 <= 15):
        raise JalkalError(
            f"{option} {number!r}: not a phone number; give it with its country "
            "code, e.g. +91 98765 43210"
        )
    return d


def parse_setting(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE as JSON (a bare word is a string)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise JalkalError(f"--set {text!r}: use KEY=VALUE, e.g. --set max_run_s=7200")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def build_config(req: Request, device: str, key: bytes) -> tuple[dict, list[str]]:
    """The raw config.json for the board (checked by the firmware's validator) and
    notes for the summary. Only keys the firmware knows are written."""
    fw = _fw_config()
    known: dict[str, Any] = {**fw.DEFAULTS, **calibrate.defaults()}  # + sensors
    b = _board(req.board)
    notes: list[str] = []
    raw: dict[str, Any] = {
        "device": device,
        "key": key.hex(),
        "board": req.board,
        "pins": b["pins"],
        "external_pullups": b.get("external_pullups", []),
        "population": req.population,
    }
    off, shifts = tz_offset_min(req.tz)
    raw["tz_offset_min"] = off
    if shifts:
        notes.append(
            f"{req.tz} changes its UTC offset during the year; the board's local "
            f"day uses {off:+d} min (reports use the zone itself)"
        )
    supply = req.litres_per_pulse
    if supply is None:
        supply = known["supply_litres_per_pulse"]
    source = req.source_litres_per_pulse
    if source is None:
        source = (
            supply
            if req.litres_per_pulse is not None
            else known["source_litres_per_pulse"]
        )
    raw["supply_litres_per_pulse"] = supply
    raw["source_litres_per_pulse"] = source
    for k in PUMP_KEYS:
        if k in known:
            raw[k] = known[k]
    for k in BOARD_KEYS:
        if k in b and k in known:
            raw[k] = b[k]
    radio = False
    if req.uplink is not None:
        raw[_option_key(known, "--uplink", "uplink_url")] = req.uplink
        radio = True
    if req.apn is not None:
        raw[_option_key(known, "--apn", "apn")] = req.apn
        radio = True
    cc = req.country_code
    if req.sms:
        raw[_option_key(known, "--sms", "sms_to")] = [e164(n, cc) for n in req.sms]
        radio = True
    if req.sms_allow:
        raw[_option_key(known, "--sms-allow", "sms_allow")] = [
            e164(n, cc, "--sms-allow") for n in req.sms_allow
        ]
        radio = True
    if req.sms_pin is not None or (req.sms_allow and "sms_pin" in known):
        pin = req.sms_pin
        if pin is None:  # every command must carry it: one is made here
            pin = "%04d" % secrets.randbelow(10000)
            notes.append(
                f"SMS PIN {pin}: tell the operator; every command ends with it "
                f"(e.g. PUMP OFF {pin})"
            )
        elif not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise JalkalError(f"--sms-pin {pin!r}: use 4 to 8 digits")
        raw[_option_key(known, "--sms-pin", "sms_pin")] = pin
    if radio and "modem" in known and b.get("modem"):
        raw["modem"] = b["modem"]
    for k, v in req.settings.items():
        if k in MANAGED:
            raise JalkalError(f"--set {k}: set by provisioning itself, not by hand")
        if k not in known:
            raise JalkalError(
                f"--set {k}: the firmware has no such setting (known: "
                f"{', '.join(sorted(known))})"
            )
        raw[k] = v
    notes += filter(None, [tlspin.pin(raw, known, req.server_cert)])
    if req.calibration is not None:  # the sensors: kept, then the options applied
        calibrate.apply(req.calibration, raw, req.out, device)
    _cfg, bad = fw.validate(raw)
    if bad:
        parts = [
            f"{k}={json.dumps(raw[k])}" if k in raw else k for k in dict.fromkeys(bad)
        ]
        raise JalkalError(
            "the firmware would refuse these config.json values: "
            + ", ".join(parts)
            + "".join(f" ({why})" for why in calibrate.explain(raw, bad))
            + "; nothing written"
        )
    return raw, notes


# --- keys file and registry -----------------------------------------------------


def _keys_doc(path: Path, data: bytes | None) -> dict[str, Any]:
    if data is None:
        return {"devices": {}}
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise JalkalError(f"keys file {path}: not JSON ({e}); nothing written")
    parse_keys(doc, f"keys file {path}")
    return doc  # type: ignore[no-any-return]


def _registry(path: Path, data: bytes | None) -> tuple[list[str], list[dict]]:
    """Header and rows (as written, every cell kept) of a registry, checked as
    report reads it."""
    if data is None:
        return [], []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise JalkalError(f"villages file {path}: not UTF-8 text (CSV expected)")
    parse_villages(text, f"villages file {path}")
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    header = [h.strip().lower() for h in rows[0]]
    return header, [dict(zip(header, r, strict=True)) for r in rows[1:]]


def _registry_text(header: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    for r in rows:
        w.writerow([r.get(h, "") for h in header])
    return buf.getvalue()


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _pick_device(req: Request, taken: dict[str, str | None]) -> tuple[str, bool]:
    """The device id and whether it replaces an existing one (re-provisioning).
    taken: device id -> its village (None when only the keys file has it)."""
    if req.device is None:
        while True:
            dev = secrets.token_hex(4)
            if dev not in taken and dev != BLANK_DEVICE:
                return dev, False
    dev = req.device.strip().lower()
    if len(dev) != 8 or any(ch not in "0123456789abcdef" for ch in dev):
        raise JalkalError(f"--device {req.device!r}: needs 8 hex digits, e.g. 3fa9c21e")
    if dev == BLANK_DEVICE:
        raise JalkalError(
            f"--device {dev}: that is the id of a board with no config; pick another"
        )
    if dev not in taken:
        return dev, False
    owner = taken[dev]
    if owner is None:
        raise JalkalError(
            f"--device {dev}: already in the keys file, with no village in the "
            "registry; leave --device out to get a new id"
        )
    if not _same(owner, req.village):
        raise JalkalError(
            f"--device {dev}: already provisioned for village {owner!r}; leave "
            "--device out to get a new id"
        )
    if not req.force:
        raise JalkalError(
            f"--device {dev}: already provisioned for {owner!r}; to re-provision it "
            "(a new key: logs not yet pulled stay readable with the old key, kept "
            "in the keys file) add --force"
        )
    return dev, True


def _check_request(req: Request) -> None:
    if not req.village.strip() or any(ch in req.village for ch in "\r\n"):
        raise JalkalError("--village: needs a name on one line")
    if req.population <= 0:
        raise JalkalError("--population: must be a whole number above 0")
    for opt, v in (("--block", req.block), ("--district", req.district),
                   ("--state", req.state)):  # fmt: skip
        if any(ch in v for ch in "\r\n"):
            raise JalkalError(f"{opt}: must be on one line")
    bad = check_tz(req.tz)
    if bad:
        raise JalkalError(f"--tz: {bad}")


# --- writing --------------------------------------------------------------------


def _write(path: Path, data: bytes, secret: bool) -> None:
    """Replace path with data: a secret is owner-only from its first byte, the
    registry keeps its mode (a new one: 0666 less the umask); owners are kept."""
    broker.write(path, data, secret)


def _mode_of(path: Path, default: int) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return default


def provision(req: Request) -> ProvisionResult:
    """Check everything, then write config.json, the keys file and the registry;
    on a failure part way the files already written are put back."""
    _check_request(req)
    out = req.out
    keys_path = req.keys or out / "keys.json"
    villages_path = req.villages or out / "villages.csv"
    config_path = out / "config.json"
    if out.exists() and not out.is_dir():
        raise JalkalError(f"--out {out}: not a directory")

    keys_bytes = read_optional(keys_path)
    reg_bytes = read_optional(villages_path)
    doc = _keys_doc(keys_path, keys_bytes)
    header, rows = _registry(villages_path, reg_bytes)
    taken: dict[str, str | None] = {}
    for dev, e in doc["devices"].items():
        v = e.get("village")
        taken[dev] = v if isinstance(v, str) else None
    for r in rows:
        taken[r["device"].strip().lower()] = r["village"].strip()
    device, replaced = _pick_device(req, taken)
    key = secrets.token_bytes(32)
    config, notes = build_config(req, device, key)

    old_config = read_optional(config_path)
    if old_config is not None:
        try:
            old_dev = json.loads(old_config).get("device")
        except (ValueError, AttributeError):
            old_dev = None
        if old_dev != device:
            who = f"device {old_dev}" if isinstance(old_dev, str) else "another board"
            raise JalkalError(
                f"{config_path} already holds the config of {who}; give each board "
                "its own --out folder (to re-provision that board: --device "
                f"{old_dev if isinstance(old_dev, str) else 'ID'} --force)"
            )

    # keys file: the new entry, the old key kept when re-provisioning
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entry: dict[str, Any] = {
        "key": key.hex(),
        "village": req.village.strip(),
        "board": req.board,
        "provisioned": now,
    }
    prev = doc["devices"].get(device)
    if isinstance(prev, dict):
        retired = list(prev.get("retired_keys", []))
        if isinstance(prev.get("key"), str):
            retired.append({"key": prev["key"], "until": now})
        entry["retired_keys"] = retired
    doc["devices"][device] = entry

    # registry: header grows by the columns this row needs
    row = {
        "device": device,
        "village": req.village.strip(),
        "population": str(req.population),
        "block": req.block.strip(),
        "district": req.district.strip(),
        "state": req.state.strip(),
        "tz": req.tz,
    }
    if not header:
        header = list(REQUIRED + OPTIONAL)
    for col in OPTIONAL:
        default = col == "tz" and req.tz == DEFAULT_TZ
        if col not in header and row[col] and not default:
            header.append(col)
    for r in rows:
        if r["device"].strip().lower() == device:  # re-provisioning: keep what it had
            for col in OPTIONAL:
                if not row[col] or (col == "tz" and req.tz == DEFAULT_TZ):
                    row[col] = r.get(col, "") or row[col]
    rows = [r for r in rows if r["device"].strip().lower() != device]
    rows.append(row)
    reg_text = _registry_text(header, rows)
    parse_villages(reg_text, f"villages file {villages_path}")  # as report reads it

    writes = [
        (config_path, (json.dumps(config, indent=1) + "\n").encode(), True),
        (keys_path, (json.dumps(doc, indent=2) + "\n").encode(), True),
        (villages_path, reg_text.encode(), False),
    ]
    olds = {config_path: old_config, keys_path: keys_bytes, villages_path: reg_bytes}
    for w in tlspin.writes(req.server_cert, out):  # the certificate, for deploy
        writes.append(w)
        olds[w[0]] = read_optional(w[0])
    if req.mosquitto is not None:  # the broker's password file (broker.py)
        mq_path, olds[mq_path], mq_data, note = broker.device_update(
            req.mosquitto, device, key
        )
        writes.append((mq_path, mq_data, True))
        notes.append(note)
    if keys_bytes is not None and _mode_of(keys_path, 0) & 0o077:
        notes.append(f"{keys_path} was readable by others; it is owner-only now")
    try:
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise JalkalError(f"--out {out}: cannot make the folder: {e.strerror or e}")
    done: list[tuple[Path, bool]] = []
    try:
        for path, data, secret in writes:
            _write(path, data, secret)
            done.append((path, secret))
    except BaseException:
        for path, secret in reversed(done):
            old = olds[path]
            if old is None:
                path.unlink(missing_ok=True)
            else:
                _write(path, old, secret)
        raise
    return ProvisionResult(
        device, key, config, config_path, keys_path, villages_path,
        len(doc["devices"]), len(rows), replaced, notes,
    )  # fmt: skip


# --- the command ----------------------------------------------------------------


def summary(req: Request, r: ProvisionResult) -> str:
    c = r.config
    lines = [
        f"{'re-provisioned' if r.replaced else 'provisioned'} device {r.device} for "
        f"{req.village.strip()} (population {req.population}) on board {req.board}",
        f"  {r.config_path}  the board's settings and key (owner-only)",
        f"  {r.keys_path}  key {'replaced' if r.replaced else 'added'}, "
        f"{plural(r.devices, 'device')} (owner-only)",
        f"  {r.villages_path}  village {'updated' if r.replaced else 'added'}, "
        f"{plural(r.registry_rows, 'device')}",
        f"  meters: supply {c['supply_litres_per_pulse']:g} L/pulse, source "
        + (
            f"{c['source_litres_per_pulse']:g} L/pulse"
            if c["source_litres_per_pulse"]
            else "none"
        )
        + f"; local time UTC{c['tz_offset_min'] / 60:+g} h",
    ]
    if all(k in c for k in PUMP_KEYS):
        lines.append(
            f"  pump: min off {c['min_off_s']} s, max run {c['max_run_s']} s, no flow "
            f"{c['no_flow_s']} s, restart after {c['restart_delay_s']} s, dry-run "
            f"lockouts {'/'.join(map(str, c['lockout_s']))} s"
        )
    radio = [
        f"{label} {', '.join(v) if isinstance(v, list) else v}"
        for label, k in (
            ("modem", "modem"),
            ("uplink", "uplink_url"),
            ("APN", "apn"),
            ("SMS alerts to", "sms_to"),
            ("SMS commands from", "sms_allow"),
        )  # fmt: skip
        if (v := c.get(k))
    ]
    if radio:
        lines.append("  " + "; ".join(radio))
    lines += calibrate.summary(c) + [f"  note: {n}" for n in r.notes]
    lines.append(f"next: jalkal deploy --port PORT --config {r.config_path}")
    lines.append("      (a board without MicroPython: jalkal flash --port PORT first)")
    return "\n".join(lines)
