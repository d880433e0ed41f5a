"""The modem driver, store and forward and SMS in real MicroPython (the WebAssembly
build): a simulated day of readings goes up through the simulated modem, and the
heap the modules cost once imported as the board's bytecode (.mpy)."""

import json

import pytest
from conftest import REPO, compiled, firmware_files

SIM_FILES = ("__init__.py", "vclock.py", "hw.py", "modem.py")

# a server's answer, signed as protocol/SPEC.md "Uplink" says, built in MicroPython
SIGNED = r"""
import hashlib


def signed(sg, body):
    n = nf = 0
    for o, k in codec.scan(body):
        got[bytes(body[o + 5 : o + 13])] = 1
        n += k
        nf += 1
    sha = hashlib.sha256(body).digest()
    sig = codec.ack_sig(sg, codec.ack_msg("0a1b2c3d", sha, len(body), nf, nf, 0, n, ""))
    return (b'{"ok":true,"frames":%d,"stored":%d,"duplicate":0,"acked_bytes":%d,'
            b'"sig":"%s","device":"0a1b2c3d","acked":[]}' % (nf, nf, n, sig))
"""

SCRIPT = r"""
import json, os
from jkproto import codec
from jkfw.logger import FrameLog
from jkfw.modem import Modem
from jkfw.sms import Sms
from jkfw.store import Store
from jkfw.uplink import Uplink
from jksim.modem import fit
from jksim.vclock import VirtualClock

T0 = 1772303400
KEY = bytes(range(32))
for d in ("sd", "flash"):
    try:
        os.mkdir(d)
    except OSError:
        pass
got = {}
SIGNED


def post(url, body):
    return 200, signed(codec.Signer(KEY), body), len(body) + 700


cfg = {"device": "0a1b2c3d", "uplink_url": "http://127.0.0.1:9", "apn": "internet",
       "uplink_s": 3600, "uplink_batch_bytes": 1024, "uplink_retry_s": 120,
       "uplink_retry_max_s": 3600, "uplink_max_hour": 4, "uplink_max_day": 48,
       "uplink_day_bytes": 150000, "sms_to": ["+919876543210"],
       "sms_allow": ["+919876543210"], "sms_pin": "4821", "sms_max_day": 10}
clock = VirtualClock(T0)


class H:
    modem = None


sm = fit(H, clock, "sim800", ("modem_power", "modem_pwrkey", "modem_rst"), utc0=T0,
         post=post)
uart, pins = H.modem
store = Store("flash")
state = store.load()
enc = codec.Encoder(0x0A1B2C3D, KEY, boot=1)
log = FrameLog("sd", "flash")
m = Modem(uart, clock, "sim800", pins)
cmds = []
sms = Sms(cfg, cmds.append, lambda: b"pump off")
up = Uplink(cfg, clock, m, log, state, lambda: store.save(state),
            lambda *e: None, lambda t: clock.set_utc(t, 2), sms,
            signer=codec.Signer(KEY))
n = [0]


async def readings():
    while True:
        t, q = clock.now()
        log.append(enc.frame(2, t, q, 1, 2, 3, 24, 0, 99), 20260301)
        n[0] += 1
        await clock.sleep_ms(900000)


clock.spawn(readings())
clock.spawn(up.run())
sm.deliver(b"+919876543210", b"pump on 4821")
clock.run_until(86400000)
import sys
print(json.dumps({"pdu_kept": "jkfw.pdu" in sys.modules,
                  "logged": n[0], "got": len(got), "posts": sm.posts, "cmds": cmds,
                  "failures": len(clock.failures), "sent": len(sm.sent)}))
""".replace("SIGNED\n", SIGNED)


@pytest.mark.micropython
def test_a_day_of_uploads_in_micropython(mpy):
    files = firmware_files()
    for name in SIM_FILES:
        files[f"jksim/{name}"] = (REPO / "sim" / name).read_bytes()
    out = json.loads(mpy.run(SCRIPT, files, timeout_s=300))
    assert out["failures"] == 0
    assert out["logged"] == 97  # at 00:00 of both days
    assert out["got"] >= 92  # all but the readings after the last upload
    assert 20 <= out["posts"] <= 30
    assert out["cmds"] == ["on"] and out["sent"] == 1
    assert out["pdu_kept"] is False  # the decoder was dropped after the text


MODEM_MODULES = ("modem", "uplink", "sms", "mqtt")


