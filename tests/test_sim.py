"""The simulator: scenarios, determinism, and pump safety on the physical trace."""

import json

import pytest

from jalkal.cli import main
from jksim import scenario
from jksim.check import pump_violations
from jksim.village import simulate

EXAMPLE = """
start = "2026-03-01"      # local date; CLI flags override start/days/seed
days = 3
seed = 7
tz = "Asia/Kolkata"
[village]
name = "Hirapur"
population = 1200
[scheme]
pump_lpm = 300
tank_litres = 50000
litres_per_pulse = 10
[demand]
lpcd = 62
[[fault]]
kind = "power_cut"
start = "2026-03-02T14:00"
hours = 6
"""


def test_the_documented_scenario_file_runs(tmp_path):
    f = tmp_path / "hirapur.toml"
    f.write_text(EXAMPLE)
    sc = scenario.load(str(f))
    assert sc["days"] == 3 and sc["seed"] == 7 and sc["tz_offset_min"] == 330
    assert sc["fault"][0]["at_s"] == (86400 + 14 * 3600)
    v = simulate(sc, tmp_path / "out")
    truth = json.loads((tmp_path / "out" / "truth.json").read_text())
    (t,) = truth["villages"]
    assert len(t["days"]) == 3 and t["device"] == v.device
    whats = [w for _t, w in t["trace"]]
    assert "power_off" in whats and "power_on" in whats


