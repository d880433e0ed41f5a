"""protocol/link.py, the uplink's wire names in one place: pinned against the text of
protocol/SPEC.md and docs/uplink.md, read by the host, and the firmware's own
spelling of the few it sends held to it (the board spells them out: one more module
costs heap there), in CPython and in real MicroPython."""

import ast
import json
import re
from pathlib import Path

import pytest
from conftest import REPO

from jkproto import link

SPEC = (REPO / "protocol" / "SPEC.md").read_text()
DOC = (REPO / "docs" / "uplink.md").read_text()
NOT_FIELDS = ("PATH", "HEALTH_PATH", "CONTENT_TYPE", "UP_TOPIC", "ACK_TOPIC")


def names() -> dict[str, str]:
    return {k: v for k, v in vars(link).items() if k.isupper()}


def answer_fields() -> set[str]:
    return {v for k, v in names().items() if k not in NOT_FIELDS}


def section(text: str, title: str) -> str:
    """The Markdown section under `## title`, up to the next `## `."""
    start = text.index("\n## " + title + "\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def first_column(table_text: str, header: str) -> set[str]:
    """The `names` in the first column of the table whose header row starts with
    `| header |`."""
    lines = table_text.splitlines()
    i = next(n for n, s in enumerate(lines) if s.startswith(f"| {header} |"))
    out = set()
    for row in lines[i + 2 :]:
        if not row.startswith("|"):
            break
        out.update(re.findall(r"`([a-z0-9_]+)`", row.split("|")[1]))
    return out


def test_every_name_is_a_plain_str():
    assert names() and all(type(v) is str for v in names().values())
    assert len(set(names().values())) == len(names())  # no two names alike


def test_the_spec_states_the_paths_and_topics():
    up = section(SPEC, "Uplink")
    assert f"`POST {link.PATH}`" in up
    assert f"`GET {link.HEALTH_PATH}`" in up
    assert f"`Content-Type: {link.CONTENT_TYPE}`" in up
    assert f"`{link.UP_TOPIC % '<device>'}`" in up
    assert f"`{link.ACK_TOPIC % '<device>'}`" in up
    assert "protocol/link.py" in up


def test_the_spec_lists_exactly_the_answer_fields():
    assert first_column(section(SPEC, "Uplink"), "field") == answer_fields()


def test_the_uplink_doc_agrees():
    assert f"POST {link.PATH} HTTP/1.1" in DOC
    assert f"Content-Type: {link.CONTENT_TYPE}" in DOC
    assert f"`GET {link.HEALTH_PATH}`" in DOC
    mqtt = section(DOC, "MQTT")
    assert f"`{link.UP_TOPIC % '<device>'}`" in mqtt
    assert f"`{link.ACK_TOPIC % '<device>'}`" in mqtt
    assert f"`{link.UP_TOPIC % '+'}`" in mqtt  # what the server subscribes to
    assert first_column(section(DOC, "The answer"), "field") == answer_fields()


def test_topics_take_one_device():
    assert link.UP_TOPIC % "0a1b2c3d" == "jalkal/v1/0a1b2c3d/up"
    assert link.ACK_TOPIC % "0a1b2c3d" == "jalkal/v1/0a1b2c3d/ack"
    # the board formats them as bytes
    assert link.UP_TOPIC.encode() % b"0a1b2c3d" == b"jalkal/v1/0a1b2c3d/up"


# --- the firmware spells only the wire names it sends, and spells them as link does


def wire_copies(text: str) -> list[str]:
    """String and bytes literals of a module's source (docstrings aside) that copy a
    wire name of jkproto.link: a path, a topic (or its fixed part), the content type,
    or an answer field as a JSON key ("name":)."""
    whole = [link.PATH, link.HEALTH_PATH, link.CONTENT_TYPE]
    whole += [t.split("%s")[0] for t in (link.UP_TOPIC, link.ACK_TOPIC)]
    keys = ['"%s"' % f for f in answer_fields()]
    docs = set()
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docs.add(id(body[0].value))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in docs:
            continue
        v = node.value
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        if not isinstance(v, str):
            continue
        if any(w in v for w in whole) or any(k in v for k in keys):
            out.append(v)
    return out


FIRMWARE = sorted((REPO / "firmware").glob("*.py"))
# the wire literals the board sends or reads, by module, built from link's names
SPELT = {
    "uplink.py": [link.PATH]
    + [
        '"%s":' % f
        for f in (
            link.FRAMES,
            link.STORED,
            link.DUPLICATE,
            link.ACKED_BYTES,
            link.SIG,
            link.ERROR,
        )
    ],  # fmt: skip
    "mqtt.py": [link.UP_TOPIC, link.ACK_TOPIC],
    "modem.py": ['+HTTPPARA="CONTENT","%s"' % link.CONTENT_TYPE],
}


@pytest.mark.parametrize("path", FIRMWARE, ids=lambda p: p.name)
def test_the_firmware_spells_wire_names_as_link_does(path: Path):
    assert sorted(wire_copies(path.read_text())) == sorted(SPELT.get(path.name, []))


def test_the_copy_check_finds_a_planted_copy():
    for planted in (
        'URL = b"http://h/v1/frames"',
        'T = b"jalkal/v1/%s/up" % dev',
        "def f(body):\n    return body.find(b'\"acked_bytes\":')",
        'H = b\'+HTTPPARA="CONTENT","application/octet-stream"\'',
    ):
        assert len(wire_copies(planted)) == 1, planted
    # a docstring may name them; a comment is no literal
    assert wire_copies('def f():\n    """POST /v1/frames"""\n# "acked_bytes":') == []
    # a name spelt otherwise than link spells it is not one of link's
    assert wire_copies('T = b"jalkal/v2/%s/up"') == []


# --- and the firmware's sender speaks these names


def test_the_http_url_ends_in_the_path():
    from jkfw.uplink import Uplink

    class Clock:
        def flag(self):
            return None

    cfg = {"uplink_url": "http://example.org:8080/", "uplink_batch_bytes": 256,
           "device": "0a1b2c3d"}  # fmt: skip
    up = Uplink(cfg, Clock(), None, None, {}, None, None, None)
    assert up.url == b"http://example.org:8080" + link.PATH.encode()


def signed(body: bytes, frames: int, stored: int, acked: int, error: str = "") -> bytes:
    """An answer built from link's names, signed with the device's key (KEY)."""
    import hashlib

    from jkproto import codec

    msg = codec.ack_msg("0a1b2c3d", hashlib.sha256(body).digest(), len(body), frames,
                        stored, 0, acked, error)  # fmt: skip
    sig = codec.ack_sig(codec.Signer(KEY), msg).decode()
    doc = {link.OK: not error, link.FRAMES: frames, link.STORED: stored,
           link.DUPLICATE: 0, link.ACKED_BYTES: acked, link.SIG: sig,
           link.DEVICE: "0a1b2c3d"}  # fmt: skip
    if error:
        doc[link.ERROR] = error
    return json.dumps(doc).encode()


KEY = bytes(range(32))
BODY = bytes(80)


def test_the_answer_is_read_by_its_field_names():
    import hashlib

    from jkfw.uplink import SKIPALL, verdict
    from jkproto import codec

    sg, crc = codec.Signer(KEY), hashlib.sha256(BODY).digest()
    ans = signed(BODY, 2, 1, 40)
    assert verdict(200, ans, 80, 2, crc, sg, "0a1b2c3d") == 40
    ans = signed(BODY, 2, 0, 0, "bad_mac")
    assert verdict(403, ans, 80, 2, crc, sg, "0a1b2c3d") == SKIPALL


def test_the_mqtt_topics_are_the_links():
    from jkfw.mqtt import Mqtt

    q = Mqtt(object(), b"0a1b2c3d")
    assert q.up == (link.UP_TOPIC % "0a1b2c3d").encode()
    assert q.ack == (link.ACK_TOPIC % "0a1b2c3d").encode()


@pytest.mark.micropython
def test_the_same_names_in_micropython(mpy):
    from conftest import compiled, protocol_files

    out = mpy.run(
        "import json\nfrom jkproto import link\n"
        "print(json.dumps({k: v for k, v in link.__dict__.items() if k.isupper()}))",
        compiled(protocol_files()),
    )
    assert json.loads(out) == names()


@pytest.mark.micropython
def test_the_board_builds_the_same_wire_bytes_in_micropython(mpy):
    """bytes % bytes and str.encode as MicroPython does them; the answer's sig
    checked there as here."""
    import hashlib

    from conftest import compiled, firmware_files

    from jkfw.uplink import BADSIG, SKIPALL

    script = """
import json
from jkfw.mqtt import Mqtt
from jkfw.uplink import verdict
from jkproto.codec import Signer
q = Mqtt(None, b"0a1b2c3d")
sg = Signer(bytes(range(32)))
sha = %r
print(json.dumps([q.up.decode(), q.ack.decode(),
                  verdict(200, bytearray(%r), 80, 2, sha, sg, "0a1b2c3d"),
                  verdict(403, %r, 80, 2, sha, sg, "0a1b2c3d"),
                  verdict(200, b'{"ok":true,"acked_bytes": 40}', 80, 2, sha, sg, "")]))
""" % (hashlib.sha256(BODY).digest(), signed(BODY, 2, 1, 40),
       signed(BODY, 2, 0, 0, "bad_mac"))  # fmt: skip
    out = json.loads(mpy.run(script, compiled(firmware_files())))
    assert out == [link.UP_TOPIC % "0a1b2c3d", link.ACK_TOPIC % "0a1b2c3d", 40,
                   SKIPALL, BADSIG]  # fmt: skip


def test_the_board_neither_imports_nor_carries_link():
    """The board spells its few wire names (above) instead of loading link.py:
    deploy leaves the module off the board, and no firmware module imports it."""
    from jalkal.field import deploy

    assert "jkproto/link.py" not in deploy.package_sources()
    assert "jkproto/codec.py" in deploy.package_sources()
    for path in FIRMWARE:
        imported = set()
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Import):
                imported |= {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom) and n.module:
                imported |= {n.module} | {f"{n.module}.{a.name}" for a in n.names}
        assert "jkproto.link" not in imported, path.name
