"""`jalkal replay`: send logged frames (an SD card pulled in the field, upload
captures) to a `jalkal serve` over HTTP or MQTT, batch by batch, waiting for each
acknowledgement. The server stores every frame once, so replaying the same logs
again stores nothing new (every frame comes back "duplicate")."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from jkproto import codec, link
from jkproto import objects as ob

from ..console import duration, plural, say
from ..decode import bulk
from ..decode.streams import problems_line
from ..errors import JalkalError
from ..fileio import input_files, read_bytes
from ..keys import load_keys
from .mqttsub import BrokerUrl, Login, login_for, parse_mqtt_url
from .store import MAX_BODY

DEFAULT_BATCH = 1000
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0)


@dataclass
class Batch:
    device: int | None  # MQTT: the one device of the batch; HTTP: None (mixed)
    data: bytes
    frames: int


def read_frames(
    paths: tuple[str, ...],
) -> tuple[list[tuple[bytes, np.ndarray, np.ndarray, np.ndarray]], dict[str, int]]:
    """Per input file: its bytes and the offset, length and device of every
    CRC-valid frame in it (garbage between frames is left out and counted)."""

    stats = ob.new_stats()
    out = []
    state = bulk.ChainState()
    for f in input_files(paths):
        data = read_bytes(f)
        tb = bulk.decode(data, None, state, stats).table
        out.append(
            (
                data,
                tb.column("offset").to_numpy(),
                tb.column("length").to_numpy().astype(np.int64),
                tb.column("device").to_numpy(),
            )
        )
    return out, stats


def batches(
    files: list[tuple[bytes, np.ndarray, np.ndarray, np.ndarray]],
    size: int,
    per_device: bool,
    max_bytes: int = MAX_BODY,
) -> Iterator[Batch]:
    """Batches of at most size frames and max_bytes, in stream order; per_device:
    each batch holds one device's frames (MQTT topics name one device)."""
    if per_device:
        devs: dict[int, list[bytes]] = {}
        for data, off, ln, dev in files:
            for o, n, d in zip(off.tolist(), ln.tolist(), dev.tolist(), strict=True):
                devs.setdefault(int(d), []).append(data[o : o + n])
        for d, frames in devs.items():
            yield from _chunks(d, frames, size, max_bytes)
    else:
        frames = []
        for data, off, ln, _dev in files:
            frames.extend(
                data[o : o + n] for o, n in zip(off.tolist(), ln.tolist(), strict=True)
            )
        yield from _chunks(None, frames, size, max_bytes)


def _chunks(
    device: int | None, frames: list[bytes], size: int, max_bytes: int
) -> Iterator[Batch]:
    cur: list[bytes] = []
    nbytes = 0
    for f in frames:
        if cur and (len(cur) >= size or nbytes + len(f) > max_bytes):
            yield Batch(device, b"".join(cur), len(cur))
            cur, nbytes = [], 0
        cur.append(f)
        nbytes += len(f)
    if cur:
        yield Batch(device, b"".join(cur), len(cur))


class Unreachable(JalkalError):
    pass


# --- senders --------------------------------------------------------------------


class HttpSender:
    """POST /v1/frames over one keep-alive connection; re-sends on connection
    errors and 5xx (safe: the server de-duplicates)."""

    def __init__(self, url: str, timeout: float, retries: int):
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise JalkalError(
                f"--to {url!r}: give http://HOST:PORT or mqtt://HOST:PORT"
            )
        try:
            self.port = u.port or 80
        except ValueError:
            raise JalkalError(f"--to {url!r}: bad port")
        self.host = u.hostname
        self.path = (u.path.rstrip("/") or "") if u.path not in ("", "/") else ""
        self.path = (
            self.path if self.path.endswith(link.PATH) else self.path + link.PATH
        )
        self.url = url
        self.timeout, self.retries = timeout, retries
        self.conn: Any = None
        self.contacted = False

    def _connect(self) -> Any:
        import http.client

        if self.conn is None:
            self.conn = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout
            )
        return self.conn

    def send(self, b: Batch) -> dict[str, Any]:
        import http.client

        last = ""
        for attempt in range(self.retries + 1):
            try:
                conn = self._connect()
                conn.request(
                    "POST",
                    self.path,
                    body=b.data,
                    headers={"Content-Type": link.CONTENT_TYPE},
                )
                r = conn.getresponse()
                raw = r.read()
                self.contacted = True
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                try:
                    doc = json.loads(raw)
                except ValueError:
                    doc = None
                if r.status >= 500 or not isinstance(doc, dict):
                    last = f"HTTP {r.status}: {raw[:200]!r}"
                else:
                    return doc
            except (OSError, http.client.HTTPException) as e:
                self.close()
                last = str(e) or type(e).__name__
                if not self.contacted:  # nothing listening there: say so at once
                    raise Unreachable(
                        f"cannot reach {self.url}: {last}; is `jalkal serve` running?"
                    )
            if attempt < self.retries:
                wait = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                say(
                    f"replay: {self.url}: {last}; sending it again in {duration(wait)}",
                )
                time.sleep(wait)
        raise Unreachable(
            f"{self.url}: no answer after {plural(self.retries + 1, 'try', 'tries')}: "
            f"{last}"
        )

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class MqttLogins:
    """How `jalkal replay` logs in to the broker: as each device (its id, and the
    password derived from its key in the keys file), or as one account."""

    def __init__(self, base: Login, keys: dict[str, bytes] | None = None):
        self.base, self.keys = base, keys

    def missing(self, devices: set[str]) -> list[str]:
        return sorted(devices - set(self.keys)) if self.keys is not None else []

    def for_device(self, dev: str) -> Login:
        if self.keys is None:
            return self.base
        pw = codec.mqtt_password(codec.Signer(self.keys[dev]))
        return replace(self.base, user=dev, password=bytes(pw).decode())


