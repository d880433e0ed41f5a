"""boards/: every shipped pin map loads, and `jkboards.load` refuses a bad one."""

import json
import shutil

import pytest
from conftest import REPO

import jkboards

SHIPPED = sorted(p.stem for p in (REPO / "boards").glob("*.json"))
GOOD = "esp32-devkitc-sim800l"


def test_names_are_the_shipped_files():
    assert jkboards.names() == SHIPPED
    assert len(SHIPPED) >= 5


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_board_validates(name):
    b = jkboards.load(name)
    assert b == json.loads((REPO / "boards" / f"{name}.json").read_text())
    assert b["name"] == name and b["chip"] in jkboards.pins.CHIPS
    assert jkboards.pins.problems(b) == []


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A boards folder holding the shipped files; plant(name, text) adds one."""
    for p in (REPO / "boards").glob("*.json"):
        shutil.copy(p, tmp_path)
    monkeypatch.setattr(jkboards, "HERE", tmp_path)

    def plant(name, text):
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        return path

    return plant


def with_pins(**pins):
    b = json.loads((REPO / "boards" / f"{GOOD}.json").read_text())
    b["name"] = "bad"
    b["pins"].update(pins)
    return json.dumps(b)


@pytest.mark.parametrize(
    "pins, says",
    [
        ({"relay": 34}, "relay = GPIO34 is input-only on the esp32"),
        ({"relay": 7}, "relay = GPIO7 is wired to the flash chip"),
        ({"relay": 0}, "relay = GPIO0 glitches during boot"),
        ({"sw_dry": 36}, "sw_dry = GPIO36 has no internal pull-up"),
        ({"relay": 32}, "GPIO32 is used twice (sw_dry and relay)"),
        ({"relay": None}, "pin for relay is required"),
        ({"relay": "26"}, "relay = '26' is not a GPIO of the esp32"),
        ({"fan": 4}, "unknown pin role 'fan'"),
    ],
)
def test_a_bad_pin_map_is_refused_naming_file_and_problem(planted, pins, says):
    path = planted("bad", with_pins(**pins))
    with pytest.raises(ValueError) as e:
        jkboards.load("bad")
    assert isinstance(e.value, jkboards.BoardError)
    msg = str(e.value)
    assert msg.startswith(f"board file {path}: "), msg
    assert says in msg, msg
    assert "bad: " not in msg  # the file is named once, not again per problem


def test_every_problem_is_listed(planted):
    planted("bad", with_pins(relay=34, led=7))
    with pytest.raises(jkboards.BoardError) as e:
        jkboards.load("bad")
    msg = str(e.value)
    assert "relay = GPIO34 is input-only" in msg and "led = GPIO7 is wired" in msg
    assert msg.count("; ") >= 1


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"name": "bad", "chip": "esp32",', "not JSON"),
        ("", "not JSON"),
        ('["esp32"]', "not a JSON object"),
        ('{"name": "bad", "chip": "esp8266", "pins": {}}', "chip must be one of"),
        ('{"name": "bad", "chip": "esp32"}', "needs a 'pins' object"),
    ],
)
def test_a_broken_file_is_refused(planted, text, says):
    path = planted("bad", text)
    with pytest.raises(ValueError, match="board file") as e:
        jkboards.load("bad")
    assert str(path) in str(e.value) and says in str(e.value), e.value


def test_a_file_under_another_name_is_refused(planted):
    text = (REPO / "boards" / f"{GOOD}.json").read_text()
    planted("copy", text)
    with pytest.raises(ValueError, match=f"calls itself '{GOOD}'; the name must be"):
        jkboards.load("copy")


def test_external_pullups_must_be_a_list(planted):
    b = json.loads(with_pins())
    planted("bad", json.dumps(dict(b, external_pullups=34)))
    with pytest.raises(ValueError, match="external_pullups must be a list"):
        jkboards.load("bad")


@pytest.mark.parametrize("name", ["arduino-uno", "", "../firmware/config", GOOD + " "])
def test_an_unknown_board_lists_the_known_ones(name):
    with pytest.raises(FileNotFoundError) as e:
        jkboards.load(name)
    msg = str(e.value)
    assert msg.startswith(f"no board {name!r}; known: "), msg
    assert msg.endswith(", ".join(SHIPPED))


def test_names_lists_a_bad_file_too_so_load_can_say_why(planted):
    planted("bad", with_pins(relay=7))
    assert "bad" in jkboards.names()
    with pytest.raises(FileNotFoundError, match="known: .*bad"):
        jkboards.load("nope")
