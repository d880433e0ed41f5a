"""Make the protocol test vectors (protocol/vectors/*.jsonl).

The vectors are the contract: regenerate them only when SPEC.md changes, and read
the diff. Each line: {"name", "keys", "hex", "expect", "report"} where expect is
what `jalkal decode [--keys]` prints for the byte stream and report what
`--stats` counts. acks.jsonl holds the signed upload answers instead (SPEC.md
"Uplink"): {"name", "key", "body", "inputs", "msg", "sig"}.
Run: python protocol/vectors/generate.py
"""

import hashlib
import json
import sys
import zlib
from pathlib import Path

from jkproto import codec as c
from jkproto import objects as ob

DEV = 0x0A1B2C3D
KEY = bytes(range(32))
OTHER = bytes(range(100, 132))
KEYS = {"devices": {"0a1b2c3d": {"key": KEY.hex()}}}
T0 = 1772323200  # 2026-03-01T00:00:00Z
NET, RTC, GPS, HOST = 2, 1, 3, 4


def frame(kind, values, dev=DEV, boot=7, seq=1, t=T0, flags=NET, prev=0, key=KEY):
    return c.pack(
        kind,
        dev,
        boot,
        seq,
        t,
        flags,
        prev,
        c.pack_payload(kind, values),
        c.Signer(key),
    )


def chain(items, dev=DEV, boot=7, key=KEY, seq=0):
    """Frames chained like the board makes them."""
    enc = c.Encoder(dev, key, boot=boot, seq=seq)
    return [bytes(enc.frame(kind, t, flags, *vals)) for kind, t, flags, vals in items]


def reseal(f, key=KEY, mac=True):
    """Recompute MAC (with key) and CRC of a frame altered in place."""
    b = bytearray(f)
    if mac:
        c.seal(b, len(b), c.Signer(key))
    else:
        c.seal(b, len(b), mac=bytes(b[-8:-4]))
    return bytes(b)


def vector(name, data, keys=None):
    sg = None
    if keys is not None:
        sg = {d: c.Signer(bytes.fromhex(v["key"])) for d, v in keys["devices"].items()}
    objs, stats = ob.decode_stream(data, sg)
    return {
        "name": name,
        "keys": keys,
        "hex": data.hex(),
        "expect": objs,
        "report": stats,
    }


R = c.READING
typical = (123450, 98760, 840, 0b00011000, 124, 21)