def mqtt_login(
    to: str, keys: str | None, user: str | None, password_file: str | None,
    cafile: str | None,
) -> MqttLogins | None:  # fmt: skip
    """The MQTT login of `jalkal replay`'s options (None for an http:// URL)."""
    if urlsplit(to).scheme not in ("mqtt", "mqtts"):
        given = [o for o, v in (("--keys", keys), ("--mqtt-user", user),
                 ("--mqtt-password-file", password_file),
                 ("--mqtt-cafile", cafile)) if v]  # fmt: skip
        if given:
            raise JalkalError(f"{', '.join(given)}: only with --to mqtt(s)://")
        return None
    url = parse_mqtt_url(to)
    if keys and (user or password_file):
        raise JalkalError("--keys logs in as each device: leave out --mqtt-user")
    base = login_for(url, user, password_file, cafile)
    return MqttLogins(base, load_keys(keys) if keys else None)


class MqttSender:
    """Publishes each batch (QoS 1) on jalkal/v1/<device>/up and waits for the
    server's ack on jalkal/v1/<device>/ack (matched by body_crc32). A batch with
    no ack within the timeout, or sent before a reconnection, is published again.
    One connection at a time: logged in as the batch's device (--keys) or as the
    one account given (or none), subscribed to the acks of the devices sent."""

    def __init__(self, url: str, timeout: float, retries: int,
                 logins: MqttLogins | None = None):  # fmt: skip
        self.broker = parse_mqtt_url(url)
        self.url, self.timeout, self.retries = url, timeout, retries
        self.logins = logins or MqttLogins(Login().for_url(self.broker))
        self.conn: MqttConn | None = None

    def send(self, b: Batch) -> dict[str, Any]:
        dev = ob.device_str(b.device or 0)
        login = self.logins.for_device(dev)
        if self.conn is None or self.conn.login != login:
            self.close()  # one device's login at a time (its client id is its own)
            self.conn = MqttConn(self.broker, self.url, login, self.timeout)
        conn = self.conn
        conn.want(dev)
        key = (dev, f"{zlib.crc32(b.data):08x}")
        topic = link.UP_TOPIC % dev
        for attempt in range(self.retries + 1):
            if attempt:
                say(
                    f"replay: no ack from {self.url} within {duration(self.timeout)}; "
                    f"sending it again (try {attempt + 1} of {self.retries + 1})",
                )
            with conn.cond:
                conn.acks.pop(key, None)
                if not conn.cond.wait_for(lambda: conn.ready, self.timeout):
                    continue
                gen = conn.connects
            conn.client.publish(topic, b.data, qos=1)
            with conn.cond:
                conn.cond.wait_for(
                    lambda g=gen: key in conn.acks or conn.connects != g,  # type: ignore[misc]
                    self.timeout,
                )
                if key in conn.acks:
                    return conn.acks.pop(key)
        raise Unreachable(
            f"{self.url}: no ack for a batch after "
            f"{plural(self.retries + 1, 'try', 'tries')}; is `jalkal serve` "
            "connected to this broker?"
        )

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class MqttConn:
    """One connection to the broker (clean session), subscribed to the ack topics of
    the devices asked for; acks collected by (device, body_crc32)."""

    def __init__(self, broker: BrokerUrl, url: str, login: Login, timeout: float):
        import paho.mqtt.client as mqtt

        self.url, self.login, self.timeout = url, login, timeout
        self.cond = threading.Condition()
        self.acks: dict[tuple[str, str], dict[str, Any]] = {}
        self.devices: list[str] = []
        self.ready = False
        self.refused: str | None = None
        self.connects = 0
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"jalkal-replay-{uuid.uuid4().hex[:12]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        login.apply(c)
        c.reconnect_delay_set(min_delay=1, max_delay=2)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c
        try:
            c.connect(broker.host, broker.port, keepalive=30)
        except OSError as e:
            raise Unreachable(
                f"cannot reach {url}: {e.strerror or e}; is the broker running?"
            )
        c.loop_start()

    def want(self, dev: str) -> None:
        """Subscribed to dev's acks (waits for the broker's answer)."""
        with self.cond:
            if dev in self.devices:
                return
            self.devices.append(dev)
            self.ready = False
            if self.connects or self.client.is_connected():
                self.client.subscribe(link.ACK_TOPIC % dev, qos=1)
            ok = self.cond.wait_for(lambda: self.ready or self.refused, self.timeout)
        if self.refused:
            self.close()
            who = f"as {self.login.user}" if self.login.user else "anonymously"
            raise JalkalError(
                f"{self.url}: the broker refused the login {who}: {self.refused} "
                "(check --keys, or --mqtt-user and --mqtt-password-file)"
            )
        if not ok:
            self.close()
            raise Unreachable(
                f"{self.url}: no subscription within {duration(self.timeout)}; is the "
                "broker running and does it let this client subscribe?"
            )

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            if reason_code.is_failure:
                self.refused = str(reason_code)
                self.cond.notify_all()
                return
            self.refused = None
            topics = [(link.ACK_TOPIC % d, 1) for d in self.devices]
        if topics:
            client.subscribe(topics)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.ready = True
            self.connects += 1
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self.cond:
            self.ready = False
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        parts = msg.topic.split("/")
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if len(parts) != 4 or not isinstance(doc, dict):
            return
        with self.cond:
            self.acks[(parts[2], str(doc.get(link.BODY_CRC32)))] = doc
            self.cond.notify_all()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- the command ----------------------------------------------------------------


