"""Uplink security on the modem side: the SIM7600 logs in to a real Mosquitto that
takes no anonymous clients (user name: the device id, password: codec.mqtt_password
of its key), and talks HTTPS and MQTTS with the server's certificate pinned; the
simulated modem verifies the real server against the certificate the board
downloaded into it (AT+CCERTDOWN), as AT+CSSLCFG set it. The config refuses TLS on
modules without it."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, firmware_files
from modem_script import run
from test_uplink import KEY, Board
from test_uplink import Server as MemServer
from uplink_util import MOSQUITTO, Mosquitto, Server, keys_file

from jalkal.ingest.store import Store
from jkfw import config, tls
from jkfw.mqtt import Mqtt
from jkproto import codec
from jksim.modem import http_post

PASSWD = shutil.which("mosquitto_passwd")
needs_broker = pytest.mark.skipif(
    not (Path(MOSQUITTO).exists() and PASSWD), reason="mosquitto not installed"
)
PIN = "ab" * 32


# --- the config: TLS only where the module has it, never without a pin


@pytest.mark.parametrize(
    "modem, url, pin, bad",
    [
        ("sim7600", "https://ingest.example.org/", PIN, []),
        ("sim7600", "mqtts://broker.example.org:8883", PIN, []),
        ("sim7600", "https://ingest.example.org/", "", ["uplink_cert_sha256"]),
        ("sim7600", "mqtts://broker.example.org:8883", "", ["uplink_cert_sha256"]),
        ("sim800", "https://ingest.example.org/", PIN, ["uplink_url"]),
        ("sim7000", "mqtts://broker.example.org:8883", PIN, ["uplink_url"]),
        ("sim800", "http://ingest.example.org:8080", "", []),
        ("sim7600", "https://", PIN, ["uplink_url"]),
        ("sim7600", "https://x", "AB" * 32, ["uplink_cert_sha256"]),
        ("sim7600", "https://x", "ab" * 31, ["uplink_cert_sha256"]),
    ],
)
def test_config_takes_tls_only_on_a_sim7600_with_a_pin(modem, url, pin, bad):
    raw = {"modem": modem, "uplink_url": url, "uplink_cert_sha256": pin}
    cfg, got = config.validate(raw)
    assert got == bad
    assert cfg["uplink_url"] == ("" if bad else url)


# --- certificates, a TLS front for jalkal serve, the broker's password file


def make_cert(d, name):
    key, pem = d / f"{name}.key", d / f"{name}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN=jalkal {name}",
         "-addext", "subjectAltName=IP:127.0.0.1", "-days", "3650",
         "-keyout", str(key), "-out", str(pem)],
        check=True, capture_output=True,
    )  # fmt: skip
    return pem, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    d = tmp_path_factory.mktemp("certs")
    return {n: make_cert(d, n) for n in ("server", "imposter")}


def pin_board(monkeypatch, pem):
    """The board's /server.pem is pem; its fingerprint, as config holds it."""
    monkeypatch.setattr(tls, "CERT", str(pem))
    return hashlib.sha256(pem.read_bytes()).hexdigest()


def stored(path):
    with Store(path) as st:
        tb = st.query("SELECT boot, seq FROM frames")
    return sorted(zip(tb.column(0).to_pylist(), tb.column(1).to_pylist(), strict=True))


def sim7600_board(tmp, url, pin, post=http_post):
    tmp.mkdir()
    b = Board(tmp, MemServer(), family="sim7600", modem="sim7600", uplink_url=url,
              uplink_cert_sha256=pin)  # fmt: skip
    b.m.pin = pin  # as jkfw.uplink.start sets it from the config
    b.sm.post = post
    return b


# --- HTTPS to jalkal serve


def test_https_upload_goes_only_to_the_pinned_server(tmp_path, certs, monkeypatch):
    """A simulated SIM7600 board against two real `jalkal serve --tls-cert` servers:
    one with another certificate (a man in the middle) gets nothing, the pinned one
    gets every frame."""
    keys = keys_file(tmp_path / "k.json")
    imposter = Server(tmp_path / "i", tmp_path / "i.duckdb", keys,
                      "--tls-cert", str(certs["imposter"][0]),
                      "--tls-key", str(certs["imposter"][1]))  # fmt: skip
    serve = Server(tmp_path / "s", tmp_path / "store.duckdb", keys,
                   "--tls-cert", str(certs["server"][0]),
                   "--tls-key", str(certs["server"][1]))  # fmt: skip
    for d in ("i", "s"):
        (tmp_path / d).mkdir()
    imposter.start()
    serve.start()
    try:
        assert imposter.http and serve.http and serve.http.startswith("https://")
        pin = pin_board(monkeypatch, certs["server"][0])
        # refused in the handshake, nothing sent, every frame kept in the backlog
        bad = sim7600_board(tmp_path / "a", imposter.http.rsplit("/v1/", 1)[0], pin)
        bad.run_days(0.25)
        assert bad.sm.http_log and [st for st, _ in bad.sm.http_log] == [715] * len(
            bad.sm.http_log
        )
        assert bad.up.fails >= 1 and bad.up.backlog > 0
        assert bad.state["up"][:5] == [0] * 5  # the cursor never moved
        # the server's own certificate: the same board's frames go up
        good = sim7600_board(tmp_path / "b", serve.http.rsplit("/v1/", 1)[0], pin)
        good.run_days(0.25)
        assert good.up.fails == 0 and good.sm.http_log
        # the certificate went into the module once, under its fingerprint's name
        assert list(good.sm.certs) == [b"jk%s.pem" % pin[:12].encode()]
        assert good.sm.certs[b"jk%s.pem" % pin[:12].encode()] == (
            certs["server"][0].read_bytes()
        )
    finally:
        imposter.stop()
        serve.stop()
    assert stored(imposter.store) == []
    keys_stored = stored(serve.store)
    assert keys_stored and set(keys_stored) <= set(good.logged)
    assert len(keys_stored) == len(set(keys_stored))
    assert set(keys_stored) >= set(good.logged[:-4])


