# jalkal frame codec: binary layout, CRC, truncated HMAC-SHA256 and the stream scanner.
# Runs unchanged on MicroPython (struct, binascii, hashlib only) and CPython.
# The layout is specified in protocol/SPEC.md; keep the two in step.
import binascii
import hashlib
import struct

SYNC = 0xA5
VERSION = 1
HEAD_FMT = "<BBBBBIHHIH"  # sync ver len kind flags device boot seq t prev
HEAD_LEN = 19
MAC_LEN = 4
TRAILER_LEN = 8  # mac(4) crc(4)
MIN_LEN = HEAD_LEN + TRAILER_LEN
MAX_LEN = 255
MAX_PAYLOAD = MAX_LEN - MIN_LEN
M32 = 0xFFFFFFFF
SEQ_MAX = 0xFFFF
TQ_MASK = 0x07  # flags bits 0-2: time quality

BOOT = 1
READING = 2
EVENT = 3
HEARTBEAT = 4
GAP = 5
CLOCK = 6
MEASURE = 7

# payload struct formats of the v1 kinds (fields are listed in SPEC.md)
PAYLOAD_FMT = {
    BOOT: "<BBBBHII",  # reset, fw major/minor/patch, interval_s, source/supply pulses per m3
    READING: "<IIHBBB",  # source_pulses, supply_pulses, pump_s, inputs, supply_dv, csq
    EVENT: "<BBI",  # event, reason, value
    HEARTBEAT: "<IIIBB",  # since_boot_s, heap_free, backlog, csq, state
    GAP: "<BBIII",  # meter, reason, pulses, start, seconds
    CLOCK: "<BIi",  # source, at_uptime_s, step_s
    # bore_head_cm, bore_depth_cm, tank_mm, tank_l, ec_us, tds_mgl, ph_x100,
    # water_cc, motor_ma, motor_running, supply_cv, panel_cv, battery_cv, faults,
    # motor_s (appended: older boards' layout in objects.OLDER_FMT)
    MEASURE: "<HHHIHHHiIBHHHHI",
}


class FrameError(ValueError):
    pass


def civil(days):
    """(year, month, day) of a count of days since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def payload_size(kind):
    fmt = PAYLOAD_FMT.get(kind)
    return struct.calcsize(fmt) if fmt else 0


def crc(data):
    return binascii.crc32(data) & M32


class Signer:
    """Truncated HMAC-SHA256 (RFC 2104) with a 32-byte device key."""

    def __init__(self, key):
        if len(key) != 32:
            raise FrameError("device key must be 32 bytes")
        self._ipad = bytes(b ^ 0x36 for b in key) + b"\x36" * 32
        self._opad = bytes(b ^ 0x5C for b in key) + b"\x5c" * 32

    def digest(self, msg):
        """The whole HMAC-SHA256 (32 bytes)."""
        h = hashlib.sha256(self._ipad)
        h.update(msg)
        o = hashlib.sha256(self._opad)
        o.update(h.digest())
        return o.digest()

    def mac(self, msg):
        return self.digest(msg)[:MAC_LEN]


def mqtt_password(signer):
    """The device's MQTT password (its user name is its id, 8 hex digits): 32 hex
    digits (128 bits) derived from its key, so the board needs no second secret and
    the host can write the broker's password file from the keys file."""
    return binascii.hexlify(signer.digest(b"jalkal mqtt password")[:16])


ACK_TAG = "jalkal-ack/1"  # the signed answer's domain and version (SPEC.md "Uplink")
ACK_SIG_LEN = 8  # bytes of HMAC-SHA256 in an answer's sig (16 hex digits)


def ack_msg(device, sha256, body_bytes, frames, stored, duplicate, acked_bytes, error):
    """The ASCII message an upload answer's sig signs (protocol/SPEC.md "Uplink").
    device: 8 lowercase hex digits (str); sha256: the SHA-256 digest (32 bytes) of
    the body as the sender sent it (not its CRC-32: frames that end in their own
    CRC-32 give every body of the same frame lengths the same CRC-32); error: the
    answer's error field, "" when it has none. Fields joined by one space."""
    h = binascii.hexlify(sha256).decode()
    return (
        "%s %s %s %d %d %d %d %d %s"
        % (ACK_TAG, device, h, body_bytes, frames, stored, duplicate, acked_bytes,
           error)
    ).encode()  # fmt: skip


def ack_sig(signer, msg):
    """An answer's sig: hex digits (bytes) of HMAC-SHA256(key, msg)[0:ACK_SIG_LEN]."""
    return binascii.hexlify(signer.digest(msg)[:ACK_SIG_LEN])


def seal(buf, n, signer=None, mac=None):
    """Write the length, MAC and CRC of the frame in buf[0:n]; return the MAC."""
    if n < MIN_LEN or n > MAX_LEN:
        raise FrameError("frame length %d out of range" % n)
    mv = memoryview(buf)
    buf[2] = n
    if signer is not None:
        mac = signer.mac(mv[: n - TRAILER_LEN])
    if mac is None or len(mac) != MAC_LEN:
        raise FrameError("no key and no MAC given")
    buf[n - TRAILER_LEN : n - 4] = mac
    struct.pack_into("<I", buf, n - 4, crc(mv[: n - 4]))
    return mac


