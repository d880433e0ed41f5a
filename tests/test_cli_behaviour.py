"""The command line behaves as the tools technicians know (esptool, mpremote,
ESPHome): the board's port found when one is plugged in, `JALKAL_PORT` like
`ESPTOOL_PORT`, `jalkal ports`, URLs for servers, `--version` naming what the
firmware needs, shell completion, help on every option, one spelling for outputs.

Serial ports are pyserial's `list_ports.comports()`, replaced here by a list."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import click
import pytest
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo
from uplink_util import Server, frames, keys_file

import jkfw
from jalkal import __version__
from jalkal.cli import COMMANDS, cli, load_command, main, version_text
from jalkal.errors import JalkalError
from jalkal.field import command as field_command
from jalkal.field.board import Port, find_port, serial_ports
from jalkal.field.deploy import MIN_MICROPYTHON
from jalkal.ingest import serve
from jalkal.ingest.command import http_address
from jkproto import codec, link

ROOT = Path(__file__).resolve().parents[1]
BOARD_COMMANDS = ("flash", "deploy", "doctor", "pull", "monitor")
NO_BOARD = "no board found: plug it in or give -p PORT (jalkal ports lists them)"


def listed(device, vid=None, pid=None, description="n/a", serial=None):
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.description, p.serial_number = vid, pid, description, serial
    return p


UART = listed("/dev/ttyS0")
CP2102 = listed("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102 USB to UART Bridge", "0001")
S3 = listed("/dev/ttyACM0", 0x303A, 0x1001, "USB JTAG/serial debug unit", "F4:12")


@pytest.fixture
def plugged(monkeypatch):
    """plugged(*ports): what pyserial lists from now on; JALKAL_PORT unset."""
    monkeypatch.delenv("JALKAL_PORT", raising=False)

    def plug(*ports):
        monkeypatch.setattr(list_ports, "comports", lambda *a, **k: list(ports))

    plug()
    return plug


@pytest.fixture
def opened(monkeypatch):
    """The ports the board commands open (each open then fails: no board)."""
    seen: list[str] = []

    def open_port(port):
        seen.append(port)
        raise JalkalError(f"cannot open {port}")

    monkeypatch.setattr(field_command, "connect", contextlib.contextmanager(open_port))
    monkeypatch.setattr(field_command.monitor, "open_port", open_port)
    return seen


# --- finding the board's port -------------------------------------------------------


def test_serial_ports_are_the_usb_ones_by_device(plugged):
    plugged(UART, CP2102, S3)
    assert serial_ports() == [
        Port("/dev/ttyACM0", "USB JTAG/serial debug unit", 0x303A, 0x1001, "F4:12"),
        Port("/dev/ttyUSB0", "CP2102 USB to UART Bridge", 0x10C4, 0xEA60, "0001"),
    ]
    assert [p.device for p in serial_ports(usb_only=False)] == [
        "/dev/ttyACM0", "/dev/ttyS0", "/dev/ttyUSB0",
    ]  # fmt: skip
    assert serial_ports()[0].vid_pid == "303A:1001"
    assert Port("/dev/ttyS0", "n/a").vid_pid == ""


def test_find_port_takes_the_one_usb_port(plugged):
    plugged(UART, CP2102)
    assert find_port() == "/dev/ttyUSB0"


@pytest.mark.parametrize("ports", [(), (UART,)])
def test_find_port_without_a_usb_port_says_what_to_do(plugged, ports):
    plugged(*ports)
    with pytest.raises(JalkalError) as e:
        find_port()
    assert str(e.value) == NO_BOARD


def test_find_port_with_several_names_them_and_asks_for_one(plugged):
    plugged(CP2102, UART, S3)
    with pytest.raises(JalkalError) as e:
        find_port()
    assert str(e.value) == (
        "2 boards found: /dev/ttyACM0 (USB JTAG/serial debug unit, 303A:1001), "
        "/dev/ttyUSB0 (CP2102 USB to UART Bridge, 10C4:EA60); give -p PORT"
    )


def test_every_board_command_takes_p_port_and_jalkal_port():
    for name in BOARD_COMMANDS:
        (opt,) = [p for p in load_command(name).params if p.name == "port"]
        assert isinstance(opt, click.Option)
        assert sorted(opt.opts) == ["--port", "-p"], name
        assert opt.envvar == "JALKAL_PORT" and not opt.required, name


@pytest.mark.parametrize("name", ["doctor", "pull --out x", "monitor"])
def test_a_board_command_uses_the_one_port_plugged_in(plugged, opened, name):
    plugged(UART, CP2102)
    assert main(name.split()) == 1
    assert opened == ["/dev/ttyUSB0"]


def test_p_and_jalkal_port_come_before_looking(plugged, opened, monkeypatch, capsys):
    plugged(CP2102)
    assert main(["doctor", "-p", "socket://127.0.0.1:9"]) == 1
    monkeypatch.setenv("JALKAL_PORT", "/dev/ttyACM3")
    assert main(["doctor"]) == 1
    assert main(["doctor", "--port", "/dev/ttyUSB7"]) == 1
    assert opened == ["socket://127.0.0.1:9", "/dev/ttyACM3", "/dev/ttyUSB7"]
    assert (
        capsys.readouterr().err.splitlines()[-1] == "jalkal: cannot open /dev/ttyUSB7"
    )


@pytest.mark.parametrize("name", BOARD_COMMANDS)
def test_no_board_plugged_in_is_one_line_with_what_to_do(plugged, capsys, name):
    args = {"flash": ["fw.bin"], "deploy": ["--config", "c.json"]}.get(name, [])
    assert main([name, *args]) != 0
    err = capsys.readouterr().err
    assert err == (
        f"jalkal: Missing option '--port': {NO_BOARD} (see: jalkal {name} --help)\n"
    )


def test_several_boards_are_listed_and_p_asked_for(plugged, capsys):
    plugged(CP2102, S3)
    assert main(["flash", "fw.bin"]) != 0
    err = capsys.readouterr().err
    assert "2 boards found: /dev/ttyACM0 (" in err and "/dev/ttyUSB0 (" in err
    assert err.rstrip().endswith("give -p PORT (see: jalkal flash --help)")


def test_flash_finds_the_port_too(plugged, capsys, tmp_path):
    plugged(S3)
    assert main(["flash", str(tmp_path / "fw.bin")]) == 1  # past the port, at the file
    assert "no such file" in capsys.readouterr().err


# --- jalkal ports --------------------------------------------------------------------


def test_ports_lists_device_description_vid_pid_serial(plugged, capsys):
    plugged(UART, CP2102, S3)
    assert main(["ports"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "PORT          DESCRIPTION                 VID:PID    SERIAL",
        "/dev/ttyACM0  USB JTAG/serial debug unit  303A:1001  F4:12",
        "/dev/ttyUSB0  CP2102 USB to UART Bridge   10C4:EA60  0001",
    ]
    assert main(["ports", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[2].split() == ["/dev/ttyS0", "n/a", "-", "-"]


def test_ports_with_none_says_what_to_check(plugged, capsys):
    plugged(UART)
    assert main(["ports"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jalkal: no USB serial port found: plug the board in")
    assert len(err.splitlines()) == 1


# --- serve --http takes a URL ---------------------------------------------------------


@pytest.mark.parametrize(
    "given, address",
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http://0.0.0.0:0/", "0.0.0.0:0"),
        ("http://[::1]:9000", "[::1]:9000"),
        ("http://example.org", "example.org:80"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),  # HOST:PORT, as before
    ],
)
def test_http_takes_a_url_or_host_port(given, address):
    assert http_address(given) == address


@pytest.mark.parametrize(
    "given", ["https://x:1", "mqtt://x:1", "http://x:99999", "http://x:1/v1", "http://"]
)
def test_http_refuses_other_urls(given):
    with pytest.raises(JalkalError, match="give http://HOST:PORT"):
        http_address(given)


def test_serve_hands_the_address_on(monkeypatch, tmp_path, capsys):
    got = []
    monkeypatch.setattr(serve, "run", lambda *a, **k: got.append(a[2]))
    base = ["serve", "--store", str(tmp_path / "s"), "--keys", "k.json"]
    assert main([*base, "--http", "http://127.0.0.1:0"]) == 0
    assert main([*base, "--http", "127.0.0.1:0"]) == 0
    assert main(base) == 0
    assert got == ["127.0.0.1:0", "127.0.0.1:0", None]
    assert main([*base, "--http", "https://127.0.0.1:0"]) == 1
    assert "give http://HOST:PORT" in capsys.readouterr().err


def test_serve_on_an_http_url_takes_uploads(tmp_path):
    s = Server(tmp_path, tmp_path / "s.duckdb", keys_file(tmp_path / "k.json"))
    s.start(http="http://127.0.0.1:0")
    try:
        assert s.http and s.http.startswith("http://127.0.0.1:")
        req = urllib.request.Request(
            s.http + link.PATH,
            data=b"".join(frames(3)),
            headers={"Content-Type": link.CONTENT_TYPE},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200 and json.loads(r.read())["stored"] == 3
    finally:
        s.stop()


# --- --version -----------------------------------------------------------------------


def test_version_names_firmware_protocol_and_micropython(capsys):
    assert main(["--version"]) == 0
    fw = ".".join(map(str, jkfw.VERSION))
    mp = ".".join(map(str, MIN_MICROPYTHON))
    assert capsys.readouterr().out.splitlines() == [
        f"jalkal {__version__}",
        f"firmware: jkfw {fw}, for MicroPython {mp} or newer",
        f"protocol: frame version {codec.VERSION}",
    ]
    assert version_text().startswith("jalkal ")


def test_version_is_light():
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from jalkal.cli import main\n"
        "sys.stdout = open('/dev/null', 'w')\n"
        "rc = main(['--version'])\n"
        "took = time.perf_counter() - t\n"
        "sys.stdout = sys.__stdout__\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'pyarrow', 'duckdb', 'matplotlib', 'esptool', 'mpremote'))\n"
        "print(rc, took, heavy)\n"
    )
    best = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        rc, took, heavy = out.stdout.split(" ", 2)
        assert rc == "0" and heavy.strip() == "[]", out.stdout
        best.append(float(took))
    assert min(best) <= 0.3, best


# --- shell completion -----------------------------------------------------------------


def complete(instruction, **env):
    return subprocess.run(
        [sys.executable, "-m", "jalkal"],
        env={**os.environ, "_JALKAL_COMPLETE": instruction, **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "shell, says",
    [
        ("bash", "complete -o nosort -F _jalkal_completion jalkal"),
        ("zsh", "compdef _jalkal_completion jalkal"),
        ("fish", "complete --no-files --command jalkal"),
    ],
)
def test_completion_script_generates(shell, says):
    r = complete(f"{shell}_source")
    assert r.returncode == 0, r.stderr
    assert says in r.stdout and "_JALKAL_COMPLETE" in r.stdout


def test_completion_completes_commands_and_options():
    r = complete("bash_complete", COMP_WORDS="jalkal de", COMP_CWORD="1")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["plain,decode", "plain,deploy"]
    r = complete("bash_complete", COMP_WORDS="jalkal doctor --", COMP_CWORD="2")
    assert "plain,--port" in r.stdout.split() and "plain,--set-clock" in r.stdout


def test_readme_documents_completion():
    readme = (ROOT / "README.md").read_text()
    assert "_JALKAL_COMPLETE=bash_source jalkal" in readme


# --- help on every option, one spelling for outputs -----------------------------------


def options(name):
    return [p for p in load_command(name).params if isinstance(p, click.Option)]


def without_help(name):
    return sorted(o.opts[0] for o in options(name) if not (o.help or "").strip())


def bad_outputs(name):
    """Options writing a file not spelt -o/--output FILE, or a folder not --out DIR."""
    bad = []
    for o in options(name):
        opts = set(o.opts)
        if opts & {"-o", "--output"} and (
            opts != {"-o", "--output"} or o.metavar != "FILE"
        ):
            bad.append("/".join(o.opts))
        if "--out" in opts and o.metavar != "DIR":
            bad.append("/".join(o.opts))
    return bad


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help(name):
    assert without_help(name) == []


def test_the_top_level_options_have_help():
    assert all(
        (o.help or "").strip() for o in cli.params if isinstance(o, click.Option)
    )


@pytest.mark.parametrize("name", list(COMMANDS))
def test_outputs_are_o_output_file_or_out_dir(name):
    assert bad_outputs(name) == []


def test_decode_and_encode_write_with_o_or_output(tmp_path):
    src = ROOT / "docs" / "examples" / "sample.bin"
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.bin"
    assert main(["decode", str(src), "-o", str(a)]) == 0
    assert main(["decode", str(src), "--output", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes() != b""
    assert main(["encode", str(a), "--output", str(c)]) == 0
    assert c.stat().st_size > 0