def frames():
    v = []
    v.append(
        vector(
            "boot-power-on-no-clock",
            frame(c.BOOT, (1, 0, 1, 0, 900, 100, 100), seq=0, t=3, flags=0),
        )
    )
    v.append(
        vector(
            "boot-watchdog-hall-meter",
            frame(c.BOOT, (3, 1, 2, 3, 600, 450000, 0), seq=0, flags=RTC),
        )
    )
    v.append(
        vector(
            "boot-epoch-rollover",
            frame(c.BOOT, (7, 0, 1, 0, 900, 1, 10), seq=0, boot=65535),
        )
    )
    v.append(vector("reading-typical", frame(R, typical), KEYS))
    v.append(vector("reading-zero", frame(R, (0, 0, 0, 0, 0, 0), flags=0, t=0)))
    v.append(
        vector(
            "reading-max",
            frame(
                R,
                (c.M32, c.M32, 65535, 255, 255, 99),
                dev=c.M32,
                boot=65535,
                seq=65535,
                t=c.M32,
            ),
        )
    )
    v.append(vector("reading-device-zero-gps", frame(R, typical, dev=0, flags=GPS)))
    v.append(vector("reading-host-time", frame(R, typical, flags=HOST)))
    v.append(
        vector(
            "reading-extra-payload-bytes",
            c.pack(
                R,
                DEV,
                7,
                1,
                T0,
                NET,
                0,
                c.pack_payload(R, typical) + b"\x01\x02\x03",
                c.Signer(KEY),
            ),
        )
    )
    v.append(vector("reading-reserved-flag-bits", frame(R, typical, flags=NET | 0xF8)))
    v.append(vector("event-pump-start-tank-low", frame(c.EVENT, (1, 1, 0))))
    v.append(vector("event-pump-stop-tank-full", frame(c.EVENT, (2, 2, 3600))))
    v.append(vector("event-pump-stop-dry-run", frame(c.EVENT, (2, 4, 1260))))
    v.append(vector("event-fault-no-flow", frame(c.EVENT, (3, 6, 120))))
    # a solar pump stopped by the sun going (30 no_sun), and by its battery (31)
    v.append(vector("event-pump-stop-no-sun", frame(c.EVENT, (2, 30, 20520))))
    v.append(vector("event-pump-stop-battery-low", frame(c.EVENT, (2, 31, 900))))
    v.append(vector("event-lockout-retry", frame(c.EVENT, (7, 13, 1800))))
    v.append(vector("event-unknown-codes", frame(c.EVENT, (200, 250, c.M32))))
    v.append(vector("heartbeat", frame(c.HEARTBEAT, (86400, 61440, 12, 18, 1))))
    v.append(
        vector("gap-unknown-pulses", frame(c.GAP, (1, 23, ob.UNKNOWN_PULSES, 0, 0)))
    )
    v.append(vector("gap-known", frame(c.GAP, (0, 24, 37, T0 - 3600, 3600))))
    v.append(vector("clock-set-from-network", frame(c.CLOCK, (2, 41, -3600))))
    v.append(vector("clock-set-from-rtc", frame(c.CLOCK, (1, 2, 0), flags=RTC)))
    N = ob.NO_VALUE
    # motor_s (the motor's running seconds this boot) appended to the first layout
    every = (4210, 3790, 1840, 9250, 812, 520, 721, 2650, 7940, 1, 2310, 1890, 1270, 0,
             12345)  # fmt: skip
    v.append(vector("measure-every-sensor", frame(c.MEASURE, every)))
    none = (N["H"], N["H"], N["H"], N["I"], N["H"], N["H"], N["H"], N["i"], N["I"],
            N["B"], N["H"], N["H"], N["H"], 0, N["I"])  # fmt: skip
    v.append(vector("measure-nothing-fitted", frame(c.MEASURE, none)))
    # the borewell loop open (bore = bit 0) and the DS18B20 gone (temp = bit 4): no
    # level, no temperature, so no EC or TDS either (ec = bit 2); pH and tank read
    faulty = (N["H"], N["H"], 650, 3063, N["H"], N["H"], 688, N["i"], 0, 0,
              N["H"], N["H"], N["H"], 1 | 4 | 16, 3600)  # fmt: skip
    v.append(vector("measure-sensor-faults", frame(c.MEASURE, faulty)))
    cold = (0, 6000, 0, 0, 0, 0, 0, -150, 0, 0, 0, 0, 0, 1 << 15, N["I"] - 1)
    v.append(vector("measure-edge-values", frame(c.MEASURE, cold)))
    longer = c.pack_payload(c.MEASURE, every) + b"\x01\x02"
    v.append(
        vector(
            "measure-with-later-fields",
            c.pack(c.MEASURE, DEV, 7, 1, T0, NET, 0, longer, c.Signer(KEY)),
        )
    )
    # as boards before motor_s wrote it (33-byte payload, objects.OLDER_FMT): no
    # motor_s; with 2 bytes more (too few for motor_s) the same, and `extra`
    older = every[:-1]
    payload = ob.pack_payload(c.MEASURE, older)
    old33 = c.pack(c.MEASURE, DEV, 7, 1, T0, NET, 0, payload, c.Signer(KEY))
    v.append(vector("measure-older-layout", old33))
    longer = ob.pack_payload(c.MEASURE, older) + b"\x01\x02"
    v.append(
        vector(
            "measure-older-layout-with-later-bytes",
            c.pack(c.MEASURE, DEV, 7, 1, T0, NET, 0, longer, c.Signer(KEY)),
        )
    )
    v.append(
        vector(
            "unknown-kind-opaque-payload",
            c.pack(9, DEV, 7, 1, T0, NET, 0, b"\xde\xad\xbe\xef", c.Signer(KEY)),
        )
    )
    v.append(
        vector(
            "unknown-kind-empty-payload",
            c.pack(0, DEV, 7, 1, T0, NET, 0, b"", c.Signer(KEY)),
        )
    )
    return v


def errors():
    v = []
    good = chain([(R, T0 + 900 * i, NET, typical) for i in range(3)])
    bad = bytearray(good[1])
    bad[25] ^= 0x10
    v.append(vector("bad-crc-middle-frame", good[0] + bytes(bad) + good[2], KEYS))
    forged = chain([(R, T0 + 900 * i, NET, typical) for i in range(3)], key=OTHER)
    v.append(vector("bad-mac-other-key", good[0] + forged[1], KEYS))
    tampered = bytearray(good[1])
    tampered[20] ^= 0x01  # more litres, CRC fixed up, MAC not
    v.append(
        vector(
            "bad-mac-tampered-reading",
            good[0] + reseal(tampered, mac=False) + good[2],
            KEYS,
        )
    )
    v.append(vector("chain-deleted-frame", good[0] + good[2], KEYS))
    v.append(vector("chain-reordered", good[0] + good[2] + good[1], KEYS))
    swapped = reseal(bytes(bytearray(good[2][:17]) + b"\x00\x00" + good[2][19:]))
    v.append(vector("chain-altered-prev-resigned", good[0] + good[1] + swapped, KEYS))
    v.append(vector("chain-starts-mid-boot", good[1] + good[2]))
    v.append(vector("truncated-tail", good[0] + good[1][:23]))
    v.append(vector("truncated-torn-write-then-more", good[0] + good[1][:30] + good[2]))
    v.append(vector("truncated-header-only", good[0][:2]))
    v.append(
        vector(
            "unknown-version",
            good[0] + reseal(bytes([0xA5, 2]) + good[1][2:], mac=False) + good[2],
        )
    )
    short = c.pack(R, DEV, 7, 1, T0, NET, 0, b"\x01\x02", c.Signer(KEY))
    v.append(vector("malformed-short-payload", short))
    # a measure payload one byte shorter than its oldest layout (33 bytes)
    short = c.pack(c.MEASURE, DEV, 7, 1, T0, NET, 0, bytes(32), c.Signer(KEY))
    v.append(vector("malformed-short-measure", short))
    v.append(
        vector(
            "garbage-between-frames",
            b"\x00\xff\xa5"
            + good[0]
            + b"hello\xa5\x01\x28\xa5"
            + good[1]
            + b"\xa5\x01\x1b"
            + good[2]
            + b"\xa5\x01",
        )
    )
    v.append(
        vector(
            "false-sync-with-plausible-length",
            b"\xa5\x01\x1c\x02" + bytes(24) + good[0],
        )
    )
    v.append(vector("garbage-only", bytes(range(256))))
    v.append(vector("empty", b""))
    v.append(
        vector("unknown-device-with-keys", frame(R, typical, dev=0x11112222), KEYS)
    )
    return v