def pack(kind, device, boot, seq, t, flags, prev, payload, signer=None, mac=None):
    """One v1 frame as bytes; payload is the packed payload (bytes)."""
    n = MIN_LEN + len(payload)
    if n > MAX_LEN:
        raise FrameError("payload too long: %d bytes" % len(payload))
    buf = bytearray(n)
    try:
        struct.pack_into(
            HEAD_FMT, buf, 0, SYNC, VERSION, n, kind, flags, device, boot, seq, t, prev
        )
    except (struct.error, OverflowError, TypeError, ValueError) as e:
        raise FrameError("header field out of range: %s" % e)
    buf[HEAD_LEN : HEAD_LEN + len(payload)] = payload
    seal(buf, n, signer, mac)
    return bytes(buf)


def pack_payload(kind, values):
    fmt = PAYLOAD_FMT.get(kind)
    if fmt is None:
        raise FrameError("no payload layout for kind %d" % kind)
    try:
        return struct.pack(fmt, *values)
    except (struct.error, OverflowError, TypeError, ValueError) as e:
        raise FrameError("payload field out of range: %s" % e)


class Encoder:
    """Frames for one device, chained, into one pre-allocated buffer (the board's path).

    The returned memoryview is valid until the next call."""

    def __init__(self, device, key, boot=0, seq=0, prev=0):
        self.buf = bytearray(MAX_LEN)
        self.mv = memoryview(self.buf)
        self.signer = Signer(key)
        self.device = device
        self.boot = boot
        self.seq = seq
        self.prev = prev

    def exhausted(self):
        # the firmware starts a new boot epoch (boot + 1, seq 0) before this happens
        return self.seq > SEQ_MAX

    def new_epoch(self, boot):
        self.boot = boot
        self.seq = 0
        self.prev = 0

    def frame(self, kind, t, flags, *values):
        if self.seq > SEQ_MAX:
            raise FrameError("sequence exhausted: start a new boot epoch")
        fmt = PAYLOAD_FMT[kind]
        n = MIN_LEN + struct.calcsize(fmt)
        struct.pack_into(
            HEAD_FMT, self.buf, 0, SYNC, VERSION, n, kind, flags,
            self.device, self.boot, self.seq, t, self.prev,
        )  # fmt: skip
        struct.pack_into(fmt, self.buf, HEAD_LEN, *values)
        m = seal(self.buf, n, self.signer)
        self.prev = m[0] | (m[1] << 8)
        self.seq += 1
        return self.mv[:n]


def frame_len(buf, off, end):
    """Length of a CRC-valid frame (any version) starting at off, else 0."""
    if end - off < MIN_LEN or buf[off] != SYNC:
        return 0
    n = buf[off + 2]
    if n < MIN_LEN or off + n > end:
        return 0
    if (
        crc(memoryview(buf)[off : off + n - 4])
        != struct.unpack_from("<I", buf, off + n - 4)[0]
    ):
        return 0
    return n


def scan(buf, start=0, end=None):
    """Yield (offset, length) of every CRC-valid frame; other bytes are garbage.

    Greedy: a valid frame is taken whole, anything else moves on by one byte."""
    if end is None:
        end = len(buf)
    off = start
    while off < end:
        n = frame_len(buf, off, end)
        if n:
            yield off, n
            off += n
        else:
            off += 1


def classify_gap(buf, a, b, end):
    """What a garbage run buf[a:b] looked like: 'truncated', 'crc' or 'garbage'."""
    if buf[a] != SYNC:
        return "garbage"
    if a + 1 < end and buf[a + 1] != VERSION:
        return "garbage"
    if a + 2 >= end:
        return "truncated" if b == end else "garbage"
    n = buf[a + 2]
    if n < MIN_LEN:
        return "garbage"
    if a + n > b:
        return "truncated"
    return "crc"


def unpack_head(buf, off=0):
    """(version, len, kind, flags, device, boot, seq, t, prev) of a v1 frame."""
    return struct.unpack_from(HEAD_FMT, buf, off)[1:]


def unpack(buf, off=0):
    """Decode the v1 frame at off (CRC already checked by scan/frame_len).

    Returns (kind, flags, device, boot, seq, t, prev, values, extra, mac)
    where values is the payload tuple (None for an unknown kind) and extra the
    payload bytes past the known layout. A frame of an older layout (shorter)
    raises here; objects.unpack reads it."""
    ver, n, kind, flags, device, boot, seq, t, prev = unpack_head(buf, off)
    if ver != VERSION:
        raise FrameError("unknown version %d" % ver)
    p0 = off + HEAD_LEN
    p1 = off + n - TRAILER_LEN
    mac = bytes(buf[p1 : p1 + MAC_LEN])
    fmt = PAYLOAD_FMT.get(kind)
    if fmt is None:
        return kind, flags, device, boot, seq, t, prev, None, bytes(buf[p0:p1]), mac
    size = struct.calcsize(fmt)
    if p1 - p0 < size:
        raise FrameError(
            "payload of kind %d is %d bytes, needs %d" % (kind, p1 - p0, size)
        )
    values = struct.unpack_from(fmt, buf, p0)
    return (
        kind,
        flags,
        device,
        boot,
        seq,
        t,
        prev,
        values,
        bytes(buf[p0 + size : p1]),
        mac,
    )


def verify(buf, off, n, signer):
    mv = memoryview(buf)
    return signer.mac(mv[off : off + n - TRAILER_LEN]) == bytes(
        mv[off + n - TRAILER_LEN : off + n - 4]
    )
