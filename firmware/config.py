# config.json on the board: every key has a default; a bad value falls back to the
# default and is reported (a config fault), never trusted and never fatal.
import json

DEFAULTS = {
    "device": "00000000",  # 8 hex digits, as decode prints it
    "key": "",  # 64 hex: the device's frame-signing key
    "board": "esp32-devkitc-sim800l",
    "pins": {},  # role -> GPIO, copied from boards/<board>.json at provisioning
    "external_pullups": [],
    "interval_s": 900,  # reading frames
    "heartbeat_s": 3600,
    "tz_offset_min": 330,  # local day for the daily log files and the display (IST)
    "population": 0,  # for lpcd on the display
    "source_litres_per_pulse": 10.0,  # 0 = no source meter
    "supply_litres_per_pulse": 10.0,
    "meter_max_hz": 100,  # fastest pulse rate a meter can give (hall: up to ~2000)
    "meter_filter_ns": 10000,  # PCNT glitch filter (ESP32: at most ~12.8 us)
    "switch_sense": None,  # per switch: pin level meaning "asserted" (SENSE below)
    "debounce_s": 3,
    "relay_active": 1,  # pin level that closes the relay
    "min_off_s": 300,
    "max_run_s": 14400,
    "no_flow_s": 120,
    "restart_delay_s": 120,
    "lockout_s": [900, 1800, 3600, 7200],
    "lockout_reset_run_s": 600,
    "display": "ssd1306",  # ssd1306 | hd44780 | none
    "display_addr": 60,  # 0x3C; the HD44780 backpack is usually 39 (0x27)
    "wdt_ms": 30000,
    # the modem and the uplink (docs/modem.md): nothing of it runs without a modem
    "modem": "",  # sim800 | sim7000 | sim7600 (the board file's "modem"); "" = none
    "modem_pwrkey_active": 0,  # 1 where a transistor drives PWRKEY (LilyGO boards)
    "apn": "internet",
    "uplink_url": "",  # http://HOST:PORT; SIM7600: also https://, mqtt://, mqtts://
    "uplink_cert_sha256": "",  # https/mqtts: SHA-256 of /server.pem (64 hex), pinned
    "uplink_s": 3600,  # between uploads while all is well
    "uplink_batch_bytes": 1024,  # frames per POST (a buffer of this size)
    "uplink_retry_s": 120,  # first back-off after a failure, doubling...
    "uplink_retry_max_s": 3600,  # ...up to this
    "uplink_max_hour": 4,  # upload sessions per hour
    "uplink_max_day": 48,  # upload sessions per day
    "uplink_day_bytes": 150000,  # SIM data per day, estimated: 31 days < 5 MB
    "sms_to": [],  # alerts to these numbers
    "sms_allow": [],  # commands from these numbers only (E.164: +<country>...)
    "sms_pin": "",  # 4-8 digits every command ends with; "" = no commands
    "sms_max_day": 10,  # alerts sent per day
}

SENSE = (("dry", 1), ("low", 1), ("high", 1))  # 1: open circuit reads asserted
DEFAULTS["switch_sense"] = dict(SENSE)

# key -> (type, low, high) for numbers; choices for strings
_RANGES = {
    "interval_s": (int, 60, 86400),
    "heartbeat_s": (int, 300, 86400),
    "tz_offset_min": (int, -720, 840),
    "population": (int, 0, 10000000),
    "source_litres_per_pulse": (float, 0.0, 10000.0),
    "supply_litres_per_pulse": (float, 0.0, 10000.0),
    "meter_max_hz": (int, 1, 20000),
    "meter_filter_ns": (int, 0, 12787),
    "debounce_s": (int, 0, 600),
    "relay_active": (int, 0, 1),
    "min_off_s": (int, 0, 86400),
    "max_run_s": (int, 60, 86400),
    "no_flow_s": (int, 10, 3600),
    "restart_delay_s": (int, 0, 3600),
    "lockout_reset_run_s": (int, 0, 86400),
    "display_addr": (int, 0, 127),
    "wdt_ms": (int, 5000, 120000),
    "modem_pwrkey_active": (int, 0, 1),
    "uplink_s": (int, 300, 86400),
    "uplink_batch_bytes": (int, 256, 4096),
    "uplink_retry_s": (int, 30, 86400),
    "uplink_retry_max_s": (int, 60, 86400),
    "uplink_max_hour": (int, 1, 60),
    "uplink_max_day": (int, 1, 1000),
    "uplink_day_bytes": (int, 10000, 10000000),
    "sms_max_day": (int, 0, 100),
}
_CHOICES = {
    "display": ("ssd1306", "hd44780", "none"),
    "modem": ("", "sim800", "sim7000", "sim7600"),
}
_HEX = "0123456789abcdef"


