"""MQTT for `jalkal serve`: a subscriber (persistent session, QoS 1) to
``jalkal/v1/<device>/up`` on a broker; the answer (the same JSON as over HTTP) is
published on ``jalkal/v1/<device>/ack`` after the COMMIT (docs/uplink.md)."""

from __future__ import annotations

import json
import threading
from urllib.parse import urlsplit

from jkproto import link

from ..errors import JalkalError
from .ack import batch_line, refused
from .log import Log, say
from .store import Store

UP_TOPIC = link.UP_TOPIC % "+"  # every device's
DEFAULT_CLIENT_ID = "jalkal-serve"


def parse_mqtt_url(text: str) -> tuple[str, int]:
    u = urlsplit(text)
    try:
        port = u.port or 1883
    except ValueError:
        port = -1
    if u.scheme != "mqtt" or not u.hostname or not 0 < port <= 65535:
        raise JalkalError(
            f"{text!r}: give mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883"
        )
    return u.hostname, port


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
        self, store: Store, host: str, port: int, client_id: str, log: Log,
        max_body: int,
    ):  # fmt: skip
        import paho.mqtt.client as mqtt

        self.store, self.log, self.max_body = store, log, max_body
        self.host, self.port = host, port
        self.subscribed = threading.Event()
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        c.reconnect_delay_set(min_delay=1, max_delay=5)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

        def still_waiting() -> None:
            if not self.subscribed.is_set():
                self.log(f"mqtt {self.host}:{self.port}: not subscribed yet; retrying")

        t = threading.Timer(10.0, still_waiting)
        t.daemon = True
        t.start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            self.log(f"mqtt {self.host}:{self.port}: connection refused: {reason_code}")
            return
        self.log(
            f"mqtt {self.host}:{self.port}: connected "
            f"(session present: {bool(flags.session_present)})",
            1,
        )
        client.subscribe(UP_TOPIC, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # type: ignore[no-untyped-def]
        say(f"serve: mqtt subscribed {UP_TOPIC}")
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        self.subscribed.clear()
        if reason_code != 0:
            self.log(
                f"mqtt {self.host}:{self.port}: disconnected ({reason_code}); retrying"
            )

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        dev = device_of_topic(msg.topic)
        if dev is None:
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
                res = self.store.ingest(body, via="mqtt", device=device)
            except Exception as e:  # store failure: no ack, the sender re-sends
                self.log(f"mqtt {msg.topic}: internal error: {e!r}; not acknowledged")
                return
            if res.error == "store_error":  # an empty ack would read as refused
                self.log(f"mqtt {msg.topic}: {res.message}; not acknowledged")
                return
        ack = json.dumps(res.to_json(), separators=(",", ":"))
        client.publish(link.ACK_TOPIC % dev, ack, qos=1)
        line, level = batch_line("mqtt", dev, res)
        self.log(line, level)
