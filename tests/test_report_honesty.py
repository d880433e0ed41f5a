"""`jalkal report` never says "ok" when nothing was verified (issue 16): inputs
with nothing to report fail saying why, copies of a log are counted once and
named, repeated lockouts are an alert, the HTML page's tables count the same
days, outputs never land where they do not belong, and options that would do
nothing are refused. Every test here failed before the fix it names."""

from __future__ import annotations

import json
import re
import shutil

import click
import pytest

from jalkal.cli import main
from jalkal.decode import bulk
from jalkal.decode.streams import read_stream
from jalkal.reports.command import report_cmd
from jkproto import codec
from jkproto import objects as ob
from jksim import scenario
from jksim.village import simulate


def _sim(root, name, days, seed=1):
    simulate(scenario.load(name, days=days, seed=seed), root)
    dev = json.loads((root / "truth.json").read_text())["villages"][0]["device"]
    return root, dev


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    """Ten days of the dry-borewell scenario: ~19 dry-run lockouts on days 3-4."""
    return _sim(tmp_path_factory.mktemp("dry"), "dry-borewell", 10)


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """Another board (another device id and key)."""
    return _sim(tmp_path_factory.mktemp("other"), "normal", 2, seed=7)


def _report(capsys, *args):
    rc = main(["report", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _args(sim, keys=True):
    root, _ = sim
    a = [root / "sd", "--villages", root / "villages.csv"]
    return a + (["--keys", root / "keys.json"] if keys else [])


# --- 1. nothing verified, nothing reported: say so, fail ---------------------------


def test_wrong_keys_file_fails_naming_the_device(dry, other, capsys):
    root, dev = dry
    rc, out, err = _report(capsys, *_args(dry, keys=False), "--keys",
                           other[0] / "keys.json")  # fmt: skip
    assert rc == 1 and out == ""  # was 0 with "no days to report"
    assert f"device {dev} is not in {other[0] / 'keys.json'}" in err
    assert "nothing to report" in err


def test_a_key_that_verifies_nothing_fails(dry, tmp_path, capsys):
    root, dev = dry
    wrong = tmp_path / "k.json"
    wrong.write_text(json.dumps({"devices": {dev: {"key": "00" * 32}}}))
    rc, out, err = _report(capsys, *_args(dry, keys=False), "--keys", wrong)
    assert rc == 1 and out == ""
    assert f"device {dev}: none of its" in err and "MAC check" in err


def test_a_keys_file_without_the_device_verifies_nothing(dry, tmp_path, capsys):
    # it used to count every frame, unverified, as if no keys file were given
    empty = tmp_path / "k.json"
    empty.write_text('{"devices": {}}')
    rc, out, err = _report(capsys, *_args(dry, keys=False), "--keys", empty)
    assert rc == 1 and out == ""
    assert f"device {dry[1]} is not in {empty}" in err


@pytest.mark.parametrize("what", ["csv", "random", "empty"])
def test_an_input_without_frames_fails(dry, tmp_path, capsys, what):
    f = tmp_path / ("villages.csv" if what == "csv" else "x.bin")
    if what == "csv":
        shutil.copy(dry[0] / "villages.csv", f)
    elif what == "random":
        f.write_bytes(bytes((i * 131 + 7) % 251 for i in range(5000)))
    else:
        f.write_bytes(b"")
    rc, out, err = _report(capsys, f, "--villages", dry[0] / "villages.csv")
    assert rc == 1 and out == ""  # was 0 with "no days to report"
    if what == "empty":
        assert f"{f} is empty" in err
    else:
        assert f"{f} holds no jalkal frames: is it a .jkl log or an export" in err


def test_a_frameless_file_beside_logs_is_named(dry, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("the pump house key is with the sarpanch\n")
    rc, out, err = _report(capsys, *_args(dry), notes)
    assert rc == 0 and "Hirapur" in out
    assert f"report: {notes} holds no jalkal frames: skipped" in err


def test_parquet_folder_that_is_not_an_export_fails(dry, capsys):
    rc, out, err = _report(capsys, "--parquet", dry[0] / "sd", "--villages",
                           dry[0] / "villages.csv")  # fmt: skip
    assert rc == 1 and out == ""
    assert f"{dry[0] / 'sd'} holds no jalkal export" in err


def test_registered_village_without_data(dry, other, tmp_path, capsys):
    _, dev = dry
    _, odev = other
    # only the other board registered: nothing of it in the input
    rc, out, err = _report(capsys, dry[0] / "sd", "--keys", dry[0] / "keys.json",
                           "--villages", other[0] / "villages.csv")  # fmt: skip
    assert rc == 1 and out == ""
    assert f"device {odev} (Hirapur) is in the villages file but has no frames" in err
    assert f"device {dev} is not in the villages file" in err
    # both registered, one without data: the report goes on and says so
    v = tmp_path / "v.csv"
    v.write_text(f"device,village,population\n{dev},Hirapur,1200\n{odev},Lalpur,900\n")
    rc, out, err = _report(capsys, *_args(dry)[:1], "--keys", dry[0] / "keys.json",
                           "--villages", v)  # fmt: skip
    assert rc == 0 and "Hirapur" in out
    assert f"report: device {odev} (Lalpur) is in the villages file but has no " in err


def test_without_keys_the_report_says_once_it_is_unverified(dry, capsys):
    rc, out, err = _report(capsys, *_args(dry, keys=False))
    assert rc == 0 and "Hirapur" in out
    assert err.count("not verified") == 1
    rc, out, err = _report(capsys, *_args(dry))
    assert rc == 0 and "not verified" not in err


# --- 2. a copy of a log is recognised and counted once -----------------------------


@pytest.fixture
def copied(dry, tmp_path):
    """DIR/sd/log/*.jkl and a copy backup/20260305.jkl (sorted before sd/)."""
    root = tmp_path / "card"
    shutil.copytree(dry[0] / "sd", root / "sd")
    (root / "backup").mkdir()
    shutil.copy(root / "sd" / "log" / "20260305.jkl", root / "backup")
    return root


def test_a_copied_log_is_counted_once_and_named(dry, copied, capsys):
    keys = ["--villages", dry[0] / "villages.csv", "--keys", dry[0] / "keys.json"]
    rc, want, _ = _report(capsys, dry[0] / "sd", *keys, "--format", "json")
    assert rc == 0
    rc, got, err = _report(capsys, copied, *keys, "--format", "json")
    assert rc == 0
    # the copy used to break the chain and leave two days incomplete (no K-factor:
    # its readings came before the boot frame in the stream), completeness 1.000
    assert json.loads(got) == json.loads(want)
    assert all(d["complete"] for d in json.loads(got)["days"])
    assert "chain break" not in err
    backup = copied / "backup" / "20260305.jkl"
    original = copied / "sd" / "log" / "20260305.jkl"
    assert f"report: {backup} repeats the frames of {original}: counted once" in err


def test_a_copy_made_before_the_day_ended_is_left_out(dry, tmp_path):
    logs = sorted((dry[0] / "sd" / "log").iterdir())
    part = tmp_path / "a-early-copy.jkl"
    part.write_bytes(logs[4].read_bytes()[:2000])  # cut inside a frame
    st = read_stream([str(part), str(dry[0] / "sd")], str(dry[0] / "keys.json"))
    assert part not in st.files and len(st.files) == len(logs)
    (r,) = st.repeats
    assert (r.copy, r.original, r.whole) == (part, logs[4], True)
    assert st.stats["chain_breaks"] == 0 and st.stats["skipped_bytes"] == 0


def test_a_forged_copy_never_displaces_the_real_log(dry, tmp_path, capsys):
    """The same frame keys with other bytes (signed with another key) are not a
    copy: both files are read, and with --keys only the real frames count."""
    first = sorted((dry[0] / "sd" / "log").iterdir())[0]
    wrong = codec.Signer(bytes(32))
    objs = bulk.to_objects(bulk.decode(first.read_bytes()).table)
    forged = tmp_path / "0-first.jkl"  # sorted before the real log
    forged.write_bytes(b"".join(ob.from_obj(o, wrong) for o in objs))
    both = [str(forged), str(dry[0] / "sd")]
    assert read_stream(both, None).repeats == []
    keys = ["--villages", dry[0] / "villages.csv", "--keys", dry[0] / "keys.json"]
    rc, want, _ = _report(capsys, dry[0] / "sd", *keys, "--format", "json")
    rc, got, err = _report(capsys, *both, *keys, "--format", "json")
    assert rc == 0 and json.loads(got) == json.loads(want)
    assert f"{len(objs)} frames failed MAC check, not counted" in err


# --- 3. repeated lockouts are an alert ---------------------------------------------


def test_repeated_lockouts_are_an_alert(dry, capsys):
    rc, out, err = _report(capsys, *_args(dry), "--alerts", "--format", "json")
    assert rc == 0
    rows = json.loads(out)["alerts"]
    (r,) = [r for r in rows if r["kind"] == "lockouts"]  # was "no alerts"
    assert r["village"] == "Hirapur" and r["device"] == dry[1]
    assert r["since"].startswith("2026-03-03") and not r["active"]
    n = int(r["what"].split()[0])
    assert 15 <= n <= 25 and "dry_run" in r["evidence"]
    # as of the second dry day it is going on
    rc, out, _ = _report(capsys, *_args(dry), "--alerts", "--format", "json",
                         "--as-of", "2026-03-04")  # fmt: skip
    (r,) = [r for r in json.loads(out)["alerts"] if r["kind"] == "lockouts"]
    assert r["active"] and r["until"] is None
    # thresholds: more lockouts than happened, or a shorter window than any run
    for more in (["--lockouts", "40"], ["--lockout-days", "0.01"]):
        rc, out, _ = _report(capsys, *_args(dry), "--alerts", "--format", "json",
                             *more)  # fmt: skip
        assert rc == 0 and not [
            r for r in json.loads(out)["alerts"] if r["kind"] == "lockouts"
        ], more


# --- 4. a fault outside the simulated days is refused ------------------------------


def test_a_fault_after_the_last_day_is_refused(tmp_path):
    f = tmp_path / "late.toml"
    f.write_text('days = 3\n[[fault]]\nkind = "power_cut"\n'
                 'start = "2026-03-04T10:00"\nhours = 2\n')  # fmt: skip
    with pytest.raises(scenario.ScenarioError) as e:
        scenario.load(str(f))
    msg = str(e.value)
    assert "fault[0] (power_cut at 2026-03-04T10:00)" in msg
    assert "3 days, 2026-03-01 to 2026-03-03" in msg
    # the same file with more days runs; fewer days on the command line do not
    assert scenario.load(str(f), days=4)["fault"][0]["kind"] == "power_cut"
    f.write_text('days = 9\n[[fault]]\nkind = "power_cut"\n'
                 'start = "2026-03-04T10:00"\nhours = 2\n')  # fmt: skip
    with pytest.raises(scenario.ScenarioError, match="runs 2 days"):
        scenario.load(str(f), days=2)
    # the built-in scenarios keep their faults inside any number of days
    for name in scenario.BUILTINS:
        scenario.load(name, days=1)


# --- 5. the HTML page's tables count the same days ---------------------------------


def _table_after(text, heading):
    part = text[text.index(heading) :]
    table = part[part.index("<table>") : part.index("</table>")]
    head = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in table.split("<tr>")[2:]]
    return [dict(zip(head, r, strict=True)) for r in rows if r]


def test_html_month_table_and_band_counts_agree(tmp_path_factory, capsys):
    pytest.importorskip("matplotlib")
    root, _ = _sim(tmp_path_factory.mktemp("cuts"), "power-cuts", 5)
    page = root / "page"
    rc, _, err = _report(capsys, root / "sd", "--villages", root / "villages.csv",
                         "--keys", root / "keys.json", "--html", page)  # fmt: skip
    assert rc == 0, err
    text = (page / "index.html").read_text()
    (month,) = _table_after(text, "<h2>By month and village</h2>")
    (block,) = _table_after(text, "<h2>Days in each band by block</h2>")
    assert int(month["incomplete"]) > 5  # March has 31 days, 5 simulated
    # the band counts used to count only the simulated days as incomplete
    for band in ("fully", "partially", "non", "incomplete"):
        assert int(month[band]) == int(block[band]), band
    assert sum(int(block[b]) for b in block if b != "block") == 31


# --- 6. outputs only where they belong ---------------------------------------------


def test_plot_takes_a_folder_or_a_png(dry, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    jpg = tmp_path / "lpcd.jpg"
    rc, out, err = _report(capsys, *_args(dry), "--plot", jpg)
    assert rc == 1 and "--plot takes a folder or a .png file" in err
    assert not jpg.exists()  # it used to be made a folder of three PNGs
    png = tmp_path / "lpcd.png"
    assert _report(capsys, *_args(dry), "--plot", png)[0] == 0 and png.is_file()


def test_html_replaces_only_an_earlier_page(dry, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    page = tmp_path / "page"
    rc, _, err = _report(capsys, *_args(dry), "--html", page)
    assert rc == 0 and "replacing" not in err
    rc, _, err = _report(capsys, *_args(dry), "--html", page)
    assert rc == 0
    assert f"report: {page} holds an earlier page: replacing bands.png, " in err
    # a folder of something else is left alone
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "letter.txt").write_text("keep me")
    (mine / "index.html").write_text("<p>my own page</p>")
    rc, _, err = _report(capsys, *_args(dry), "--html", mine)
    assert rc == 1 and "not an earlier report page (letter.txt)" in err
    assert (mine / "index.html").read_text() == "<p>my own page</p>"
    assert sorted(p.name for p in mine.iterdir()) == ["index.html", "letter.txt"]
    # an empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _report(capsys, *_args(dry), "--html", empty)[0] == 0


# --- 7. every option explained; options that do nothing refused --------------------


def test_every_report_option_has_help():
    bare = [
        p.opts[0]
        for p in report_cmd.params
        if isinstance(p, click.Option) and not (p.help or "").strip()
    ]
    assert bare == []


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--by", "block"], "--by groups the --period table"),
        (["--plot", "PLOTS", "--by", "block"], "--by groups the --period table"),
        (["--as-of", "2026-03-03"], "--as-of tunes the escalation list"),
        (["--fault-days", "1", "--night-nights", "2"],
         "--fault-days, --night-nights tune the escalation list"),
        (["--lockouts", "2"], "--lockouts tunes the escalation list"),
        (["--quality", "q.csv"], "--quality adds water tests"),
    ],
)  # fmt: skip
def test_options_that_do_nothing_alone_are_refused(dry, tmp_path, capsys, extra,
                                                   says):  # fmt: skip
    extra = [str(tmp_path / x) if x == "PLOTS" else x for x in extra]
    rc, out, err = _report(capsys, *_args(dry), *extra)
    assert rc == 2 and out == "" and says in err, err  # a usage error


def test_options_that_matter_are_accepted(dry, tmp_path, capsys):
    ok = [
        ["--period", "month", "--by", "block"],
        ["--alerts", "--as-of", "2026-03-05", "--fault-days", "1"],
        ["--plot", str(tmp_path / "p"), "--by", "district"],
    ]
    for extra in ok:
        rc, _, err = _report(capsys, *_args(dry), *extra)
        assert rc == 0, (extra, err)


def test_keys_with_a_store_is_refused(dry, tmp_path, capsys):
    args = ["--villages", dry[0] / "villages.csv", "--keys", dry[0] / "keys.json"]
    rc, _, err = _report(capsys, "--store", tmp_path / "s.duckdb", *args)
    assert rc == 1 and "--keys verifies frame files" in err
