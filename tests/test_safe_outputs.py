"""Never destroy what the user did not ask to destroy.

`jalkal sim` writes only into a new or empty folder or an earlier run's (its
marker, .jalkal-sim, lists what it wrote), and never replaces or deletes a file it
did not write, even with --force. `jalkal export --overwrite` replaces only an
earlier export. `jalkal serve` that cannot start leaves no new store behind and
never touches an existing one. Outputs are written whole, with one-line errors
for a path that cannot take them; secrets are owner-only, everything else gets
the usual umask."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jalkal.cli import main
from jalkal.errors import JalkalError
from jalkal.fileio import atomic_write
from jalkal.ingest import serve
from jalkal.ingest.replay import batches, read_frames
from jalkal.ingest.store import Store
from jalkal.keys import load_keys
from jksim import village

BOARD = "esp32-devkitc-sim800l"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root (relative path): its SHA-256 and mode."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), mode(p))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def sim(out: Path, *more: str, days: int = 1) -> int:
    return main(["sim", "--scenario", "normal", "--days", str(days), "--out",
                 str(out), *more])  # fmt: skip


def provision(out: Path) -> int:
    return main(["provision", "--board", BOARD, "--village", "Rampur",
                 "--population", "500", "--out", str(out)])  # fmt: skip


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for one test (put back after)."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def as_someone_else(fn: Callable[[], None]) -> None:
    """Run fn where file permissions bite: directly for a user, and for root in
    a forked child that has become nobody."""
    if os.geteuid() != 0:
        fn()
        return
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code, msg = 0, b""
        try:
            os.setgid(65534)
            os.setuid(65534)
            fn()
        except BaseException as e:
            code, msg = 1, repr(e).encode()
        os.write(w, msg)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, msg.decode()


# --- jalkal sim ------------------------------------------------------------------


def test_sim_refuses_a_district_folder_even_with_force(tmp_path, capsys):
    d = tmp_path / "district"
    assert provision(d) == 0
    before = snapshot(d)
    capsys.readouterr()
    assert sim(d) == 1
    err = capsys.readouterr().err
    assert "not empty and not an earlier `jalkal sim` output" in err
    assert "--force" in err and "Traceback" not in err
    assert sim(d, "--force") == 1
    err = capsys.readouterr().err
    assert str(d / "keys.json") in err and str(d / "villages.csv") in err
    assert "never replaces or deletes" in err
    assert snapshot(d) == before and sorted(before) == [
        "config.json", "keys.json", "villages.csv",
    ]  # fmt: skip


def test_sim_force_writes_beside_what_is_there_and_marks_its_files(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("pump house key with the sarpanch\n")
    assert sim(d, "--force") == 0
    assert (d / "notes.txt").read_text().startswith("pump house")
    ours = village.earlier_run(d)
    assert ours is not None
    assert set(ours) == {
        str(p.relative_to(d)) for p in d.rglob("*")
        if p.is_file() and p.name not in ("notes.txt", village.MARKER)
    }  # fmt: skip
    assert {"keys.json", "villages.csv", "truth.json", "flash/config.json"} <= set(ours)
    for rel, digest in ours.items():
        assert hashlib.sha256((d / rel).read_bytes()).hexdigest() == digest
    assert sim(d) == 0  # an earlier run's folder: no --force needed
    assert (d / "notes.txt").exists()


def test_a_rerun_replaces_only_what_a_run_wrote(tmp_path, capsys):
    d = tmp_path / "d"
    assert sim(d, days=3) == 0
    assert len(list((d / "sd" / "log").iterdir())) == 4
    (d / "store.duckdb").write_bytes(b"the server's store")  # jalkal serve's
    assert sim(d) == 0
    assert sorted(p.name for p in (d / "sd" / "log").iterdir()) == [
        "20260301.jkl", "20260302.jkl",
    ]  # fmt: skip
    assert (d / "store.duckdb").read_bytes() == b"the server's store"
    # a file of someone else's on the card: refused, even with --force
    mine = d / "sd" / "log" / "20260310.jkl"
    mine.write_bytes(b"a log pulled from a real board")
    before = snapshot(d)
    capsys.readouterr()
    assert sim(d) == 1 and sim(d, "--force") == 1
    assert str(mine) in capsys.readouterr().err
    assert snapshot(d) == before
    mine.unlink()
    # a keys file that gained a real device since the run: refused
    keys = json.loads((d / "keys.json").read_text())
    keys["devices"]["3fa9c21e"] = {"key": "ab" * 32}
    (d / "keys.json").write_text(json.dumps(keys))
    before = snapshot(d)
    assert sim(d, "--force") == 1
    assert str(d / "keys.json") in capsys.readouterr().err
    assert snapshot(d) == before


def test_simulate_itself_refuses_foreign_files(tmp_path):
    from jksim import scenario

    d = tmp_path / "d"
    (d / "flash").mkdir(parents=True)
    (d / "flash" / "config.json").write_text('{"device": "3fa9c21e"}')
    with pytest.raises(FileExistsError, match="not written by jalkal sim"):
        village.simulate(scenario.load("normal", days=1), d)
    assert (d / "flash" / "config.json").read_text() == '{"device": "3fa9c21e"}'


def test_a_folder_with_only_a_truth_file_is_not_a_run(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "truth.json").write_text('{"tz": "Asia/Kolkata", "villages": []}')
    (d / village.MARKER).write_text("not the simulator's")
    assert village.earlier_run(d) is None
    assert sim(d) == 1 and sim(d, "--force") == 1
    assert (d / "truth.json").read_text().startswith('{"tz"')


def test_sim_display_folder_of_other_files_is_refused(tmp_path, capsys):
    shots = tmp_path / "shots"
    shots.mkdir()
    (shots / "holiday.png").write_bytes(b"\x89PNG mine")
    assert sim(tmp_path / "d", "--display", str(shots)) == 1
    assert "holiday.png" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    assert (shots / "holiday.png").read_bytes() == b"\x89PNG mine"


def test_sim_secrets_are_owner_only_and_the_rest_shared(tmp_path, umask):
    d = tmp_path / "d"
    umask(0)
    assert sim(d) == 0
    assert mode(d / "keys.json") == 0o600
    assert mode(d / "flash" / "config.json") == 0o600
    assert mode(d / "truth.json") == 0o666 and mode(d / "villages.csv") == 0o666
    # a key file opened up by hand is owner-only again after the next run
    umask(0o022)
    os.chmod(d / "keys.json", 0o644)
    os.chmod(d / "flash" / "config.json", 0o644)
    assert sim(d) == 0
    assert mode(d / "keys.json") == 0o600
    assert mode(d / "flash" / "config.json") == 0o600


# --- jalkal export ---------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("store")
    assert sim(w / "sim") == 0
    db = w / "s.duckdb"
    with Store(db, load_keys(w / "sim" / "keys.json")) as s:
        files, _ = read_frames((str(w / "sim" / "sd"),))
        for b in batches(files, 500, False):
            s.ingest(b.data)
    return db


def export(db: Path, out: Path, *more: str) -> int:
    return main(["export", "--store", str(db), "--out", str(out), *more])


def test_export_replaces_an_earlier_export(store, tmp_path):
    out = tmp_path / "pq"
    assert export(store, out) == 0
    first = snapshot(out)
    assert first and all(k.startswith("date=") for k in first)
    assert export(store, out) == 1  # exists: only with --overwrite
    assert export(store, out, "--overwrite") == 0
    assert set(snapshot(out)) == set(first)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(store, empty, "--overwrite") == 0
    assert snapshot(empty).keys() == first.keys()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "pq"]


@pytest.mark.parametrize(
    "make",
    [
        lambda p: (p.mkdir(), (p / "thesis.docx").write_text("three years")),
        lambda p: p.write_text("a file"),
        lambda p: (
            p.mkdir(),
            (p / "date=2026-03-01").mkdir(),
            (p / "date=2026-03-01" / "notes.txt").write_text("mine"),
        ),
        lambda p: (
            p.mkdir(),
            (p / "date=x" / "device=y").mkdir(parents=True),
            (p / "date=x" / "device=y" / "data.csv").write_text("1,2"),
        ),
    ],
    ids=["folder", "file", "stray file", "not parquet"],
)
def test_export_never_replaces_what_is_not_an_export(store, tmp_path, capsys, make):
    out = tmp_path / "target"
    make(out)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert export(store, out, "--overwrite") == 1
    err = capsys.readouterr().err
    assert "not a jalkal export" in err and str(out) in err
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_export_files_get_the_usual_umask(store, tmp_path, umask):
    umask(0o002)
    assert export(store, tmp_path / "pq") == 0
    files = list((tmp_path / "pq").rglob("*.parquet"))
    assert files and {mode(f) for f in files} == {0o664}
    assert {mode(p) for p in (tmp_path / "pq").rglob("*") if p.is_dir()} == {0o775}
    assert mode(tmp_path / "pq") == 0o775


def test_export_into_a_missing_folder_is_one_line(store, tmp_path, capsys):
    assert export(store, tmp_path / "no" / "pq") == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# --- jalkal serve ----------------------------------------------------------------


@pytest.fixture
def keys(tmp_path) -> Path:
    k = tmp_path / "k.json"
    k.write_text(json.dumps({"devices": {"0a1b2c3d": {"key": "00" * 32}}}))
    k.chmod(0o600)  # serve refuses a keys file others may read
    return k


def test_serve_on_a_busy_port_leaves_no_new_store(tmp_path, keys, capsys):
    db = tmp_path / "new.duckdb"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["serve", "--store", str(db), "--keys", str(keys), "--http",
                f"127.0.0.1:{port}"]  # fmt: skip
        assert main(args) == 1
        assert "cannot listen" in capsys.readouterr().err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]
        # an existing store is never removed, nor changed
        with Store(db) as st:
            assert st.count() == 0
        before = snapshot(tmp_path)
        assert main(args) == 1
        assert snapshot(tmp_path) == before


def test_serve_that_fails_to_start_removes_only_a_store_it_made(
    tmp_path, keys, monkeypatch
):
    def broken(*a, **k):
        raise JalkalError("no MQTT client here")

    monkeypatch.setattr(serve, "MqttIngest", broken)
    db = tmp_path / "new.duckdb"
    args = ["serve", "--store", str(db), "--keys", str(keys), "--mqtt",
            "mqtt://127.0.0.1:1"]  # fmt: skip
    assert main(args) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]
    with Store(db) as st:
        assert st.count() == 0
    before = snapshot(tmp_path)
    assert main(args) == 1
    assert snapshot(tmp_path) == before


def test_a_store_is_never_made_of_another_file(tmp_path):
    import duckdb

    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE survey (village VARCHAR, wells INTEGER)")
    con.close()
    (tmp_path / "garbage").write_bytes(os.urandom(3000))
    (tmp_path / "empty").write_bytes(b"")
    before = snapshot(tmp_path)
    with pytest.raises(JalkalError, match="not a jalkal store"):
        Store(other)
    for name in ("garbage", "empty"):
        with pytest.raises(JalkalError, match="cannot open store"):
            Store(tmp_path / name)
    with pytest.raises(JalkalError, match="a folder"):
        Store(tmp_path)
    assert snapshot(tmp_path) == before


# --- atomic_write: one line for a path that cannot be written ---------------------


def put(data: bytes) -> Callable:
    return lambda f: f.write(data)


@pytest.mark.parametrize(
    "where, message",
    [
        (lambda t: t, "is a folder"),
        (lambda t: str(t / "new") + "/", "is a folder"),
        (lambda t: t / "no" / "such" / "r.csv", "folder .* does not exist"),
        (lambda t: t / "afile" / "r.csv", "is a file, not a folder"),
    ],
    ids=["folder", "trailing slash", "missing parent", "under a file"],
)
def test_atomic_write_path_problems_are_one_line(tmp_path, where, message):
    (tmp_path / "afile").write_text("a file")
    before = snapshot(tmp_path)
    target = where(tmp_path)
    with pytest.raises(JalkalError, match=message) as e:
        atomic_write(target, put(b"x"))
    assert "\n" not in str(e.value) and str(target).rstrip("/") in str(e.value)
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_atomic_write_read_only_target_and_folder(umask):
    umask(0o022)
    d = Path(tempfile.mkdtemp())
    try:
        os.chmod(d, 0o777)
        (d / "locked.csv").write_text("kept")
        os.chmod(d / "locked.csv", 0o444)
        (d / "ro").mkdir()
        os.chmod(d / "ro", 0o555)

        def attempt() -> None:
            for target in (d / "locked.csv", d / "ro" / "r.csv"):
                try:
                    atomic_write(target, put(b"new"))
                except JalkalError as e:
                    assert str(target) in str(e) and "read-only" in str(e)
                else:
                    raise AssertionError(f"{target} was written")

        as_someone_else(attempt)
        assert (d / "locked.csv").read_text() == "kept"
        assert sorted(p.name for p in d.iterdir()) == ["locked.csv", "ro"]
        assert list((d / "ro").iterdir()) == []
    finally:
        os.chmod(d / "ro", 0o755)
        os.chmod(d / "locked.csv", 0o644)
        for p in sorted(d.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() else p.unlink()
        d.rmdir()


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("yesterday's report")

    def full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(JalkalError, match="cannot write .*r.csv: No space left"):
        atomic_write(target, full)

    def refuses(f):
        raise JalkalError("nothing to write")

    with pytest.raises(JalkalError, match="nothing to write"):
        atomic_write(target, refuses)
    assert target.read_text() == "yesterday's report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


# --- modes: secrets owner-only, the rest shared ----------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_outputs_get_the_umask_and_secrets_stay_owner_only(tmp_path, umask, mask):
    umask(mask)
    atomic_write(tmp_path / "report.csv", put(b"a,b\n"))
    atomic_write(tmp_path / "keys.json", put(b"{}"), secret=True)
    assert mode(tmp_path / "report.csv") == 0o666 & ~mask
    assert mode(tmp_path / "keys.json") == 0o600
    # a replaced file keeps its mode; a secret is owner-only whatever it was
    os.chmod(tmp_path / "report.csv", 0o640)
    os.chmod(tmp_path / "keys.json", 0o644)
    atomic_write(tmp_path / "report.csv", put(b"a,b\n1,2\n"))
    atomic_write(tmp_path / "keys.json", put(b"{}"), secret=True)
    assert mode(tmp_path / "report.csv") == 0o640
    assert mode(tmp_path / "keys.json") == 0o600


def test_commands_write_reports_shared_and_keys_owner_only(tmp_path, umask):
    umask(0o022)
    d = tmp_path / "d"
    assert sim(d) == 0
    sd, reg, keys = str(d / "sd"), str(d / "villages.csv"), str(d / "keys.json")
    assert main(["report", sd, "--villages", reg, "--keys", keys, "-o",
                 str(tmp_path / "r.txt")]) == 0  # fmt: skip
    assert main(["decode", sd, "--keys", keys, "-o", str(tmp_path / "f.jsonl")]) == 0
    assert main(["encode", str(tmp_path / "f.jsonl"), "-o",
                 str(tmp_path / "f.bin")]) == 0  # fmt: skip
    for name in ("r.txt", "f.jsonl", "f.bin"):
        assert mode(tmp_path / name) == 0o644, name
    p = tmp_path / "district"
    assert provision(p) == 0
    assert mode(p / "keys.json") == 0o600 and mode(p / "config.json") == 0o600
    assert mode(p / "villages.csv") == 0o644


def test_a_pipe_or_device_is_written_not_replaced(tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    atomic_write(fifo, put(b"through the pipe"))
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]
    as_someone_else(lambda: atomic_write(os.devnull, put(b"gone")))
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
