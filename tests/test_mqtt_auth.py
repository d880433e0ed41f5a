"""MQTT with accounts: a real Mosquitto run on the files `jalkal broker` writes
(no anonymous clients, one account per device and per server worker, ACLs, the user
name as client id), `jalkal serve` and `jalkal replay` logged in, a TLS listener,
and no PUBACK for a batch the store could not take.

The password file's format is Mosquitto's own (eclipse/mosquitto
apps/mosquitto_passwd/mosquitto_passwd.c ``output_new_password``,
src/password_mosq.c ``pw__hash``); the broker accepting the logins is the truth."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
from uplink_util import (
    DEV,
    DEV2,
    KEY,
    KEY2,
    Mosquitto,
    Server,
    frames,
    free_port,
    keys_file,
    needs_mosquitto,
)

from jalkal.cli import main
from jalkal.field import broker as bk
from jalkal.ingest.ack import refused
from jalkal.ingest.log import Log
from jalkal.ingest.mqttsub import Login, MqttIngest
from jalkal.ingest.store import Store
from jalkal.keys import load_keys

pytestmark = needs_mosquitto
A, B = f"{DEV:08x}", f"{DEV2:08x}"
SERVER = bk.SERVER_USER


def password(dev: str) -> str:
    return bk.device_password({A: KEY, B: KEY2}[dev]).decode()


class Client:
    """A paho client logged in (or not): CONNACK, SUBACKs, messages, disconnects."""

    def __init__(
        self, port: int, user: str | None = None, pw: str | None = None,
        client_id: str = "", tls_ca: Path | None = None, clean: bool = True,
        background: bool = True,
    ):  # fmt: skip
        import paho.mqtt.client as mqtt

        self.cond = threading.Condition()
        self.connack: str | None = None
        self.subacks: list[list[str]] = []
        self.msgs: list[tuple[str, bytes]] = []
        self.drops = 0
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
            clean_session=clean, protocol=mqtt.MQTTv311,
        )  # fmt: skip
        if user is not None:
            c.username_pw_set(user, pw)
        if tls_ca is not None:
            c.tls_set(ca_certs=str(tls_ca))
        c.reconnect_delay_set(5, 5)
        c.on_connect = self._conn
        c.on_subscribe = self._sub
        c.on_message = self._msg
        c.on_disconnect = self._disc
        self.client = c
        c.connect("127.0.0.1", port, keepalive=30)
        end = time.monotonic() + 10
        while self.connack is None and time.monotonic() < end:
            c.loop(0.05)  # no background loop yet: a refused client stays refused
        assert self.connack is not None
        self.background = background and self.ok
        if self.background:
            c.loop_start()

    @property
    def ok(self) -> bool:
        return self.connack == "Success"

    def _conn(self, cl, ud, flags, rc, props):
        with self.cond:
            self.connack = str(rc)
            self.cond.notify_all()

    def _sub(self, cl, ud, mid, rcs, props):
        with self.cond:
            self.subacks.append([str(r) for r in rcs])
            self.cond.notify_all()

    def _msg(self, cl, ud, msg):
        with self.cond:
            self.msgs.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def _disc(self, cl, ud, flags, rc, props):
        with self.cond:
            self.drops += 1
            self.cond.notify_all()

    def subscribe(self, topic: str) -> list[str]:
        with self.cond:
            n = len(self.subacks)
            self.client.subscribe(topic, qos=1)
            assert self.cond.wait_for(lambda: len(self.subacks) > n, 10)
            return self.subacks[n]

    def publish(self, topic: str, body: bytes) -> None:
        self.client.publish(topic, body, qos=1).wait_for_publish(10)

    def acks(self, n: int, timeout: float = 15) -> list[dict]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.msgs) >= n, timeout)
            return [json.loads(p) for t, p in self.msgs if t.endswith("/ack")]

    def close(self) -> None:
        self.client.disconnect()
        if self.background:
            self.client.loop_stop()


def forge(port: int, user: str, topic: str, body: bytes) -> None:
    """Publish (QoS 1) as user; Mosquitto 2.0.11 answers a denied PUBLISH with a
    PUBACK and closes the connection."""
    c = Client(port, user, password(user), background=False)
    info = c.client.publish(topic, body, qos=1)
    end = time.monotonic() + 5
    while not info.is_published() and not c.drops and time.monotonic() < end:
        c.client.loop(0.05)
    c.close()


def write_broker(d: Path, keys: Path, port: int, *extra: str) -> Path:
    out = d / "mq-conf"
    assert main(["broker", "--keys", str(keys), "--out", str(out), "--bind",
                 "127.0.0.1", "--port", str(port), *extra]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Mosquitto on `jalkal broker`'s files, and `jalkal serve` logged in as
    jalkal-serve (its password read from the file jalkal wrote)."""
    d = tmp_path_factory.mktemp("auth")
    keys = keys_file(d / "keys.json")
    port = free_port()
    conf = write_broker(d, keys, port)
    m = Mosquitto(d / "mq", port, include_dir=conf).start()
    s = Server(d, d / "s.duckdb", keys, "-v", "--mqtt-user", SERVER,
               "--mqtt-password-file", str(conf / f"{SERVER}.password"))  # fmt: skip
    s.start(http=None, mqtt=m.url)
    yield m, s, conf, keys
    s.stop()
    m.stop()


