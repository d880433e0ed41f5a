"""jalkal provision: config.json, keys file and village registry for a new board."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import jkboards
from jalkal.cli import main
from jalkal.field import provision as pv
from jalkal.keys import load_keys
from jalkal.registry import load_villages
from jkfw import config as fwconfig

BOARD = "esp32-devkitc-sim800l"
jkboards_load = jkboards.load


def run(tmp: Path, *extra: str, out: str = "rampur") -> list[str]:
    return [
        "provision", "--board", BOARD, "--village", "Rampur", "--population", "1250",
        "--out", str(tmp / out), "--keys", str(tmp / "keys.json"),
        "--villages", str(tmp / "villages.csv"), *extra,
    ]  # fmt: skip


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def snapshot(tmp: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*") if p.is_file()
    }


def test_new_board_config_keys_and_registry(tmp_path, capsys):
    assert main(run(tmp_path, "--district", "Jaipur", "--state", "Rajasthan")) == 0
    out = capsys.readouterr().out
    cfg_path = tmp_path / "rampur" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    board = jkboards.load(BOARD)
    dev = cfg["device"]
    assert len(dev) == 8 and dev == dev.lower() and int(dev, 16) != 0
    assert cfg["pins"] == board["pins"]
    assert cfg["external_pullups"] == board["external_pullups"]
    assert cfg["board"] == BOARD and cfg["population"] == 1250
    assert cfg["tz_offset_min"] == 330
    for k in pv.PUMP_KEYS:
        assert cfg[k] == fwconfig.DEFAULTS[k]
    assert (
        cfg["supply_litres_per_pulse"] == fwconfig.DEFAULTS["supply_litres_per_pulse"]
    )
    # the firmware takes every value as written
    merged, bad = fwconfig.validate(cfg)
    assert bad == [] and merged["key"] == cfg["key"]
    # the key is the keys file's, the device is in the registry as report reads it
    keys = load_keys(tmp_path / "keys.json")
    assert keys == {dev: bytes.fromhex(cfg["key"])}
    reg = load_villages(tmp_path / "villages.csv")
    v = reg[dev]
    assert (v.village, v.population, v.district, v.state, v.tz) == (
        "Rampur", 1250, "Jaipur", "Rajasthan", "Asia/Kolkata",
    )  # fmt: skip
    # owner-only where a key is; the registry is an ordinary file
    assert mode(cfg_path) == 0o600
    assert mode(tmp_path / "keys.json") == 0o600
    assert mode(tmp_path / "rampur") == 0o700
    assert mode(tmp_path / "villages.csv") & 0o600 == 0o600
    assert f"device {dev}" in out
    assert f"jalkal deploy --port PORT --config {cfg_path}" in out
    assert not list(tmp_path.rglob(".*"))  # no temporary files left


def test_defaults_put_keys_and_registry_beside_config(tmp_path):
    args = ["provision", "--board", "lilygo-t-sim7000g", "--village", "Khera"]
    assert main([*args, "--population", "300", "--out", str(tmp_path / "k")]) == 0
    cfg = json.loads((tmp_path / "k" / "config.json").read_text())
    assert load_keys(tmp_path / "k" / "keys.json") == {
        cfg["device"]: bytes.fromhex(cfg["key"])
    }
    assert (
        load_villages(tmp_path / "k" / "villages.csv")[cfg["device"]].population == 300
    )


def test_modes_hold_under_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        (tmp_path / "keys.json").write_text('{"devices": {}}')
        os.chmod(tmp_path / "keys.json", 0o666)
        assert main(run(tmp_path)) == 0
    finally:
        os.umask(old)
    assert mode(tmp_path / "keys.json") == 0o600
    assert mode(tmp_path / "rampur" / "config.json") == 0o600


def test_world_readable_keys_file_is_tightened_and_said(tmp_path, capsys):
    (tmp_path / "keys.json").write_text('{"devices": {}}')
    os.chmod(tmp_path / "keys.json", 0o644)
    assert main(run(tmp_path)) == 0
    assert mode(tmp_path / "keys.json") == 0o600
    assert "was readable by others" in capsys.readouterr().out


def test_second_village_keeps_existing_entries(tmp_path):
    # a registry as `jalkal sim` writes it: no district column, tz given
    (tmp_path / "villages.csv").write_text(
        "device,village,population,tz\r\n0a1b2c3d,Sonpur,800,Asia/Kolkata\r\n"
    )
    (tmp_path / "keys.json").write_text(
        json.dumps({"devices": {"0a1b2c3d": {"key": "ab" * 32, "note": "bench"}}})
    )
    assert main(run(tmp_path, "--district", "Jaipur")) == 0
    keys = load_keys(tmp_path / "keys.json")
    assert keys["0a1b2c3d"] == bytes.fromhex("ab" * 32) and len(keys) == 2
    doc = json.loads((tmp_path / "keys.json").read_text())
    assert doc["devices"]["0a1b2c3d"]["note"] == "bench"  # unknown fields kept
    reg = load_villages(tmp_path / "villages.csv")
    assert reg["0a1b2c3d"].village == "Sonpur" and reg["0a1b2c3d"].district == ""
    new = next(d for d in reg if d != "0a1b2c3d")
    assert reg[new].district == "Jaipur"
    head = (tmp_path / "villages.csv").read_text().splitlines()[0]
    assert head == "device,village,population,tz,district"


def test_random_id_skips_taken_ones(tmp_path, monkeypatch):
    (tmp_path / "keys.json").write_text(
        json.dumps({"devices": {"0a1b2c3d": {"key": "ab" * 32}}})
    )
    ids = iter(["0a1b2c3d", "00000000", "5e5e5e5e"])
    monkeypatch.setattr(pv.secrets, "token_hex", lambda n: next(ids))
    assert main(run(tmp_path)) == 0
    assert set(load_keys(tmp_path / "keys.json")) == {"0a1b2c3d", "5e5e5e5e"}


def test_given_device_id(tmp_path):
    assert main(run(tmp_path, "--device", "C0FFEE01")) == 0
    assert json.loads((tmp_path / "rampur/config.json").read_text())["device"] == (
        "c0ffee01"
    )


@pytest.mark.parametrize(
    "device, says",
    [("xyz", "8 hex digits"), ("123456789", "8 hex digits"), ("00000000", "no config")],
)
def test_bad_device_id(tmp_path, capsys, device, says):
    assert main(run(tmp_path, "--device", device)) == 1
    assert says in capsys.readouterr().err
    assert snapshot(tmp_path) == {}


def test_existing_device_of_another_village_is_refused(tmp_path, capsys):
    assert main(run(tmp_path, "--device", "c0ffee01")) == 0
    before = snapshot(tmp_path)
    args = run(tmp_path, "--device", "c0ffee01", "--force", out="khera")
    args[args.index("Rampur")] = "Khera"
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "already provisioned for village 'Rampur'" in err
    assert snapshot(tmp_path) == before


def test_reprovision_needs_force_and_keeps_the_old_key(tmp_path, capsys):
    assert main(run(tmp_path, "--device", "c0ffee01", "--block", "Amer")) == 0
    old_key = load_keys(tmp_path / "keys.json")["c0ffee01"]
    before = snapshot(tmp_path)
    assert main(run(tmp_path, "--device", "c0ffee01")) == 1
    assert "add --force" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    args = run(tmp_path, "--device", "c0ffee01", "--force")
    args[args.index("1250")] = "1300"
    assert main(args) == 0
    assert "re-provisioned device c0ffee01" in capsys.readouterr().out
    new_key = load_keys(tmp_path / "keys.json")["c0ffee01"]
    assert new_key != old_key
    cfg = json.loads((tmp_path / "rampur/config.json").read_text())
    assert bytes.fromhex(cfg["key"]) == new_key and cfg["population"] == 1300
    entry = json.loads((tmp_path / "keys.json").read_text())["devices"]["c0ffee01"]
    assert entry["retired_keys"][0]["key"] == old_key.hex()
    reg = load_villages(tmp_path / "villages.csv")
    assert len(reg) == 1 and reg["c0ffee01"].population == 1300
    assert reg["c0ffee01"].block == "Amer"  # kept when not given again


def test_other_boards_config_in_out_dir_is_refused(tmp_path, capsys):
    assert main(run(tmp_path)) == 0
    before = snapshot(tmp_path)
    args = run(tmp_path)
    args[args.index("Rampur")] = "Khera"
    assert main(args) == 1
    assert "give each board its own --out folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--set", "max_run_s=30"], "max_run_s=30"),
        (["--set", "no_flow_s=20000"], "no_flow_s=20000"),
        (["--set", "display=vga"], 'display="vga"'),
        (["--set", "lockout_s=[10]"], "lockout_s=[10]"),
        (["--set", "pump_colour=red"], "no such setting"),
        (["--set", "key=00"], "set by provisioning itself"),
        (["--set", "max_run_s"], "KEY=VALUE"),
        (["--tz", "Asia/Nowhere"], "unknown time zone"),
        (["--population", "0"], "--population"),
        (["--meter-litres-per-pulse", "0"], "--meter-litres-per-pulse"),
        (["--board", "esp8266-nodemcu"], "known: esp32-devkitc-sim800l"),
    ],
)
def test_bad_values_write_nothing(tmp_path, capsys, extra, says):
    # click's own range checks are usage errors (2); the rest are jalkal's (1)
    usage = extra[0] in ("--population", "--meter-litres-per-pulse")
    assert main(run(tmp_path, *extra)) == (2 if usage else 1)
    err = capsys.readouterr().err
    assert says in err and err.startswith("jalkal: ") and "Traceback" not in err
    assert snapshot(tmp_path) == {}


def test_bad_board_file_is_refused(tmp_path, tmp_path_factory, capsys, monkeypatch):
    b = jkboards.load(BOARD)
    b["pins"] = dict(b["pins"], relay=0)  # a strapping pin: the pump would blip
    boards = tmp_path_factory.mktemp("boards")  # outside tmp_path: it stays empty
    (boards / f"{BOARD}.json").write_text(json.dumps(b))
    monkeypatch.setattr(jkboards, "HERE", boards)
    assert main(run(tmp_path)) == 1
    assert "relay = GPIO0 glitches during boot" in capsys.readouterr().err
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize(
    "name, text, says",
    [
        ("keys.json", "{not json", "not JSON"),
        ("keys.json", '{"devices": {"XYZ": {"key": "00"}}}', "8 lowercase hex"),
        ("villages.csv", "device,village\n", "missing column(s) population"),
        ("villages.csv", "device,village,population\nzz,Sonpur,800\n", "8 hex"),
    ],
)
def test_broken_keys_or_registry_is_not_touched(tmp_path, capsys, name, text, says):
    (tmp_path / name).write_text(text)
    assert main(run(tmp_path)) == 1
    assert says in capsys.readouterr().err
    assert snapshot(tmp_path) == {name: text.encode()}


def test_failure_part_way_puts_files_back(tmp_path, monkeypatch):
    (tmp_path / "keys.json").write_text('{"devices": {}}\n')
    os.chmod(tmp_path / "keys.json", 0o600)
    before = snapshot(tmp_path)
    real = pv._write

    def failing(path, data, mode):
        if path.name == "villages.csv":
            raise OSError(28, "No space left on device")
        real(path, data, mode)

    monkeypatch.setattr(pv, "_write", failing)
    with pytest.raises(OSError):
        pv.provision(
            pv.Request(
                BOARD,
                "Rampur",
                1250,
                tmp_path / "rampur",
                keys=tmp_path / "keys.json",
                villages=tmp_path / "villages.csv",
            )  # fmt: skip
        )
    assert snapshot(tmp_path) == before
    assert mode(tmp_path / "keys.json") == 0o600


def test_meters_and_display_from_board(tmp_path, monkeypatch):
    b = dict(jkboards.load(BOARD), display="hd44780", display_addr=39)
    monkeypatch.setattr(jkboards, "load", lambda name: b)
    assert main(run(tmp_path, "--meter-litres-per-pulse", "1",
                    "--source-litres-per-pulse", "0")) == 0  # fmt: skip
    cfg = json.loads((tmp_path / "rampur/config.json").read_text())
    assert cfg["supply_litres_per_pulse"] == 1 and cfg["source_litres_per_pulse"] == 0
    assert cfg["display"] == "hd44780" and cfg["display_addr"] == 39
    monkeypatch.setattr(jkboards, "load", lambda name: jkboards_load(BOARD))
    assert (
        "display"
        not in pv.build_config(
            pv.Request(BOARD, "Rampur", 1250, tmp_path), "c0ffee01", bytes(32)
        )[0]
    )  # the board says nothing: the firmware's default stays


def test_time_zone_offset_and_daylight_saving_note(tmp_path, capsys):
    assert main(run(tmp_path, "--tz", "Asia/Kathmandu")) == 0
    cfg = json.loads((tmp_path / "rampur/config.json").read_text())
    assert cfg["tz_offset_min"] == 345
    assert load_villages(tmp_path / "villages.csv")[cfg["device"]].tz == (
        "Asia/Kathmandu"
    )
    assert pv.tz_offset_min("Europe/London", 1_750_000_000) == (60, True)  # June
    assert pv.tz_offset_min("Asia/Kolkata", 1_750_000_000) == (330, False)


def _with_radio_keys(monkeypatch) -> None:
    """The firmware as it is once it knows the uplink, modem and SMS settings."""
    extra = {"modem": "none", "uplink_url": "", "apn": "", "sms_to": [],
             "sms_allow": []}  # fmt: skip
    for k, v in extra.items():
        monkeypatch.setitem(fwconfig.DEFAULTS, k, v)
    ok = fwconfig._ok

    def _ok(key, v):
        if key in extra:
            return isinstance(v, type(extra[key]))
        return ok(key, v)

    monkeypatch.setattr(fwconfig, "_ok", _ok)


def test_uplink_apn_and_sms_written_when_the_firmware_knows_them(
    tmp_path, monkeypatch, capsys
):
    _with_radio_keys(monkeypatch)
    args = ["--uplink", "http://10.0.0.5:8080", "--apn", "airtelgprs.com",
            "--sms", "+919800000001", "--sms", "+919800000002",
            "--sms-allow", "+919800000001"]  # fmt: skip
    assert main(run(tmp_path, *args)) == 0
    cfg = json.loads((tmp_path / "rampur/config.json").read_text())
    assert cfg["uplink_url"] == "http://10.0.0.5:8080"
    assert cfg["apn"] == "airtelgprs.com"
    assert cfg["sms_to"] == ["+919800000001", "+919800000002"]
    assert cfg["sms_allow"] == ["+919800000001"]
    assert cfg["modem"] == jkboards.load(BOARD)["modem"]
    out = capsys.readouterr().out
    assert "uplink http://10.0.0.5:8080" in out and "APN airtelgprs.com" in out


@pytest.mark.parametrize(
    "option, value, key",
    [
        ("--uplink", "http://10.0.0.5:8080", "uplink_url"),
        ("--apn", "internet", "apn"),
        ("--sms", "+919800000001", "sms_to"),
        ("--sms-allow", "+919800000001", "sms_allow"),
    ],
)
def test_option_the_firmware_does_not_know_yet(
    tmp_path, monkeypatch, capsys, option, value, key
):
    monkeypatch.delitem(fwconfig.DEFAULTS, key, raising=False)
    assert main(run(tmp_path, option, value)) == 1
    err = capsys.readouterr().err
    assert f"{option}: this firmware has no {key!r} setting yet" in err
    assert snapshot(tmp_path) == {}


def test_no_modem_without_radio_options(tmp_path, monkeypatch):
    _with_radio_keys(monkeypatch)
    assert main(run(tmp_path)) == 0
    cfg = json.loads((tmp_path / "rampur/config.json").read_text())
    assert not {"modem", "uplink_url", "apn", "sms_to"} & set(cfg)


def test_help_lists_field_commands_first(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    cmds = [ln.split()[0] for ln in out.split("Commands:")[1].splitlines() if ln]
    assert cmds[0] == "provision"
    assert cmds.index("provision") < cmds.index("sim") < cmds.index("decode")


@pytest.mark.parametrize(
    "board, active",
    [("lilygo-t-sim7000g", 1), ("lilygo-t-sim7600", 1), ("ttgo-t-call-sim800", None)],
)
def test_modem_power_key_level_from_the_board_file(tmp_path, board, active):
    """LilyGO boards drive PWRKEY through a transistor: their board files say so and
    provisioning carries it into config.json."""
    cfg = pv.build_config(
        pv.Request(board, "Rampur", 1250, tmp_path), "c0ffee01", bytes(32)
    )[0]
    assert cfg.get("modem_pwrkey_active") == active


def test_sms_numbers_become_e164_and_commands_get_a_pin(tmp_path, capsys):
    args = ["--sms", "098765 43210", "--sms", "0044 20 7946 0958",
            "--sms-allow", "+91 98765-43210"]  # fmt: skip
    assert main(run(tmp_path, *args)) == 0
    cfg = json.loads((tmp_path / "rampur/config.json").read_text())
    assert cfg["sms_to"] == ["+919876543210", "+442079460958"]
    assert cfg["sms_allow"] == ["+919876543210"]
    pin = cfg["sms_pin"]
    assert pin.isdigit() and len(pin) == 4
    assert f"SMS PIN {pin}" in capsys.readouterr().out  # the technician is told
    assert pv.e164("98765 43210") == pv.e164("0091-98765-43210") == "+919876543210"
    assert pv.e164("(020) 7946 0958", "44") == "+442079460958"


def test_a_given_pin_is_kept_and_never_printed(tmp_path, capsys):
    assert (
        main(run(tmp_path, "--sms-allow", "+919876543210", "--sms-pin", "482193")) == 0
    )
    cfg = json.loads((tmp_path / "rampur/config.json").read_text())
    assert cfg["sms_pin"] == "482193"
    assert "482193" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--sms-allow", "12345"], "--sms-allow '12345': not a phone number"),
        (["--sms", "+91 98765 ;x"], "not a phone number"),
        (["--sms-allow", "SIM-INFO"], "not a phone number"),
        (["--sms-allow", "+919876543210", "--sms-pin", "12"], "4 to 8 digits"),
        (["--sms", "9876543210", "--country-code", "+91"], "--country-code"),
    ],
)
def test_bad_numbers_and_pins_are_refused_and_nothing_is_written(
    tmp_path, capsys, args, msg
):
    assert main(run(tmp_path, *args)) == 1
    assert msg in capsys.readouterr().err
    assert snapshot(tmp_path) == {}