# --- MQTT: the login, and MQTTS


def password_file(path, users):
    path.write_text("")
    for user, pw in users.items():
        subprocess.run([PASSWD, "-b", str(path), user, pw], check=True,
                       capture_output=True)  # fmt: skip
    path.chmod(0o600)
    return path


DEVICE_PW = codec.mqtt_password(codec.Signer(KEY)).decode()


@pytest.fixture
def broker(tmp_path, certs):
    pw = password_file(tmp_path / "passwd", {"0a1b2c3d": DEVICE_PW, "jalkal": "s3rv"})
    mq = Mosquitto(tmp_path / "mq", passwords=pw, tls=certs["server"]).start()
    yield mq
    mq.stop()


def session(b, url, signer):
    q = Mqtt(b.m, b"0a1b2c3d", signer)

    async def go():
        assert await b.m.power_on() and await b.m.attach(60000)
        ok = await q.http_start(url)
        line = b.m.line
        await q.http_end()
        return ok, line

    b.sm.reg_ms = 0
    return run(b.clock, go())


@needs_broker
@pytest.mark.parametrize(
    "key, want", [(KEY, b"+CMQTTSUB: 0,0"), (bytes(32), b"+CMQTTCONNECT: 0,31")]
)
def test_mqtt_login_to_a_broker_without_anonymous_clients(tmp_path, broker, key, want):
    b = sim7600_board(tmp_path / "b", broker.url, "")
    ok, line = session(b, broker.url.encode(), codec.Signer(key))
    # logged in and subscribed; Mosquitto answers a wrong password with CONNACK 5
    # (not authorized): 31
    assert bool(ok) is (key == KEY) and line == want
    # and without a login (the old firmware) it is refused the same way
    ok, line = session(b, broker.url.encode(), None)
    assert not ok and line == b"+CMQTTCONNECT: 0,31"


@needs_broker
def test_mqtts_upload_with_the_pinned_certificate(tmp_path, broker, certs, monkeypatch):
    pw = tmp_path / "serve.pw"
    pw.write_text("s3rv\n")
    s = Server(tmp_path, tmp_path / "store.duckdb", keys_file(tmp_path / "k.json"),
               "--mqtt-user", "jalkal", "--mqtt-password-file", str(pw))  # fmt: skip
    pin = pin_board(monkeypatch, certs["imposter"][0])
    b = sim7600_board(tmp_path / "a", broker.tls_url, pin)
    ok, line = session(b, broker.tls_url.encode(), codec.Signer(KEY))
    assert not ok and line == b"+CMQTTCONNECT: 0,32"  # handshake fail (§16.3.1)
    pin = pin_board(monkeypatch, certs["server"][0])
    try:
        s.start(http=None, mqtt=broker.url)
        b = sim7600_board(tmp_path / "b", broker.tls_url, pin)
        b.up.link = Mqtt(b.m, b"0a1b2c3d", codec.Signer(KEY))
        b.run_days(0.25)
        assert b.up.fails == 0 and b.sm.posts >= 5
    finally:
        s.stop()
    keys = stored(s.store)
    assert set(keys) >= set(b.logged[:-4]) and len(keys) == len(set(keys))


# --- the firmware in real MicroPython: the login it makes is the broker's

MPY = r"""
import json
from jkproto import codec
from jkfw.modem import Modem
from jkfw.mqtt import Mqtt
from jksim.modem import fit
from jksim.vclock import VirtualClock


class H:
    modem = None


class Link:  # the broker's side is played back by CPython afterwards
    def __init__(self, *a, **kw):
        pass

    def subscribe(self, topic):
        return True

    def close(self):
        pass


import jksim.modem as sm_mod
sm_mod.MqttLink = Link
clock = VirtualClock(1772303400)
sm = fit(H, clock, "sim7600", ("modem_power", "modem_pwrkey"), 1, utc0=1772303400)
sm.reg_ms = 0
uart, pins = H.modem
wire = []
w = uart.write
uart.write = lambda b: wire.append(bytes(b)) or w(b)
m = Modem(uart, clock, "sim7600", pins, 1)
q = Mqtt(m, b"0a1b2c3d", codec.Signer(bytes(range(32))))
out = []


async def go():
    await m.power_on()
    await m.attach(60000)
    del wire[:]
    out.append(await q.http_start(b"mqtt://127.0.0.1:%d"))

clock.spawn(go())
clock.run_until(600000)
print(json.dumps({"ok": out, "wire": b"".join(wire).decode()}))
"""


