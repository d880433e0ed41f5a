# Frames <-> the JSON objects `jalkal decode` prints and `jalkal encode` reads.
# Reference stream decoder (CRC, chain, MAC, garbage accounting) the bulk decoder
# must agree with. Runs on MicroPython and CPython.
import binascii
import struct

from jkproto import codec as c

KINDS = ("", "boot", "reading", "event", "heartbeat", "gap", "clock", "measure")
TIME = ("none", "rtc", "net", "gps", "host")
RESET = (
    "unknown",
    "power_on",
    "hard",
    "watchdog",
    "deepsleep",
    "soft",
    "brownout",
    "epoch",
)
EVENTS = (
    "", "pump_start", "pump_stop", "fault_raised", "fault_cleared",
    "config_change", "mode_change", "lockout", "lockout_end", "sms_command",
)  # fmt: skip
REASONS = (
    "none", "tank_low", "tank_full", "overflow", "dry_run", "max_run", "no_flow",
    "button", "command", "sms", "power_return", "power_loss", "wire_break", "retry",
    "boot", "sd_fail", "modem", "relay_stuck", "min_off", "auto", "manual",
    "config", "clock", "crash", "counter", "bad_pin", "bad_ack", "bore_low",
    "motor_not_running", "motor_without_relay", "no_sun", "battery_low",
)  # fmt: skip
METERS = ("source", "supply")
STATES = ("boot", "idle", "run", "lockout", "fault", "off")
INPUTS = ("dry", "low", "high", "pump", "mains", "fault", "sd_fail", "manual")
UNKNOWN_PULSES = 0xFFFFFFFF
# a field of a `measure` frame with no value (not fitted, or in fault) holds the
# all-ones value of its type (0x8000 0000 for the signed water temperature)
NO_VALUE = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF, "i": -0x80000000}
# measure frames: bit i of `faults` set = sensor i read a fault (its value is null)
SENSORS = ("bore", "tank", "ec", "ph", "temp", "motor", "supply", "panel", "battery")

# (name, table) per payload value; table: a names tuple, "ver" (3 values),
# "bits" (INPUTS), "ts" (UTC seconds, 0 = unknown), "opt" (an integer; the
# all-ones value of its type, NO_VALUE, is null), "faults" (SENSORS bits)
# or None (plain integer)
FIELDS = {
    c.BOOT: (
        ("reset", RESET), ("fw", "ver"), ("interval_s", None),
        ("source_pulses_per_m3", None), ("supply_pulses_per_m3", None),
    ),
    c.READING: (
        ("source_pulses", None), ("supply_pulses", None), ("pump_s", None),
        ("inputs", "bits"), ("supply_dv", None), ("csq", None),
    ),
    c.EVENT: (("event", EVENTS), ("reason", REASONS), ("value", None)),
    c.HEARTBEAT: (
        ("since_boot_s", None), ("heap_free", None), ("backlog", None),
        ("csq", None), ("state", STATES),
    ),
    c.GAP: (
        ("meter", METERS), ("reason", REASONS), ("pulses", "pulses"),
        ("start", "ts"), ("seconds", None),
    ),
    c.CLOCK: (("source", TIME), ("at_uptime_s", None), ("step_s", None)),
    c.MEASURE: (
        ("bore_head_cm", "opt"), ("bore_depth_cm", "opt"), ("tank_mm", "opt"),
        ("tank_l", "opt"), ("ec_us", "opt"), ("tds_mgl", "opt"), ("ph_x100", "opt"),
        ("water_cc", "opt"), ("motor_ma", "opt"), ("motor_running", "opt"),
        ("supply_cv", "opt"), ("panel_cv", "opt"), ("battery_cv", "opt"),
        ("faults", "faults"), ("motor_s", "opt"),
    ),
}  # fmt: skip
# the layouts older boards wrote, for kinds that have had fields appended (here,
# not in the codec: the board only writes the newest): a payload shorter than
# codec.PAYLOAD_FMT's but as long as an older layout is read with that layout,
# the appended fields absent; shorter than the oldest is malformed
OLDER_FMT = {c.MEASURE: ("<HHHIHHHiIBHHHH",)}  # measure before motor_s: 33 bytes


def payload_min(kind):
    """The shortest payload of a known kind that is not malformed (its oldest
    layout's size)."""
    old = OLDER_FMT.get(kind)
    return struct.calcsize(old[-1]) if old else c.payload_size(kind)