# --- the files --------------------------------------------------------------------


def test_broker_files_are_mosquittos_format_and_kept_when_written_again(world):
    m, s, conf, keys = world
    text = (conf / "passwd").read_text()
    lines = dict(ln.split(":", 1) for ln in text.splitlines() if ln[:1] != "#")
    assert set(lines) == {SERVER, A, B}
    for h in lines.values():
        # user:$7$<iterations>$<base64 12-byte salt>$<base64 64-byte hash>
        assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", h)
    assert bk.password_matches(lines[A], bk.device_password(KEY))
    assert not bk.password_matches(lines[A], bk.device_password(KEY2))
    server_pw = (conf / f"{SERVER}.password").read_bytes().strip()
    assert re.fullmatch(rb"[0-9a-f]{32}", server_pw)
    assert bk.password_matches(lines[SERVER], server_pw)
    for f in ("passwd", f"{SERVER}.password"):
        assert stat.S_IMODE((conf / f).stat().st_mode) == 0o600
    acl = (conf / "acl").read_text()
    assert "pattern write jalkal/v1/%u/up\npattern read jalkal/v1/%u/ack\n" in acl
    assert (
        f"user {SERVER}\ntopic read jalkal/v1/+/up\ntopic write jalkal/v1/+/ack" in acl
    )
    c = (conf / "mosquitto.conf").read_text()
    listener = f"listener {m.port} 127.0.0.1\nuse_username_as_clientid true"
    for want in ("allow_anonymous false", "per_listener_settings false",
                 f"password_file {conf.resolve()}/passwd",
                 f"acl_file {conf.resolve()}/acl", listener):  # fmt: skip
        assert want in c
    before = {f.name: f.read_bytes() for f in conf.iterdir()}
    write_broker(conf.parent, keys, m.port)  # again: the same files, same password
    assert {f.name: f.read_bytes() for f in conf.iterdir()} == before