@needs_broker
@pytest.mark.micropython
def test_the_login_micropython_makes_is_the_brokers(mpy, tmp_path, broker):
    files = firmware_files()
    for name in ("__init__.py", "vclock.py", "hw.py", "modem.py"):
        files[f"jksim/{name}"] = (REPO / "sim" / name).read_bytes()
    out = json.loads(mpy.run(MPY % broker.port, files, timeout_s=120))
    assert out["ok"] == [True]
    connect = next(c for c in out["wire"].split("\r") if "CMQTTCONNECT" in c)
    assert connect.endswith(f',60,1,"0a1b2c3d","{DEVICE_PW}"')
    # the same command, to a simulated modem on the real broker
    b = sim7600_board(tmp_path / "b", broker.url, "")
    b.sm.reg_ms = 0
    got = []

    async def go():
        await b.m.power_on()
        await b.m.attach(60000)
        await b.m.at(b"+CMQTTSTART", 5000)
        await b.m.at(b'+CMQTTACCQ=0,"jk0a1b2c3d"')
        got.append(await b.m.at(connect[2:].encode(), 5000))
        got.append(await b.m.wait(30000, b"+CMQTTCON") and b.m.line)
        got.append(await b.m.at(connect[2:].replace(DEVICE_PW, "0" * 32).encode()))
        got.append(await b.m.wait(30000, b"+CMQTTCON") and b.m.line)

    run(b.clock, go())
    assert got[:2] == [True, b"+CMQTTCONNECT: 0,0"]
    assert got[3] == b"+CMQTTCONNECT: 0,31"


# --- how the certificate gets to the board: provision pins it, deploy copies it


def provision_args(tmp, board, *extra):
    return [
        "provision", "--board", board, "--village", "Rampur", "--population", "900",
        "--out", str(tmp / "rampur"), "--keys", str(tmp / "keys.json"),
        "--villages", str(tmp / "villages.csv"), *extra,
    ]  # fmt: skip


def cli(args, capsys):
    from jalkal.cli import main

    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_provision_pins_the_certificate_and_deploy_takes_it(tmp_path, certs, capsys):
    from jalkal.errors import JalkalError
    from jalkal.field import deploy, tlspin

    pem = certs["server"][0]
    url = "https://127.0.0.1:8443"
    args = provision_args(tmp_path, "lilygo-t-sim7600", "--uplink", url)
    code, out = cli([*args, "--server-cert", str(pem)], capsys)
    assert code in (0, None), out
    cfg_path = tmp_path / "rampur" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["uplink_url"] == url and cfg["modem"] == "sim7600"
    assert cfg["uplink_cert_sha256"] == hashlib.sha256(pem.read_bytes()).hexdigest()
    assert (tmp_path / "rampur" / "server.pem").read_bytes() == pem.read_bytes()
    assert config.validate(cfg)[1] == []
    assert tlspin.board_cert(cfg, str(cfg_path)) == pem.read_bytes()
    # a certificate swapped beside config.json is never copied to the board
    (tmp_path / "rampur" / "server.pem").write_bytes(certs["imposter"][0].read_bytes())
    with pytest.raises(JalkalError, match="not the certificate config.json pins"):
        deploy.prepare(str(cfg_path))


@pytest.mark.parametrize(
    "board, extra, why",
    [
        ("esp32-devkitc-sim800l", ("--uplink", "https://h:8443"), "SIM7600's own SSL"),
        ("lilygo-t-sim7000g", ("--uplink", "mqtts://h:8883"), "SIM7600's own SSL"),
        ("lilygo-t-sim7600", ("--uplink", "https://h:8443"), "--server-cert FILE"),
        ("lilygo-t-sim7600", ("--uplink", "http://h:8080", "--server-cert", "C"),
         "for an https:// or mqtts://"),
        ("lilygo-t-sim7600", ("--uplink", "https://h", "--server-cert", "KEY"),
         "holds a private key"),
    ],
)  # fmt: skip
def test_provision_refuses_tls_it_cannot_pin(
    tmp_path, certs, capsys, board, extra, why
):
    files = {"C": str(certs["server"][0]), "KEY": str(certs["server"][1])}
    extra = [files.get(x, x) for x in extra]
    code, out = cli(provision_args(tmp_path, board, *extra), capsys)
    assert code not in (0, None) and why in " ".join(out.split())
    assert not (tmp_path / "rampur").exists()  # nothing written
