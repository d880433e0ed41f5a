"""Every path a command takes, given something odd (a folder, a missing parent, a
read-only, empty, garbage or existing file), ends in exit status 0, 1 or 2 with no
traceback, and leaves every file the command was not asked to write as it was.

The path options are found by walking each command's click parameters, so a new
one is covered (or this test fails until it is). Commands that need a board, a
port or a network (flash, deploy, doctor, pull, monitor, serve, replay, vboard)
are left out."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jalkal.cli import COMMANDS, load_command, main
from jalkal.ingest.replay import batches, read_frames
from jalkal.ingest.store import Store
from jalkal.keys import load_keys

NEEDS_A_BOARD = {"flash", "deploy", "doctor", "pull", "monitor", "serve", "replay",
                 "vboard", "dashboard"}  # fmt: skip
PATH_METAVARS = {"DIR", "FILE", "OUT", "DB", "PATH...", "SOURCE...", "[IN.jsonl]",
                 "DIR|FILE.png", "NAME|FILE", "FIRMWARE.bin"}  # fmt: skip
PATH_NAMES = {"out", "output", "keys", "villages", "store", "parquet", "plot", "html",
              "quality", "config_path", "fs_dir", "display_dir", "paths", "infile",
              "out_dir", "firmware", "scenario_name"}  # fmt: skip


def path_params(cmd: click.Command) -> list[str]:
    """The parameters of cmd that name a file or a folder."""
    return [
        p.name
        for p in cmd.params
        if p.name
        and not getattr(p, "is_flag", False)
        and (p.metavar in PATH_METAVARS or p.name in PATH_NAMES)
    ]


COMMANDS_RUN = [
    n for n in COMMANDS if n not in NEEDS_A_BOARD and path_params(load_command(n))
]
CASES = [(n, p) for n in COMMANDS_RUN for p in path_params(load_command(n))]

# what each command is asked to write: these may be replaced (a file) or get new
# files (a folder); anything else there must stay as it was
WRITES = {
    ("decode", "out"), ("encode", "out"), ("report", "output"), ("report", "plot"),
    ("report", "html"), ("sim", "out"), ("sim", "display_dir"), ("export", "out"),
    ("provision", "out"), ("provision", "keys"), ("provision", "villages"),
    ("broker", "out"), ("dashboard-user", "users"),
}  # fmt: skip

KINDS = (
    "folder", "folder with a file", "missing parent", "existing file", "empty file",
    "garbage file", "read-only file", "in a read-only folder", "read-only folder",
    "under a file", "trailing slash", "new name",
)  # fmt: skip


# --- a valid run of each command, built once ----------------------------------------


def build_world(w: Path) -> Path:
    """A simulated village (sd/, keys, registry), its frames as JSON Lines, a store
    and an export of it, under w."""
    sim = w / "sim"
    assert main(["sim", "--scenario", "normal", "--days", "1", "--out",
                 str(sim)]) == 0  # fmt: skip
    assert main(["decode", str(sim / "sd"), "--keys", str(sim / "keys.json"), "-o",
                 str(w / "frames.jsonl")]) == 0  # fmt: skip
    with Store(w / "store.duckdb", load_keys(sim / "keys.json")) as s:
        files, _ = read_frames((str(sim / "sd"),))
        for b in batches(files, 500, False):
            s.ingest(b.data)
    assert main(["export", "--store", str(w / "store.duckdb"), "--out",
                 str(w / "pq")]) == 0  # fmt: skip
    (w / "password.txt").write_text("a long enough password\n")
    return w


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return build_world(tmp_path_factory.mktemp("world"))


def baseline(name: str, w: Path, t: Path, flag: bool) -> dict[str, object]:
    """Parameter values that make `name` succeed, writing only under t."""
    sim = w / "sim"
    keys, villages = str(sim / "keys.json"), str(sim / "villages.csv")
    if name == "sim":
        return {"scenario_name": "normal", "days": 1, "out": str(t / "sim"),
                "force": flag}  # fmt: skip
    if name == "decode":
        return {"paths": [str(sim / "sd")], "keys": keys, "out": str(t / "o.jsonl")}
    if name == "encode":
        return {"infile": str(w / "frames.jsonl"), "keys": keys,
                "out": str(t / "o.bin")}  # fmt: skip
    if name == "report":
        return {"paths": [str(sim / "sd")], "villages": villages, "keys": keys,
                "output": str(t / "r.txt")}  # fmt: skip
    if name == "export":
        return {"store": str(w / "store.duckdb"), "out": str(t / "pq"),
                "overwrite": flag}  # fmt: skip
    if name == "provision":
        return {"board": "esp32-devkitc-sim800l", "village": "Rampur",
                "population": 500, "out": str(t / "prov"), "force": flag}  # fmt: skip
    if name == "broker":
        return {"keys": keys, "out": str(t / "mq")}
    if name == "dashboard-user":
        return {"action": "add", "name": "asha", "users": str(t / "users.json"),
                "password_file": str(w / "password.txt")}  # fmt: skip
    raise AssertionError(f"no valid run of {name} known: add one to baseline()")


def argv(name: str, values: dict[str, object]) -> list[str]:
    args = [name]
    for p in load_command(name).params:
        v = values.get(p.name or "")
        if v is None or v is False:
            continue
        if isinstance(p, click.Argument):
            args += [str(x) for x in v] if isinstance(v, list) else [str(v)]
        elif getattr(p, "is_flag", False):
            args.append(p.opts[0])
        else:
            args += [p.opts[0], str(v)]
    return args


def odd_path(kind: str, t: Path, name: str, junk: bytes) -> Path | str:
    """A path of the given kind under t (made now)."""
    if kind == "folder":
        (t / name).mkdir()
        return t / name
    if kind == "folder with a file":
        (t / name).mkdir()
        (t / name / "keep.txt").write_text("keep me\n")
        return t / name
    if kind == "missing parent":
        return t / "no" / "such" / name
    if kind in ("existing file", "read-only file"):
        (t / name).write_text("precious\n")
        if kind == "read-only file":
            (t / name).chmod(0o444)
        return t / name
    if kind == "empty file":
        (t / name).write_bytes(b"")
        return t / name
    if kind == "garbage file":
        (t / name).write_bytes(junk)
        return t / name
    if kind in ("in a read-only folder", "read-only folder"):
        ro = t / "ro"
        ro.mkdir()
        (ro / "kept.txt").write_text("kept\n")
        ro.chmod(0o555)
        return ro / name if kind == "in a read-only folder" else ro
    if kind == "under a file":
        (t / "afile").write_text("a file\n")
        return t / "afile" / name
    if kind == "trailing slash":
        return str(t / name) + "/"
    assert kind == "new name"
    return t / name


def snapshot(*roots: Path) -> dict[Path, tuple[str, int]]:
    """Every file under roots: its SHA-256 and mode."""
    out = {}
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                p = Path(dirpath) / f
                if p.is_symlink():
                    continue
                out[p] = (
                    hashlib.sha256(p.read_bytes()).hexdigest(),
                    stat.S_IMODE(p.stat().st_mode),
                )
    return out


names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 100)


def test_every_path_option_is_covered():
    """A path option added to a command is listed here (so the property below
    runs it) and the commands run have a valid baseline."""
    found = {(n, p) for n, p in CASES}
    assert {("sim", "out"), ("sim", "scenario_name"), ("sim", "display_dir"),
            ("decode", "paths"), ("decode", "keys"), ("decode", "out"),
            ("encode", "infile"), ("encode", "keys"), ("encode", "out"),
            ("report", "paths"), ("report", "villages"), ("report", "keys"),
            ("report", "output"), ("report", "plot"), ("report", "html"),
            ("report", "store"), ("report", "parquet"), ("report", "quality"),
            ("export", "store"), ("export", "out"), ("provision", "out"),
            ("provision", "keys"), ("provision", "villages"),
            ("dashboard-user", "users"),
            ("dashboard-user", "password_file")} <= found  # fmt: skip
    for name in COMMANDS_RUN:
        baseline(name, Path("/w"), Path("/t"), False)


def run(args: list[str]) -> tuple[int, str]:
    """main(args) in this process: its exit status and everything it printed."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="replace")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(args)
    out.flush()
    return rc, out.buffer.getvalue().decode("utf-8", "replace")  # type: ignore[attr-defined]