def layout(kind, plen):
    """The struct format a payload of plen bytes of a known kind is read with: the
    newest layout that fits, None when it is shorter than the oldest."""
    fmt = c.PAYLOAD_FMT[kind]
    if struct.calcsize(fmt) <= plen:
        return fmt
    for old in OLDER_FMT.get(kind, ()):
        if struct.calcsize(old) <= plen:
            return old
    return None


def unpack(buf, off=0):
    """codec.unpack, and a frame of an older layout (OLDER_FMT) too: its values
    tuple is shorter, extra the bytes past that layout."""
    try:
        return c.unpack(buf, off)
    except c.FrameError:
        ver, n, kind, flags, device, boot, seq, t, prev = c.unpack_head(buf, off)
        plen = n - c.MIN_LEN
        fmt = layout(kind, plen) if ver == c.VERSION else None
        if fmt is None:
            if ver == c.VERSION:
                raise c.FrameError("payload of kind %d is %d bytes, needs %d"
                                   % (kind, plen, payload_min(kind)))  # fmt: skip
            raise
    p0 = off + c.HEAD_LEN
    p1 = off + n - c.TRAILER_LEN
    size = struct.calcsize(fmt)
    values = struct.unpack_from(fmt, buf, p0)
    mac = bytes(buf[p1 : p1 + c.MAC_LEN])
    return (kind, flags, device, boot, seq, t, prev, values,
            bytes(buf[p0 + size : p1]), mac)  # fmt: skip


def pack_payload(kind, values):
    """codec.pack_payload, or a payload of an older layout (fewer values: a frame
    as an older board wrote it)."""
    for old in OLDER_FMT.get(kind, ()):
        if len(values) == len(old) - 1:
            try:
                return struct.pack(old, *values)
            except (struct.error, OverflowError, TypeError, ValueError) as e:
                raise c.FrameError("payload field out of range: %s" % e)
    return c.pack_payload(kind, values)


COMMON = ("device", "boot", "seq", "kind", "ts", "uptime_s", "time", "xflags",
          "extra", "payload", "prev", "mac", "chain", "verified", "raw", "version",
          "error")  # fmt: skip


def hexs(b):
    return binascii.hexlify(b).decode()


def unhex(s, what, size=None):
    try:
        b = binascii.unhexlify(s)
    except (ValueError, TypeError):
        raise c.FrameError("%s: not hex: %r" % (what, s))
    if size is not None and len(b) != size:
        raise c.FrameError("%s: needs %d hex digits" % (what, 2 * size))
    return b


def device_str(device):
    return "%08x" % device


def parse_device(s):
    if not isinstance(s, str) or len(s) != 8:
        raise c.FrameError("device must be 8 hex digits, got %r" % (s,))
    return int.from_bytes(unhex(s, "device", 4), "big")


# --- UTC seconds <-> ISO 8601, no time module needed (days from civil, H. Hinnant)
def _days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def iso(t):
    days, s = divmod(t, 86400)
    y, m, d = c.civil(days)
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, s // 3600, s // 60 % 60, s % 60)


def parse_iso(s):
    """'YYYY-MM-DDTHH:MM:SSZ' (UTC) -> seconds since 1970."""
    if not isinstance(s, str):
        raise c.FrameError("time must be like 2026-03-01T08:15:00Z, got %r" % (s,))
    try:
        if len(s) != 20 or s[4] != "-" or s[7] != "-" or s[10] != "T" or s[19] != "Z":
            raise ValueError
        y, mo, d = int(s[0:4]), int(s[5:7]), int(s[8:10])
        h, mi, se = int(s[11:13]), int(s[14:16]), int(s[17:19])
        if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and se < 60):
            raise ValueError
    except (ValueError, TypeError, IndexError):
        raise c.FrameError("time must be like 2026-03-01T08:15:00Z, got %r" % (s,))
    t = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se
    if iso(t) != s:
        raise c.FrameError("no such date: %r" % (s,))
    return t


def _name(table, code):
    return table[code] if code < len(table) and table[code] else code


def _code(table, v, what):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if v and v in table:
        return table.index(v)
    raise c.FrameError("%s: unknown name %r" % (what, v))