@pytest.mark.parametrize(
    "text, message",
    [
        ("days = 3\n[scheme]\npump_lmp = 300\n", "scheme.unknown key 'pump_lmp'"),
        ("colour = 1\n", "unknown key 'colour'"),
        ("[village]\npopulation = 'many'\n", "village.population must be int"),
        ("tz = 'Mars/Olympus'\n", "unknown time zone"),
        (
            "[[fault]]\nkind = 'earthquake'\nstart = '2026-03-01T00:00'\nhours = 1\n",
            "fault[0].kind must be one of",
        ),  # fmt: skip
        (
            "[[fault]]\nkind = 'power_cut'\nstart = 'noon'\nhours = 1\n",
            "fault[0].start must be a local time",
        ),  # fmt: skip
        (
            "[[fault]]\nkind = 'power_cut'\nstart = '2026-03-01T01:00'\nhours = 0\n",
            "fault[0].hours must be a number > 0",
        ),  # fmt: skip
        ("[[fault]]\nkind = 'power_cut'\nwhen = 1\n", "fault[0].unknown key 'when'"),
        ("start = '1 March'\n", "start must be a date"),
        ("[scheme]\nlow_frac = 0.95\n", "low_frac < high_frac"),
    ],
)
def test_bad_scenarios_name_the_key(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(scenario.ScenarioError, match=None) as e:
        scenario.load(str(f))
    assert message in str(e.value)


def test_cli_reports_scenario_errors_in_one_line(tmp_path, capsys):
    f = tmp_path / "bad.toml"
    f.write_text("[scheme]\npump_lmp = 300\n")
    assert main(["sim", "--scenario", str(f), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("jalkal: scenario:") and "pump_lmp" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["sim", "--scenario", "monsoon", "--out", str(tmp_path / "o")]) == 1
    assert "one of normal" in capsys.readouterr().err


def _tree(d):
    return {
        str(p.relative_to(d)): p.read_bytes()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path):
    a = simulate(scenario.load("power-cuts", days=3, seed=5), tmp_path / "a")
    b = simulate(scenario.load("power-cuts", days=3, seed=5), tmp_path / "b")
    c = simulate(scenario.load("power-cuts", days=3, seed=6), tmp_path / "c")
    assert a.device == b.device != c.device  # the identity comes from the seed too
    ta, tb, tc = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert ta == tb
    assert ta["sd/log/20260301.jkl"] != tc["sd/log/20260301.jkl"]


def _exempt(sc):
    return [
        (
            sc["start_utc"] + f["at_s"],
            sc["start_utc"] + f["at_s"] + f["hours"] * 3600 + 3600,
        )
        for f in sc["fault"]
        if f["kind"] == "float_stuck"
    ]


@pytest.mark.parametrize("name", scenario.BUILTINS)
def test_pump_invariants_hold_in_every_scenario(name, tmp_path):
    sc = scenario.load(name, days=6, seed=3)
    simulate(sc, tmp_path)
    (v,) = json.loads((tmp_path / "truth.json").read_text())["villages"]
    end = sc["start_utc"] + sc["days"] * 86400
    assert pump_violations(v, end, _exempt(sc)) == []
    assert any(w == "relay_on" for _t, w in v["trace"])


@pytest.mark.slow
@pytest.mark.parametrize("name", scenario.BUILTINS)
@pytest.mark.parametrize("seed", range(1, 6))
def test_pump_invariants_over_a_month(name, seed, tmp_path):
    sc = scenario.load(name, days=30, seed=seed)
    simulate(sc, tmp_path)
    (v,) = json.loads((tmp_path / "truth.json").read_text())["villages"]
    end = sc["start_utc"] + sc["days"] * 86400
    assert pump_violations(v, end, _exempt(sc)) == []


def test_the_checker_catches_a_bad_trace():
    """The invariant checker is not vacuous: a hand-made unsafe trace fails it."""
    v = {
        "pump": {"min_off_s": 300, "max_run_s": 3600, "debounce_s": 3},
        "trace": [
            ["2026-03-01T00:00:00Z", "relay_on"],
            ["2026-03-01T00:10:00Z", "dry"],
            ["2026-03-01T02:00:00Z", "relay_off"],
            ["2026-03-01T02:01:00Z", "relay_on"],
            ["2026-03-01T02:02:00Z", "relay_off"],
        ],
    }
    found = pump_violations(v, 1772336000.0)
    assert any("min_off_s" in f for f in found)
    assert any("max_run_s" in f for f in found)
    assert any("dry" in f for f in found)


def _run(tmp_path, faults, days=2):
    f = tmp_path / "s.toml"
    f.write_text(f"days = {days}\n" + faults)
    sc = scenario.load(str(f))
    simulate(sc, tmp_path / "o")
    from jkproto import codec
    from jkproto import objects as ob

    keys = json.loads((tmp_path / "o" / "keys.json").read_text())["devices"]
    ((dev, k),) = keys.items()
    data = b"".join(
        p.read_bytes() for p in sorted((tmp_path / "o" / "sd" / "log").glob("*"))
    )
    objs, stats = ob.decode_stream(data, {dev: codec.Signer(bytes.fromhex(k["key"]))})
    truth = json.loads((tmp_path / "o" / "truth.json").read_text())["villages"][0]
    return sc, objs, stats, truth


def test_a_healthy_village_raises_no_fault(tmp_path):
    """The switches are wired before the board powers up: its first reading is the
    plant's state, not an open circuit (which would raise wire_break at boot)."""
    _sc, objs, _stats, _truth = _run(tmp_path, "", days=1)
    assert [o for o in objs if o.get("event") == "fault_raised"] == []


def test_welded_relay_is_reported_by_the_firmware(tmp_path):
    sc, objs, _stats, truth = _run(
        tmp_path,
        '[[fault]]\nkind = "relay_stuck"\nstart = "2026-03-01T10:00"\nhours = 3\n',
    )
    faults = [(o["event"], o["reason"]) for o in objs if o["kind"] == "event"]
    assert ("fault_raised", "relay_stuck") in faults
    assert ("fault_cleared", "relay_stuck") in faults


def test_watchdog_resets_a_hung_board_without_losing_a_pulse(tmp_path):
    sc, objs, _stats, _truth = _run(
        tmp_path, '[[fault]]\nkind = "watchdog"\nstart = "2026-03-01T10:00"\n'
    )
    assert [o["reset"] for o in objs if o["kind"] == "boot"] == ["power_on", "watchdog"]
    assert not [o for o in objs if o["kind"] == "gap"]  # totals kept in RTC memory
    readings = [o["supply_pulses"] for o in objs if o["kind"] == "reading"]
    assert readings == sorted(readings)


def test_brownout_tears_a_frame_and_the_rest_survives(tmp_path):
    sc, objs, stats, _truth = _run(
        tmp_path,
        '[[fault]]\nkind = "brownout"\nstart = "2026-03-01T10:00"\nhours = 1\n',
    )
    assert stats["truncated"] == 1 and stats["frames"] == len(objs)
    assert [o["reset"] for o in objs if o["kind"] == "boot"] == ["power_on", "power_on"]
    assert all(o["verified"] for o in objs)


def test_sd_corruption_is_skipped_and_counted(tmp_path):
    sc, objs, stats, _truth = _run(
        tmp_path, '[[fault]]\nkind = "sd_corrupt"\nstart = "2026-03-01T20:00"\n'
    )
    assert stats["skipped_bytes"] >= 512 - 80
    assert all(o["verified"] for o in objs)


def test_sim_help_names_every_builtin_scenario():
    """`jalkal sim --help` spells its scenario names out (no import of the
    simulator for a help text): every built-in one is there."""
    from click.testing import CliRunner

    from jalkal.virtual.command import sim_cmd

    out = CliRunner().invoke(sim_cmd, ["--help"], terminal_width=400).output
    missing = [n for n in scenario.BUILTINS if n not in out]
    assert not missing, missing