def check(
    world: Path, command: str, param: str, kind: str, name: str, junk: bytes,
    flag: bool,
) -> None:  # fmt: skip
    """Run command with param given a path of that kind; assert the properties."""
    with tempfile.TemporaryDirectory() as d:
        t = Path(d)
        values = baseline(command, world, t, flag)
        odd = odd_path(kind, t, name, junk)
        values[param] = [str(odd)] if param == "paths" else str(odd)
        if command == "report" and param in ("store", "parquet"):
            values.pop("paths")  # one source at a time
        before = snapshot(t, world)
        try:
            rc, text = run(argv(command, values))
        finally:
            if (t / "ro").exists():
                (t / "ro").chmod(0o755)
        what = f"{command} {param} given {kind} ({odd})"
        assert rc in (0, 1, 2), f"{what}: exit {rc}\n{text}"
        assert "Traceback" not in text, f"{what}:\n{text}"
        after = snapshot(t, world)
        target = Path(str(odd).rstrip("/"))
        owned = (command, param) in WRITES
        for p, was in before.items():
            if owned and p == target:
                continue
            assert after.get(p) == was, f"{what}: {p} changed or removed\n{text}"
        litter = [p for p in after if p.name.startswith(".") and ".tmp" in p.name]
        assert not litter, f"{what}: left {litter}"
        if rc != 0:  # nothing new, but another output it was asked for (whole)
            asked = [
                Path(str(v)) for k, v in values.items()
                if k != param and (command, k) in WRITES and v
            ]  # fmt: skip
            new = [
                p for p in after
                if p not in before and not any(a == p or a in p.parents for a in asked)
            ]  # fmt: skip
            assert not new, f"{what}: failed but left {new}\n{text}"