def test_mosquitto_passwd_hash_is_checked_the_same_way(tmp_path):
    """A line mosquitto_passwd itself wrote verifies with our check."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    f = tmp_path / "p"
    subprocess.run([tool, "-c", "-b", str(f), "u", "s3cret"], check=True)
    h = f.read_text().strip().split(":", 1)[1]
    assert h.startswith("$7$101$")
    assert bk.password_matches(h, b"s3cret") and not bk.password_matches(h, b"x")


def test_provision_adds_the_devices_login(tmp_path):
    keys = keys_file(tmp_path / "keys.json", {DEV: KEY})
    port = free_port()
    conf = write_broker(tmp_path, keys, port)
    mosq_uid = 0
    if os.geteuid() == 0:  # the broker's own user owns it: kept when replaced
        os.chown(conf / "passwd", 1, 1)
        mosq_uid = 1
    args = ["provision", "--board", "esp32-devkitc-sim800l", "--village", "Rampur",
            "--population", "500", "--out", str(tmp_path / "b"), "--keys", str(keys),
            "--mosquitto", str(conf)]  # fmt: skip
    assert main(args) == 0
    new = {d: k for d, k in load_keys(keys).items() if d != A}
    (dev, key), = new.items()  # fmt: skip
    pw = (conf / "passwd").read_text()
    line = [ln for ln in pw.splitlines() if ln.startswith(dev + ":")]
    assert len(line) == 1 and bk.password_matches(line[0][9:], bk.device_password(key))
    assert f"{A}:" in pw and f"{SERVER}:" in pw
    st = (conf / "passwd").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == mosq_uid
    # the real broker lets the new device in, with the password its board derives
    m = Mosquitto(tmp_path / "mq", port, include_dir=conf).start()
    try:
        c = Client(port, dev, bk.device_password(key).decode())
        c.close()
        assert c.ok, c.connack
    finally:
        m.stop()
    # a folder without the broker's files: nothing written at all
    before = keys.read_bytes()
    assert main([*args[:-1], str(tmp_path / "nothing")]) == 1
    assert keys.read_bytes() == before


# --- the broker, as a device sees it -------------------------------------------------


def test_anonymous_and_wrong_passwords_are_refused(world):
    m = world[0]
    for user, pw in ((None, None), (A, "0" * 32), (A, password(B)), (SERVER, "x")):
        c = Client(m.port, user, pw)
        c.close()
        assert c.connack == "Not authorized", (user, c.connack)


def test_a_device_reads_and_writes_only_its_own_topics(world):
    m, s, conf, keys = world
    a = Client(m.port, A, password(A))
    b = Client(m.port, B, password(B))
    try:
        for t in (f"jalkal/v1/{B}/up", f"jalkal/v1/{B}/ack", "jalkal/v1/+/up", "#"):
            a.subscribe(t)  # Mosquitto 2.0 grants it, and then delivers nothing
        b.subscribe(f"jalkal/v1/{B}/ack")
        # A forges B's batch on B's topic, and an ack on B's ack topic: dropped
        forge(m.port, A, f"jalkal/v1/{B}/up", b"".join(frames(5, DEV2, KEY2, boot=70)))
        forge(m.port, A, f"jalkal/v1/{B}/ack", b'{"ok":true,"stored":5}')
        forge(m.port, A, f"jalkal/v1/{A}/ack", b'{"ok":true,"stored":5}')  # its own
        time.sleep(0.5)
        assert b.msgs == [] and a.msgs == []
        # B's own batch: stored, and its ack reaches B only
        b.publish(f"jalkal/v1/{B}/up", b"".join(frames(5, DEV2, KEY2, boot=70)))
        acks = b.acks(1)
        assert len(acks) == 1 and acks[0]["stored"] == 5, acks  # A's copy never came
        time.sleep(0.3)
        assert a.msgs == []
    finally:
        a.close()
        b.close()


def test_a_device_cannot_take_the_servers_or_anothers_client_id(world):
    m, s, conf, keys = world
    b = Client(m.port, B, password(B), client_id=B, clean=False)
    anon = Client(m.port, client_id=SERVER)
    thief = Client(m.port, A, password(A), client_id=SERVER, clean=False)
    thief2 = Client(m.port, A, password(A), client_id=B)
    try:
        assert anon.connack == "Not authorized"
        assert thief.ok and thief2.ok  # in, but as itself (the user name is its id)
        b.subscribe(f"jalkal/v1/{B}/ack")
        time.sleep(0.5)  # a server knocked off says so at once
        b.publish(f"jalkal/v1/{B}/up", b"".join(frames(3, DEV2, KEY2, boot=71)))
        assert b.acks(1)[0]["stored"] == 3
        assert b.drops == 0
        err = s.err.read_text()
        assert "disconnected" not in err and "reconnect" not in err, err
    finally:
        for c in (b, anon, thief, thief2):
            c.close()


# --- replay -------------------------------------------------------------------------


def test_replay_logs_in_as_each_device(world, tmp_path, capsys):
    m, s, conf, keys = world
    log = tmp_path / "sd.bin"
    log.write_bytes(b"".join(frames(40, DEV, KEY, boot=80)
                             + frames(30, DEV2, KEY2, boot=80)))  # fmt: skip
    to = ["replay", str(log), "--to", m.url, "--timeout", "3", "--retries", "0"]
    assert main([*to, "--keys", str(keys)]) == 0
    assert "70 frames in 2 batches: 70 stored" in capsys.readouterr().out
    assert main(to) == 1  # anonymous: refused, said in one line
    assert "refused the login anonymously: Not authorized" in capsys.readouterr().err
    # one account for a device's frames: that device's own login
    pwf = tmp_path / "pw"
    pwf.write_text(password(A) + "\n")
    one = tmp_path / "one.bin"
    one.write_bytes(b"".join(frames(40, DEV, KEY, boot=80)))
    args = [*to[:1], str(one), *to[2:], "--mqtt-user", A, "--mqtt-password-file"]
    assert main([*args, str(pwf)]) == 0
    assert "0 stored, 40 duplicate" in capsys.readouterr().out


# --- no PUBACK for a batch not stored ----------------------------------------------


def test_a_batch_the_store_could_not_take_is_delivered_again(tmp_path):
    keys = keys_file(tmp_path / "keys.json")
    port = free_port()
    conf = write_broker(tmp_path, keys, port)
    m = Mosquitto(tmp_path / "mq", port, include_dir=conf).start()
    st = Store(str(tmp_path / "s.duckdb"), load_keys(keys))
    real, calls = st.ingest, []

    def ingest(body, **kw):  # the first COMMIT fails (a full disk, say)
        calls.append(len(body))
        if len(calls) == 1:
            return refused("store_error", "the store failed: disk full", body)
        return real(body, **kw)

    st.ingest = ingest  # type: ignore[method-assign]
    pw = (conf / f"{SERVER}.password").read_text().strip()
    mq = MqttIngest(st, "127.0.0.1", port, SERVER, Log(1), 1 << 20, Login(SERVER, pw))
    b = Client(port, B, password(B))
    try:
        mq.start()
        assert mq.subscribed.wait(10)
        b.subscribe(f"jalkal/v1/{B}/ack")
        fs = frames(20, DEV2, KEY2, boot=90)
        b.publish(f"jalkal/v1/{B}/up", b"".join(fs))
        acks = b.acks(1, timeout=10)
        time.sleep(0.5)  # and no second ack
        acks = b.acks(1)
    finally:
        b.close()
        mq.stop()
        m.stop()
    assert len(calls) == 2  # refused once, delivered again by the broker, stored
    assert [a["stored"] for a in acks] == [20], acks
    assert st.count() == 20
    st.close()


# --- TLS ------------------------------------------------------------------------------


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*a: str) -> None:
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=jalkal test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2",
        "-extfile", "ext")  # fmt: skip
    return d / "ca.pem", d / "srv.pem", d / "srv.key"


def test_serve_and_replay_over_tls(tmp_path, capsys):
    ca, cert, key = make_certs(tmp_path)
    keys = keys_file(tmp_path / "keys.json")
    port, tport = free_port(), free_port()
    conf = write_broker(tmp_path, keys, port, "--tls-port", str(tport),
                        "--tls-cert", str(cert), "--tls-key", str(key))  # fmt: skip
    assert (
        f"listener {tport} 127.0.0.1\ncertfile" in (conf / "mosquitto.conf").read_text()
    )
    m = Mosquitto(tmp_path / "mq", port, include_dir=conf, tls_port=tport).start()
    s = Server(tmp_path, tmp_path / "s.duckdb", keys, "--mqtt-user", SERVER,
               "--mqtt-password-file", str(conf / f"{SERVER}.password"),
               "--mqtt-cafile", str(ca))  # fmt: skip
    b = None
    try:
        s.start(http=None, mqtt=m.tls_url)
        b = Client(tport, B, password(B), tls_ca=ca)
        b.subscribe(f"jalkal/v1/{B}/ack")
        b.publish(f"jalkal/v1/{B}/up", b"".join(frames(4, DEV2, KEY2, boot=3)))
        assert b.acks(1)[0]["stored"] == 4
        log = tmp_path / "sd.bin"
        log.write_bytes(b"".join(frames(10, DEV, KEY, boot=3)))
        to = ["replay", str(log), "--to", m.tls_url, "--keys", str(keys),
              "--timeout", "3", "--retries", "0"]  # fmt: skip
        assert main([*to, "--mqtt-cafile", str(ca)]) == 0
        assert "10 stored" in capsys.readouterr().out
        assert main(to) == 1  # the system's CAs do not know this one
        assert "certificate verify failed" in capsys.readouterr().err
    finally:
        if b is not None:
            b.close()
        s.stop()
        m.stop()
