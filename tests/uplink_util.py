"""Helpers for the ingest tests: signed frame logs, a private Mosquitto broker and
a `jalkal serve` process, all on 127.0.0.1 free ports, stopped by the tests."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jkproto import codec as c

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# tests that start a real broker: skipped, with the reason, where there is none
needs_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="mosquitto not installed (.ci/install.sh)"
)
KEY = bytes(range(32))
KEY2 = bytes(range(100, 132))
DEV = 0x0A1B2C3D
DEV2 = 0x11223344
T0 = 1_772_323_200  # 2026-03-01T00:00:00Z


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def frames(
    n: int, device: int = DEV, key: bytes = KEY, boot: int = 1, seq: int = 0,
    prev: int = 0, t0: int = T0,
) -> list[bytes]:  # fmt: skip
    """n chained, signed frames: a boot frame at seq 0, then 15-minute readings."""
    enc = c.Encoder(device, key, boot=boot, seq=seq, prev=prev)
    out = []
    for i in range(n):
        t = t0 + 900 * (seq + i)
        if enc.seq == 0:
            f = enc.frame(c.BOOT, t, 2, 1, 1, 2, 3, 900, 100, 100)
        else:
            f = enc.frame(c.READING, t, 2, 10 * i, 7 * i, 300, 0x18, 124, 20)
        out.append(bytes(f))
    return out


def post(
    url: str, body: bytes = b"", ctype: str = "application/octet-stream",
    method: str = "POST", path: str = "/v1/frames", timeout: float = 30.0,
) -> tuple[int, dict]:  # fmt: skip
    """One request to a `jalkal serve` at url (http://HOST:PORT): its status and
    JSON answer ({} when the answer is empty)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else {}
    finally:
        conn.close()


def keys_file(path: Path, devices: dict[int, bytes] | None = None) -> Path:
    devices = devices or {DEV: KEY, DEV2: KEY2}
    doc = {"devices": {f"{d:08x}": {"key": k.hex()} for d, k in devices.items()}}
    path.write_text(json.dumps(doc))
    path.chmod(0o600)  # serve refuses a keys file others may read
    return path


class Child:
    """A process a test started: kill -9 it, or stop it (SIGTERM, then kill -9
    after stop_wait_s)."""

    proc: subprocess.Popen | None = None
    stop_wait_s = 10

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(self.stop_wait_s)
            except subprocess.TimeoutExpired:
                self.kill9()


class Mosquitto(Child):
    """A private broker: listener on a free loopback port, persistence in a temp
    directory (so a restart keeps sessions saved at a clean stop).

    Anonymous clients by default. With passwords/acl (Mosquitto's password_file and
    acl_file): no anonymous clients, the user name as client id; tls=(cert, key):
    also an MQTT-over-TLS listener on tls_port. include_dir: the listeners and
    security settings come from the *.conf files there (as `jalkal broker` writes
    them, for port and tls_port), this helper adds only persistence."""

    def __init__(
        self, workdir: Path, port: int | None = None, *,
        passwords: Path | None = None, acl: Path | None = None,
        tls: tuple[Path, Path] | None = None, include_dir: Path | None = None,
        tls_port: int | None = None,
    ):  # fmt: skip
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls_port = tls_port or free_port()
        self.conf = self.dir / "mosquitto.conf"
        secured = bool(passwords or acl or include_dir)
        text = (
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "max_queued_messages 0\n"
            "max_queued_bytes 0\n"
            "log_dest none\n"
        )
        if secured and hasattr(os, "geteuid") and os.geteuid() == 0:
            text += "user root\n"  # root would read the 0600 files as `mosquitto`
        if include_dir is not None:
            text += f"include_dir {include_dir}\n"
        elif not secured and tls is None:
            text = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n" + text
        else:
            sec = "per_listener_settings false\n"
            sec += "allow_anonymous false\n" if secured else "allow_anonymous true\n"
            sec += f"password_file {passwords}\n" if passwords else ""
            sec += f"acl_file {acl}\n" if acl else ""
            each = "use_username_as_clientid true\n" if secured else ""
            sec += f"listener {self.port} 127.0.0.1\n{each}"
            if tls is not None:
                sec += (
                    f"listener {self.tls_port} 127.0.0.1\n{each}"
                    f"certfile {tls[0]}\nkeyfile {tls[1]}\n"
                )
            text = sec + text
        self.tls = tls is not None or (
            include_dir is not None
            and "certfile" in (include_dir / "mosquitto.conf").read_text()
        )
        self.conf.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "mosquitto.err", "ab"),  # noqa: SIM115
        )
        wait_port(self.port)
        if self.tls:
            wait_port(self.tls_port)
        return self