@pytest.mark.micropython
def test_heap_cost_of_the_modem_modules(mpy):
    """What importing modem, uplink and sms as .mpy bytecode adds to the live heap
    (printed; docs/uplink.md quotes it)."""
    files = compiled(firmware_files())
    steps = [
        "import jkfw.app, jkfw.logger",
        "gc.collect()",
        "gc.collect()\nprint(gc.mem_alloc())",
    ]
    for mod in MODEM_MODULES:
        steps += [
            f"import jkfw.{mod}",
            "gc.collect()",
            "gc.collect()\nprint(gc.mem_alloc())",
        ]
    steps += ["import jkfw.pdu", "gc.collect()", "gc.collect()\nprint(gc.mem_alloc())"]
    # after a session (Uplink.close): the driver's modules dropped, pdu's too
    steps += [
        "jkfw.unload('pdu')\njkfw.unload('mqtt')\njkfw.unload('modem')",
        "gc.collect()",
        "gc.collect()\nprint(gc.mem_alloc())",
    ]
    out = [
        int(x) for x in mpy.run("import gc", files, timeout_s=120, steps=steps).split()
    ]
    between = out.pop() - out[0]  # what stays between sessions
    pdu = out.pop() - out[-1]  # loaded only while texts are read, then dropped
    print("heap of jkfw.pdu while it is loaded:", pdu)
    assert 0 < pdu < 2500
    cost = {m: out[i + 1] - out[i] for i, m in enumerate(MODEM_MODULES)}
    print("heap cost of the modules (bytes):", cost, "total", out[-1] - out[0])
    # the figures before the documented answer formats, PDU mode, the PIN and the
    # separate budgets (docs/modem.md): 5,664 + 5,536 + 2,944 + 2,064 B; they may
    # grow by 1 KB at most, and by 640 B more for checking the server's signed
    # answers (uplink: 5,632 B before, 6,240 B with it), and by 528 B more for the
    # MQTT login and the TLS hooks (modem 5,872 -> 6,144 B, mqtt 2,224 -> 2,480 B;
    # the TLS code itself, jkfw.tls, is loaded only for a session and dropped)
    # (and by 448 B more for making the driver for each session: uplink 6,592 B)
    assert 0 < out[-1] - out[0] <= 16208 + 1024 + 640 + 528 + 448
    # between sessions the driver (modem, mqtt) is not on the heap: uplink and sms
    # stay (the qstrs of the dropped modules stay too: the interpreter keeps them)
    print("heap between sessions:", between)
    assert between <= cost["uplink"] + cost["sms"] + 1024


BOARD = r"""
import json, os
from jksim.hw import SimHal
from jksim.modem import fit
from jksim.vclock import VirtualClock
from jkfw.main import start
from jkproto import codec

for d in ("sd", "flash"):
    try:
        os.mkdir(d)
    except OSError:
        pass
with open("board.json") as f:
    pins = json.load(f)["pins"]
with open("config.json", "w") as f:
    json.dump({"device": "0a1b2c3d", "key": "00" * 32, "pins": pins, "display": "none",
               "modem": "sim800", "uplink_url": "http://127.0.0.1:9"}, f)
clock = VirtualClock(1772303400)
got = {}
SIGNED


def post(url, body):
    return 200, signed(codec.Signer(bytes(32)), body), 0


made = []


def make_hal(cfg):
    hal = SimHal(cfg, clock)
    made.append(fit(hal, clock, "sim800", pins, utc0=1772303400, post=post))
    return hal


ctl = start(make_hal, clock, "config.json", "flash", "sd")
clock.run_until(6 * 3600000)
up = ctl.uplink
print(json.dumps({"failures": [repr(e) for _n, e in clock.failures],
                  "frames": ctl.frames, "got": len(got), "fails": up.fails,
                  "posts": made[0].posts, "csq": up.csq,
                  "status": ctl.status()["uplink"]}))
""".replace("SIGNED\n", SIGNED)


@pytest.mark.micropython
def test_the_controller_with_a_modem_in_micropython(mpy):
    """The board's own boot sequence (jkfw.main.start) with a modem configured."""
    files = firmware_files()
    for name in SIM_FILES:
        files[f"jksim/{name}"] = (REPO / "sim" / name).read_bytes()
    files["board.json"] = (REPO / "boards" / "esp32-devkitc-sim800l.json").read_bytes()
    out = json.loads(mpy.run(BOARD, files, timeout_s=300))
    assert out["failures"] == [] and out["fails"] == 0
    assert out["posts"] >= 5 and out["got"] >= out["frames"] - 6
    assert 0 <= out["csq"] <= 31 and out["status"] == "ok"