@settings(
    max_examples=160,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    case=st.sampled_from(CASES),
    kind=st.sampled_from(KINDS),
    name=names,
    junk=st.binary(min_size=1, max_size=200),
    flag=st.booleans(),
)
def test_odd_paths_never_give_a_traceback_nor_touch_other_files(
    world: Path, case: tuple[str, str], kind: str, name: str, junk: bytes,
    flag: bool,
) -> None:  # fmt: skip
    check(world, case[0], case[1], kind, name, junk, flag)


def test_an_output_folder_gets_one_line(tmp_path: Path, world: Path, capsys):
    """-o at a folder, as report, decode and encode take it: one line naming it."""
    sim = world / "sim"
    keys = str(sim / "keys.json")
    runs: list[Callable[[str], list[str]]] = [
        lambda o: ["report", str(sim / "sd"), "--villages", str(sim / "villages.csv"),
                   "--keys", keys, "-o", o],
        lambda o: ["decode", str(sim / "sd"), "--keys", keys, "-o", o],
        lambda o: ["encode", str(world / "frames.jsonl"), "-o", o],
    ]  # fmt: skip
    for args in runs:
        for out in (str(tmp_path), str(tmp_path / "new") + "/"):
            capsys.readouterr()
            assert main(args(out)) == 1
            err = capsys.readouterr().err
            said = [ln for ln in err.splitlines() if ln.startswith("jalkal:")]
            assert len(said) == 1 and out in said[0] and "folder" in said[0], err
            assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