URL = re.compile(r"(https?|mqtt)://\S+")


class Server(Child):
    """`jalkal serve` in its own process; URLs read from its first output lines."""

    stop_wait_s = 20

    def __init__(self, workdir: Path, store: Path, keys: Path, *args: str):
        self.dir, self.store, self.keys, self.args = workdir, store, keys, args
        self.proc: subprocess.Popen[str] | None = None
        self.http: str | None = None
        self.mqtt: str | None = None
        self.err = workdir / "serve.err"

    def start(self, http: str | None = "127.0.0.1:0", mqtt: str | None = None,
              timeout: float = 30.0) -> Server:  # fmt: skip
        cmd = [sys.executable, "-m", "jalkal", "serve", "--store", str(self.store),
               "--keys", str(self.keys), *self.args]  # fmt: skip
        if http:
            cmd += ["--http", http]
        if mqtt:
            cmd += ["--mqtt", mqtt]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=open(self.err, "a"),  # noqa: SIM115
            text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        end = time.monotonic() + timeout
        want_sub = bool(mqtt)
        ready = False
        fd = self.proc.stdout.fileno()
        buf = b""
        lines: list[str] = []
        while time.monotonic() < end:
            if not lines:
                # never block past the deadline: a server that stops talking fails
                # the test with what it said, instead of hanging it. Read the pipe
                # itself: a buffered readline() may take two lines at once, and
                # select() then never says the second one is there
                ready_fds, _, _ = select.select([fd], [], [], 0.5)
                if not ready_fds:
                    if self.proc.poll() is not None:
                        raise RuntimeError(
                            f"serve exited: {self.err.read_text()[-2000:]}"
                        )
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"serve exited: {self.err.read_text()[-2000:]}")
                buf += chunk
                *done, buf = buf.split(b"\n")
                lines += [ln.decode() + "\n" for ln in done]
                continue
            line = lines.pop(0)
            m = URL.search(line)
            if m and m.group(1) in ("http", "https"):
                self.http = m.group(0).removesuffix("/v1/frames")
            if line.startswith("serve: store "):
                ready = True
            if "mqtt subscribed" in line:
                want_sub = False
            if ready and not want_sub:
                return self
        self.proc.send_signal(signal.SIGUSR1)  # its threads' stacks, into its stderr
        time.sleep(0.5)
        self.proc.kill()
        raise TimeoutError(
            f"serve did not start within {timeout:.0f} s "
            f"(ready={ready}, waiting for the MQTT subscription={want_sub}): "
            f"{self.err.read_text()[-2000:]}"
        )


class Device:
    """A board's MQTT login (user name = its id, password from its key): publishes
    batches QoS 1 to its up topic and collects the answers on its ack topic."""

    def __init__(self, port: int, device: int, key: bytes):
        import threading

        import paho.mqtt.client as mqtt

        self.dev = f"{device:08x}"
        self.acks: list[dict] = []
        self.cond = threading.Condition()
        ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.dev,
                        clean_session=True, protocol=mqtt.MQTTv311)  # fmt: skip
        c.username_pw_set(self.dev, bytes(c_mqtt_password(key)).decode())
        c.on_connect = lambda cl, ud, fl, rc, pr: cl.subscribe(
            f"jalkal/v1/{self.dev}/ack", qos=1
        )
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._msg
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        self.client = c
        if not ready.wait(10):
            raise TimeoutError(f"device {self.dev}: not subscribed to its acks")

    def _msg(self, cl, ud, msg) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.acks.append(json.loads(msg.payload))
            self.cond.notify_all()

    def publish(self, body: bytes) -> None:
        self.client.publish(f"jalkal/v1/{self.dev}/up", body, qos=1).wait_for_publish(
            10
        )

    def answered(self) -> set[tuple[int, int]]:
        """(boot, first seq) of every acknowledged run answered so far."""
        with self.cond:
            return {(r[1], r[2]) for a in self.acks for r in a["acked"]}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def c_mqtt_password(key: bytes) -> bytes:
    """A device's MQTT password, as the board computes it."""
    return bytes(c.mqtt_password(c.Signer(key)))