def to_obj(buf, off=0, n=None):
    """The decoded object of the CRC-valid frame at buf[off:off+n]."""
    if n is None:
        n = buf[off + 2]
    if buf[off + 1] != c.VERSION:
        return {"version": buf[off + 1], "raw": hexs(bytes(buf[off : off + n]))}
    try:
        kind, flags, device, boot, seq, t, prev, values, extra, mac = unpack(buf, off)
    except c.FrameError as e:
        return {
            "version": c.VERSION,
            "error": str(e),
            "raw": hexs(bytes(buf[off : off + n])),
        }
    o = {"device": device_str(device), "boot": boot, "seq": seq}
    o["kind"] = KINDS[kind] if kind < len(KINDS) and KINDS[kind] else kind
    tq = flags & c.TQ_MASK
    if tq:
        o["ts"] = iso(t)
    else:
        o["ts"] = None
        o["uptime_s"] = t
    o["time"] = _name(TIME, tq)
    if flags & ~c.TQ_MASK:
        o["xflags"] = flags & ~c.TQ_MASK
    if values is None:
        o["payload"] = hexs(extra)
    else:
        i = 0
        fmt = c.PAYLOAD_FMT[kind]
        for name, table in FIELDS[kind]:
            if i == len(values):
                break  # an older layout (codec.OLDER_FMT): appended fields absent
            v = values[i]
            i += 1
            if table is None:
                pass
            elif table == "opt":
                v = None if v == NO_VALUE[fmt[i]] else v
            elif table == "faults":
                v = [
                    SENSORS[b] if b < len(SENSORS) else b
                    for b in range(16)
                    if v >> b & 1
                ]
            elif table == "ver":
                v = "%d.%d.%d" % (v, values[i], values[i + 1])
                i += 2
            elif table == "bits":
                v = [INPUTS[b] for b in range(8) if v >> b & 1]
            elif table == "ts":
                v = iso(v) if v else None
            elif table == "pulses":
                v = None if v == UNKNOWN_PULSES else v
            else:
                v = _name(table, v)
            o[name] = v
        if extra:
            o["extra"] = hexs(extra)
    o["prev"] = hexs(bytes(buf[off + 17 : off + 19]))
    o["mac"] = hexs(mac)
    return o


def _int(o, name):
    v = o.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise c.FrameError("%s: needs an integer, got %r" % (name, v))
    return v


def payload_of(kind, o):
    """Packed payload bytes of object o of a known kind."""
    vals = []
    fmt = c.PAYLOAD_FMT[kind]
    older = [len(f) - 1 for f in OLDER_FMT.get(kind, ())]
    for name, table in FIELDS[kind]:
        if name not in o:
            if len(vals) in older and not any(k in o for k, _t in FIELDS[kind]
                                              [len(vals):]):  # fmt: skip
                break  # a frame of an older layout: the appended fields absent
            raise c.FrameError("%s: missing field %r" % (KINDS[kind], name))
        v = o[name]
        if table is None:
            vals.append(_int(o, name))
        elif table == "opt":
            vals.append(NO_VALUE[fmt[len(vals) + 1]] if v is None else _int(o, name))
        elif table == "faults":
            if not isinstance(v, list):
                raise c.FrameError("faults must be a list of names, got %r" % (v,))
            bits = 0
            for x in v:
                b = _code(SENSORS, x, "faults")
                if not 0 <= b < 16:
                    raise c.FrameError("faults: bit %r out of range 0-15" % (b,))
                bits |= 1 << b
            vals.append(bits)
        elif table == "ver":
            try:
                parts = [int(x) for x in v.split(".")]
                if len(parts) != 3:
                    raise ValueError
            except (ValueError, AttributeError):
                raise c.FrameError("fw must be like 1.2.3, got %r" % (v,))
            vals.extend(parts)
        elif table == "bits":
            if not isinstance(v, list):
                raise c.FrameError("inputs must be a list of names, got %r" % (v,))
            bits = 0
            for x in v:
                b = _code(INPUTS, x, "inputs")
                if not 0 <= b < 8:
                    raise c.FrameError("inputs: bit %r out of range 0-7" % (b,))
                bits |= 1 << b
            vals.append(bits)
        elif table == "ts":
            vals.append(0 if v is None else parse_iso(v))
        elif table == "pulses":
            vals.append(UNKNOWN_PULSES if v is None else _int(o, name))
        else:
            vals.append(_code(table, v, name))
    return pack_payload(kind, vals)