def streams():
    boot = [(c.BOOT, 5, 0, (1, 0, 1, 0, 900, 100, 100))]
    items = (
        boot
        + [(c.CLOCK, T0, NET, (2, 40, 0))]
        + [
            (R, T0 + 900 * i, NET, (10 * i, 5 * i, 300, 0b11000, 124, 20))
            for i in range(1, 5)
        ]
    )
    items.insert(3, (c.EVENT, T0 + 1000, NET, (1, 1, 0)))
    items.append((c.EVENT, T0 + 4000, NET, (2, 2, 3000)))
    items.append((c.HEARTBEAT, T0 + 4500, NET, (4540, 61000, 0, 20, 1)))
    day = chain(items)
    v = [vector("day-start-chained-verified", b"".join(day), KEYS)]
    second = chain([(c.BOOT, 2, 0, (3, 0, 1, 0, 900, 100, 100))], boot=8)
    v.append(
        vector(
            "two-boots-two-devices",
            b"".join(day[:3]) + second[0] + frame(R, typical, dev=0x0A1B2C3E, seq=0),
            KEYS,
        )
    )
    return v


def ack(name, body, frames, stored, duplicate, acked_bytes, error="", key=KEY,
        device="0a1b2c3d"):  # fmt: skip
    """One signed answer: what the server signs for body and these numbers."""
    sha = hashlib.sha256(body).digest()
    inputs = {
        "device": device, "sha256": sha.hex(), "body_bytes": len(body),
        "frames": frames, "stored": stored, "duplicate": duplicate,
        "acked_bytes": acked_bytes, "error": error,
    }  # fmt: skip
    msg = c.ack_msg(device, sha, len(body), frames, stored, duplicate, acked_bytes,
                    error)  # fmt: skip
    sig = c.ack_sig(c.Signer(key), msg).decode()
    return {"name": name, "key": key.hex(), "body": body.hex(), "inputs": inputs,
            "msg": msg.decode(), "sig": sig}  # fmt: skip


def acks():
    R = c.READING
    day = chain([(R, T0 + 900 * i, NET, (10 * i, 7 * i, 300, 24, 124, 20))
                 for i in range(3)])  # fmt: skip
    body = b"".join(day)
    forged = reseal(day[1], OTHER)
    # the next three frames: a body of as many frames, so of the same CRC-32
    # (every frame ends in its own CRC-32), yet another SHA-256 and sig
    later = b"".join(chain([(R, T0 + 900 * i, NET, (10 * i, 7 * i, 300, 24, 124, 20))
                            for i in range(3, 6)], seq=3))  # fmt: skip
    assert zlib.crc32(later) == zlib.crc32(body) and later != body
    return [
        ack("ack-all-stored", body, 3, 3, 0, len(body)),
        ack("ack-all-duplicate", body, 3, 0, 3, len(body)),
        ack(
            "ack-first-taken-second-bad-mac",
            day[0] + forged,
            2,
            1,
            0,
            len(day[0]),
            "bad_mac",
        ),  # fmt: skip
        ack("ack-every-frame-bad-mac", forged + day[2], 2, 0, 0, 0, "bad_mac"),
        ack("ack-first-refused-next-taken", forged + day[2], 2, 1, 0, 0, "bad_mac"),
        ack("ack-body-refused", b"\xa5\x01garbage", 0, 0, 0, 0, "malformed_body"),
        ack("ack-next-batch-same-crc32", later, 3, 3, 0, len(later)),
        ack(
            "ack-other-device-key",
            day[0],
            1,
            1,
            0,
            len(day[0]),
            key=OTHER,
            device="11223344",
        ),  # fmt: skip
    ]


SETS = (("frames", frames), ("errors", errors), ("streams", streams), ("acks", acks))


def main():
    out = Path(__file__).parent
    for name, make in SETS:
        path = out / f"{name}.jsonl"
        with open(path, "w") as f:
            for vec in make():
                f.write(json.dumps(vec, separators=(",", ":")) + "\n")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