@dataclass
class Totals:
    frames: int = 0
    batches: int = 0
    stored: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, b: Batch, doc: dict[str, Any]) -> None:
        self.batches += 1
        self.frames += b.frames
        self.stored += int(doc.get(link.STORED, 0))
        self.duplicate += int(doc.get(link.DUPLICATE, 0))
        rej = int(doc.get(link.REJECTED, 0))
        reasons = dict(doc.get(link.REASONS) or {})
        if doc.get(link.ERROR) and not doc.get(link.FRAMES):  # refused as a whole
            rej = b.frames
            reasons = {str(doc[link.ERROR]): b.frames}
        self.rejected += rej
        for k, v in reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + int(v)

    def line(self) -> str:
        s = (
            f"{self.frames} frames in {self.batches} batches: {self.stored} stored, "
            f"{self.duplicate} duplicate, {self.rejected} rejected"
        )
        if self.reasons:
            s += (
                " ("
                + ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
                + ")"
            )
        return s


def time_left(elapsed: float, done: int, total: int) -> str:
    """ ", about 3 minutes left" at the pace so far (nothing in the first seconds)."""
    if elapsed < 5 or not done or done >= total:
        return ""
    return f", about {duration(elapsed * (total - done) / done)} left"


def run(
    paths: tuple[str, ...],
    to: str,
    rate: float | None = None,
    batch: int = DEFAULT_BATCH,
    timeout: float = 30.0,
    retries: int = 6,
    progress: bool = True,
    login: MqttLogins | None = None,
) -> Totals:
    files, stats = read_frames(paths)

    line = problems_line(dict(stats, chain_breaks=0))
    if line:
        say(line.replace("decode:", "replay:", 1) + " (not sent)")
    total = sum(int(off.size) for _d, off, _l, _v in files)
    scheme = urlsplit(to).scheme
    sender: HttpSender | MqttSender
    if scheme == "http":
        sender = HttpSender(to, timeout, retries)
    elif scheme in ("mqtt", "mqtts"):
        devices = {
            ob.device_str(int(d))
            for _b, _o, _l, dev in files
            for d in set(dev.tolist())
        }
        missing = login.missing(devices) if login else []
        if missing:
            raise JalkalError(
                f"device {', '.join(missing)} is not in --keys: cannot log in as it; "
                "nothing sent"
            )
        sender = MqttSender(to, timeout, retries, login)
    else:
        raise JalkalError(
            f"--to {to!r}: give http://HOST:PORT or mqtt://HOST:PORT (mqtts:// over "
            "TLS)"
        )
    tot = Totals()
    tty = sys.stderr.isatty()
    t0 = time.monotonic()
    shown = 0.0
    width = 0
    try:
        for b in batches(files, batch, per_device=scheme != "http"):
            doc = sender.send(b)
            tot.add(b, doc)
            now = time.monotonic()
            if progress and (tty or now - shown >= 2.0):
                shown = now
                pct = 100 * tot.frames // max(total, 1)
                msg = (
                    f"replay: {tot.frames:,} of {total:,} frames ({pct}%), "
                    f"{tot.rejected:,} rejected{time_left(now - t0, tot.frames, total)}"
                )
                width = max(width, len(msg))  # a shorter line covers the longer one
                say(("\r" + msg.ljust(width)) if tty else msg, nl=not tty)
            if rate:
                ahead = tot.frames / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
    finally:
        sender.close()
        if progress and tty and tot.batches:
            say("")
    return tot