def from_obj(o, signer=None, prev=None):
    """Frame bytes for a decoded object. With a signer the MAC is computed, else
    o["mac"] is used; prev (2 bytes) is used when o has no "prev"."""
    if not isinstance(o, dict):
        raise c.FrameError("a frame object must be a JSON object")
    if "raw" in o:
        return unhex(o["raw"], "raw")
    kind = _code(KINDS, o.get("kind"), "kind")
    device = parse_device(o.get("device"))
    boot = _int(o, "boot")
    seq = _int(o, "seq")
    tq = _code(TIME, o.get("time", "none"), "time")
    if tq & ~c.TQ_MASK:
        raise c.FrameError("time quality code %d out of range" % tq)
    if tq:
        t = parse_iso(o.get("ts"))
    else:
        t = _int(o, "uptime_s")
    x = o.get("xflags", 0)
    if not isinstance(x, int) or isinstance(x, bool) or x & ~0xF8:
        raise c.FrameError("xflags: needs an integer of bits 3-7, got %r" % (x,))
    flags = tq | x
    if kind in FIELDS:
        payload = payload_of(kind, o) + unhex(o.get("extra", ""), "extra")
    else:
        payload = unhex(o.get("payload", ""), "payload")
    if "prev" in o:
        p = unhex(o["prev"], "prev", 2)
    elif prev is not None:
        p = prev
    else:
        p = b"\x00\x00"
    mac = None if signer is not None else unhex(o.get("mac", ""), "mac", c.MAC_LEN)
    return c.pack(
        kind, device, boot, seq, t, flags, p[0] | p[1] << 8, payload, signer, mac
    )


def new_stats():
    return {
        "frames": 0, "bytes": 0, "skipped_bytes": 0, "skipped_runs": 0,
        "crc_errors": 0, "truncated": 0, "unknown_version": 0, "malformed": 0,
        "chain_breaks": 0, "mac_failures": 0, "unknown_devices": 0,
    }  # fmt: skip


def _skip(stats, buf, a, b, end):
    stats["skipped_bytes"] += b - a
    stats["skipped_runs"] += 1
    what = c.classify_gap(buf, a, b, end)
    if what == "crc":
        stats["crc_errors"] += 1
    elif what == "truncated":
        stats["truncated"] += 1


class StreamState:
    """Chain state per (device, boot) carried across the chunks of one stream."""

    def __init__(self):
        self.last = {}

    def chain(self, device, boot, seq, prev, mac):
        k = (device, boot)
        last = self.last.get(k)
        self.last[k] = (seq, mac[:2])
        if last is not None:
            return "ok" if seq == last[0] + 1 and prev == last[1] else "break"
        if seq == 0:
            return "ok" if prev == b"\x00\x00" else "break"
        return "start"


def decode_stream(buf, signers=None, stats=None, state=None):
    """Reference decoder: objects of every CRC-valid frame in buf, in order.

    signers: None (no MAC check) or {device id str: Signer}; adds "verified"."""
    if stats is None:
        stats = new_stats()
    if state is None:
        state = StreamState()
    out = []
    end = len(buf)
    stats["bytes"] += end
    pos = 0
    for off, n in c.scan(buf):
        if off > pos:
            _skip(stats, buf, pos, off, end)
        pos = off + n
        o = to_obj(buf, off, n)
        if "raw" in o:
            stats[
                "unknown_version"
                if "version" in o and "error" not in o
                else "malformed"
            ] += 1
            out.append(o)
            continue
        stats["frames"] += 1
        prev = bytes(buf[off + 17 : off + 19])
        mac = bytes(buf[off + n - 8 : off + n - 4])
        ch = state.chain(o["device"], o["boot"], o["seq"], prev, mac)
        o["chain"] = ch
        if ch == "break":
            stats["chain_breaks"] += 1
        if signers is not None:
            s = signers.get(o["device"])
            ok = s is not None and c.verify(buf, off, n, s)
            if s is None:
                stats["unknown_devices"] += 1
            if not ok:
                stats["mac_failures"] += 1
            o["verified"] = ok
        out.append(o)
    if pos < end:
        _skip(stats, buf, pos, end, end)
    return out, stats
