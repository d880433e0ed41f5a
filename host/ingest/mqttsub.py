"""MQTT for `jalkal serve`: a subscriber (MQTT 5, persistent session, QoS 1) to
``jalkal/v1/<device>/up`` on a broker; the answer (the same JSON as over HTTP) is
published on ``jalkal/v1/<device>/ack`` after the COMMIT (docs/uplink.md).

The broker's QoS 1 delivery is acknowledged (PUBACK) by hand, after the answer went
out: a batch the store could not take stays unacknowledged, and the subscriber
reconnects after a back-off so the broker delivers it again (MQTT 5 §4.4: on a
session resumed, the server re-sends every PUBLISH not acknowledged). The session
is resumed on every connection (Clean Start 0) and kept by the broker while the
server is away (Session Expiry Interval: never, unless --mqtt-session-expiry).

Several workers (``--mqtt-share GROUP``) subscribe to the shared form
``$share/GROUP/jalkal/v1/+/up`` (MQTT 5 §4.8.2): the broker hands each batch to
one of them."""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from jkproto import link

from ..errors import JalkalError
from .ack import refused
from .log import Log, say
from .store import FrameStore

UP_TOPIC = link.UP_TOPIC % "+"  # every device's
DEFAULT_CLIENT_ID = "jalkal-serve"
PASSWORD_ENV = "JALKAL_MQTT_PASSWORD"
REDELIVER_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # reconnect after a batch not stored
SESSION_NEVER_EXPIRES = 0xFFFFFFFF  # MQTT 5 §3.1.2.11.2
SHARE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_share(name: str) -> str:
    """A shared subscription's group name (no '/', '+' or '#', MQTT 5 §4.8.2)."""
    if not SHARE_NAME.match(name):
        raise JalkalError(
            f"--mqtt-share {name!r}: letters, digits, '.', '_' and '-' (at most 64)"
        )
    return name


def up_filter(share: str | None) -> str:
    """The subscription: every device's up topic, shared by a group or not."""
    return f"$share/{check_share(share)}/{UP_TOPIC}" if share else UP_TOPIC


class BrokerUrl(NamedTuple):
    host: str
    port: int
    tls: bool


def parse_mqtt_url(text: str) -> BrokerUrl:
    """mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (MQTT over TLS, 8883)."""
    u = urlsplit(text)
    tls = u.scheme == "mqtts"
    try:
        port = u.port or (8883 if tls else 1883)
    except ValueError:
        port = -1
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname or not 0 < port <= 65535:
        raise JalkalError(
            f"{text!r}: give mqtt://HOST:PORT or mqtts://HOST:PORT, e.g. "
            "mqtt://127.0.0.1:1883"
        )
    return BrokerUrl(u.hostname, port, tls)


@dataclass(frozen=True)
class Login:
    """How to log in to the broker: a user name and password (none: anonymous),
    TLS (verified against cafile, or the system's CAs)."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    cafile: str | None = None

    def for_url(self, url: BrokerUrl) -> Login:
        """This login, with TLS when the URL says mqtts://."""
        return replace(self, tls=url.tls)

    def apply(self, client: Any) -> None:
        """Set a paho client up with this login."""
        if self.user is not None:
            client.username_pw_set(self.user, self.password)
        if self.tls:
            client.tls_set(ca_certs=self.cafile)


def read_password(path: str | None, what: str = "--mqtt-password-file") -> str | None:
    """The password in a file (its first line), else $JALKAL_MQTT_PASSWORD, else
    None. Never a password on the command line: others see it in `ps`."""
    if path is None:
        return os.environ.get(PASSWORD_ENV)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise JalkalError(f"{what} {path}: cannot read it: {why}")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise JalkalError(f"{what} {path}: empty; the password goes on its first line")
    return lines[0].strip()


def login_for(
    url: BrokerUrl, user: str | None, password_file: str | None, cafile: str | None
) -> Login:
    """The Login of the command-line options for a broker URL."""
    if cafile is not None:
        if not url.tls:
            raise JalkalError("--mqtt-cafile: only for an mqtts:// URL")
        if not Path(cafile).is_file():
            raise JalkalError(f"--mqtt-cafile {cafile}: no such file")
    if password_file is not None and user is None:
        raise JalkalError("--mqtt-password-file with no --mqtt-user: give the user too")
    password = read_password(password_file) if user is not None else None
    return Login(user, password, url.tls, cafile)


def device_of_topic(topic: str) -> str | None:
    """The device id of jalkal/v1/<device>/up, if the topic is one."""
    parts = topic.split("/")
    if len(parts) == 4 and topic == link.UP_TOPIC % parts[2]:
        return parts[2]
    return None