def _is_hex(s, n):
    return isinstance(s, str) and len(s) == n and all(ch in _HEX for ch in s)


def _ok(key, v):
    if key in _RANGES:
        typ, lo, hi = _RANGES[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if typ is int and not isinstance(v, int):
            return False
        return lo <= v <= hi
    if key in _CHOICES:
        return v in _CHOICES[key]
    if key == "device":
        return _is_hex(v, 8)
    if key == "key":
        return _is_hex(v, 64)
    if key == "uplink_cert_sha256":
        return v == "" or _is_hex(v, 64)
    if key == "board":
        return isinstance(v, str) and 0 < len(v) < 64
    if key == "pins":
        return isinstance(v, dict)
    if key == "external_pullups":
        return isinstance(v, list) and all(isinstance(p, int) for p in v)
    if key == "switch_sense":
        return isinstance(v, dict) and all(
            k in ("dry", "low", "high") and x in (0, 1) for k, x in v.items()
        )
    if key in ("apn", "uplink_url"):
        # they go into AT commands between quotes: printable, no quote or backslash
        ok = isinstance(v, str) and len(v) < 200
        ok = ok and all(" " < ch <= "~" and ch not in '"\\' for ch in v)
        if key == "apn" or not v:
            return ok and len(v) < 64
        i = v.find("://")
        return ok and v[:i] in ("http", "https", "mqtt", "mqtts") and len(v) > i + 3
    if key in ("sms_to", "sms_allow"):
        ok = isinstance(v, list) and len(v) <= 4
        for n in v if ok else ():
            ok = ok and isinstance(n, str) and 2 < len(n) < 21
            ok = ok and all(c in "+0123456789 -" for c in n)
            # a command's sender is matched on the whole international number
            d = ok and n.replace(" ", "").replace("-", "")
            ok = ok and (key == "sms_to" or d[0] == "+" and 8 < len(d) < 17)
        return ok
    if key == "sms_pin":
        return isinstance(v, str) and (not v or 3 < len(v) < 9 and v.isdigit())
    if key == "lockout_s":
        return (
            isinstance(v, list)
            and 0 < len(v) <= 8
            and all(isinstance(x, int) and 60 <= x <= 86400 for x in v)
        )
    return False


def validate(raw):
    """(config, bad keys): raw merged over the defaults; unknown or bad keys listed."""
    cfg = {}  # type: dict
    for k, v in DEFAULTS.items():
        cfg[k] = v
    bad = []
    if not isinstance(raw, dict):
        return cfg, ["<not an object>"]
    more = [k for k in raw if k not in DEFAULTS]
    for k, v in raw.items():
        if k in more:
            continue  # below
        if not _ok(k, v):
            bad.append(k)
            continue
        if isinstance(DEFAULTS[k], float):
            v = float(v)
        cfg[k] = v
    # a switch sense that was left out keeps its default
    if cfg["switch_sense"] is not DEFAULTS["switch_sense"]:
        merged = dict(SENSE)
        merged.update(cfg["switch_sense"])
        cfg["switch_sense"] = merged
    if cfg["max_run_s"] <= cfg["no_flow_s"]:
        bad.append("max_run_s")
        cfg["max_run_s"] = DEFAULTS["max_run_s"]
    u = cfg["uplink_url"]
    tls = u[:8] in ("https://", "mqtts://")
    if (u[:4] == "mqtt" or tls) and cfg["modem"] != "sim7600":
        bad.append("uplink_url")  # MQTT and TLS: the SIM7600's own clients only
        cfg["uplink_url"] = ""
    elif tls and not cfg["uplink_cert_sha256"]:  # TLS pins the server's certificate
        if "uplink_cert_sha256" not in bad:
            bad.append("uplink_cert_sha256")
        cfg["uplink_url"] = ""
    if cfg["sms_allow"] and not cfg["sms_pin"]:
        bad.append("sms_pin")  # commands need the PIN: none is taken without it
    if cfg["uplink_retry_max_s"] < cfg["uplink_retry_s"]:
        bad.append("uplink_retry_max_s")
        cfg["uplink_retry_max_s"] = cfg["uplink_retry_s"]
    if more:
        # the sensors' keys: their checks (which also report unknown keys) are
        # loaded only for a config that has any, and dropped with this module; a
        # board without sensors has none of their keys
        from . import sensorcfg

        sensorcfg.validate(raw, cfg, bad)
    return cfg, bad


def load(path):
    """(config, bad keys) from a JSON file; a missing or unreadable file is a fault."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError:
        return validate({})[0], ["<missing>"]
    except ValueError:
        return validate({})[0], ["<not JSON>"]
    return validate(raw)


def crc(cfg):
    """CRC-32 of the config as stored, for the config_change event."""
    import binascii

    return binascii.crc32(json.dumps(cfg).encode()) & 0xFFFFFFFF