class MqttIngest:
    """Subscriber with a persistent session: QoS 1 batches published while the server
    was down are delivered when it is back; acks go out after the COMMIT."""

    def __init__(
        self, store: FrameStore, host: str, port: int, client_id: str, log: Log,
        max_body: int, login: Login | None = None, *, share: str | None = None,
        session_expiry: int | None = None,
    ):  # fmt: skip
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.topic = up_filter(share)
        self.props = Properties(PacketTypes.CONNECT)
        self.props.SessionExpiryInterval = (
            SESSION_NEVER_EXPIRES if session_expiry is None else session_expiry
        )
        self.store, self.log, self.max_body = store, log, max_body
        self.host, self.port = host, port
        self.subscribed = threading.Event()
        self.lock = threading.Lock()  # the redelivery state below
        self.reconnecting = threading.Lock()  # held while the client reconnects
        self.failures = 0  # batches in a row the store could not take
        self.redeliver: threading.Timer | None = None
        self.stopping = False
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,  # PUBACK only for a batch stored (or refused)
        )
        (login or Login()).apply(c)
        c.reconnect_delay_set(min_delay=1, max_delay=5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c

    def connect(self) -> None:
        """Resume the session (Clean Start 0), on the first connection too."""
        self.client.connect_async(
            self.host, self.port, keepalive=30, clean_start=False,
            properties=self.props,
        )  # fmt: skip

    def start(self) -> None:
        self.connect()
        self.client.loop_start()

        def still_waiting() -> None:
            if not self.subscribed.is_set():
                self.log(
                    f"mqtt {self.host}:{self.port}: not subscribed yet; retrying "
                    "(check the address, --mqtt-user, --mqtt-password-file and, "
                    "for mqtts://, --mqtt-cafile)"
                )

        t = threading.Timer(10.0, still_waiting)
        t.daemon = True
        t.start()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            if self.redeliver is not None:
                self.redeliver.cancel()
        with self.reconnecting:
            self.client.disconnect()
            self.client.loop_stop()

    def not_stored(self) -> None:
        """A batch is left unacknowledged: reconnect after a back-off, so that the
        broker delivers it again (one reconnection for any number of batches)."""
        with self.lock:
            if self.stopping or self.redeliver is not None:
                return
            wait = REDELIVER_S[min(self.failures, len(REDELIVER_S) - 1)]
            self.failures += 1
            self.redeliver = threading.Timer(wait, self.reconnect)
            self.redeliver.daemon = True
            self.redeliver.start()

    def reconnect(self) -> None:
        with self.reconnecting:
            with self.lock:
                self.redeliver = None
                if self.stopping:
                    return
            self.log(
                f"mqtt {self.host}:{self.port}: reconnecting, for the broker to "
                "deliver again what was not stored"
            )
            self.client.disconnect()  # the session stays (clean session off)
            self.client.loop_stop()
            self.connect()
            self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.log(
                f"mqtt {self.host}:{self.port}: connection refused: {reason_code} "
                "(check --mqtt-user and --mqtt-password-file)"
            )
            return
        self.log(
            f"mqtt {self.host}:{self.port}: connected "
            f"(session present: {bool(flags.session_present)})",
            1,
        )
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            self.log(
                f"mqtt {self.host}:{self.port}: subscription to {self.topic} refused: "
                f"{bad[0]} (check the broker's ACL for this user)"
            )
            return
        say(f"serve: mqtt subscribed {self.topic}")
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.subscribed.clear()
        if reason_code != 0 and not self.reconnecting.locked():
            self.log(
                f"mqtt {self.host}:{self.port}: disconnected ({reason_code}); retrying"
            )

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        dev = device_of_topic(msg.topic)
        if dev is None:
            client.ack(msg.mid, msg.qos)
            return  # not ours (the subscription only matches ours)
        body = bytes(msg.payload)
        try:
            device = int(dev, 16) if len(dev) == 8 and dev == dev.lower() else None
        except ValueError:
            device = None
        if device is None:
            res = refused(
                "bad_topic", f"{msg.topic}: device must be 8 lowercase hex", body
            )
        elif len(body) > self.max_body:
            res = refused(
                "too_large",
                f"payload of {len(body)} bytes; at most {self.max_body}",
                body,
            )
        else:
            try:
                # the throttle's source: the topic's device (guard.py)
                res = self.store.ingest(
                    body, via="mqtt", device=device, source=f"mqtt {dev}"
                )
            except Exception as e:  # store failure: no ack, delivered again
                self.log(f"mqtt {msg.topic}: internal error: {e!r}; not acknowledged")
                self.not_stored()
                return
            if res.error == "store_error":  # an empty ack would read as refused
                self.log(f"mqtt {msg.topic}: {res.message}; not acknowledged")
                self.not_stored()
                return
            with self.lock:
                self.failures = 0
        self.log.batch("mqtt", dev, res)  # counted before the answer goes out
        ack = json.dumps(res.to_json(), separators=(",", ":"))
        client.publish(link.ACK_TOPIC % dev, ack, qos=1)
        client.ack(msg.mid, msg.qos)  # the broker's PUBACK, after the answer
