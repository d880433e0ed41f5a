"""Store failures told as they are: a full disk (RLIMIT_FSIZE), a damaged store file,
a store another process holds, and /v1/health while commits fail."""

from __future__ import annotations

import http.client
import json
import resource
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from uplink_util import DEV, KEY, frames

from jalkal.errors import JalkalError
from jalkal.ingest.httpd import IngestHTTPServer
from jalkal.ingest.log import Log
from jalkal.ingest.store import MAX_BODY, Store

KEYS = {f"{DEV:08x}": KEY}
TESTS = Path(__file__).parent

# a child fills its store under a file size limit until a COMMIT fails
FILL = textwrap.dedent(
    """
    import json, resource, signal, sys
    sys.path.insert(0, sys.argv[2])
    from uplink_util import DEV, KEY, frames
    from jalkal.ingest.store import Store

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    st = Store(sys.argv[1], {f"{DEV:08x}": KEY})
    fr = frames(30000)
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, resource.RLIM_INFINITY))
    out = {}
    for i in range(0, len(fr), 100):
        before = st.count()
        try:
            res = st.ingest(b"".join(fr[i : i + 100]))
        except Exception as e:
            out = {"raised": repr(e)}
            break
        if res.acked < 100:
            out = {"json": res.to_json(), "status": res.status(),
                   "failure": st.failure, "before": before, "after": st.count()}
            break
    print(json.dumps(out))
    """
)


def test_disk_full_acks_nothing_and_tells_the_real_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", FILL, str(tmp_path / "s.duckdb"), str(TESTS)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "raised" not in out, out
    doc = out["json"]
    assert doc["acked"] == [] and doc["acked_bytes"] == 0 and doc["stored"] == 0
    assert out["after"] == out["before"]  # nothing of the failed batch was kept
    assert out["status"] == 503 and doc["error"] == "store_error"
    assert "File too large" in doc["message"], doc
    assert "no transaction is active" not in doc["message"]
    assert out["failure"] == doc["message"]


def _store_with_frames(path: Path) -> None:
    fr = frames(3000)
    with Store(path, KEYS) as st:
        for i in range(0, len(fr), 500):
            assert st.ingest(b"".join(fr[i : i + 500])).stored == 500


@pytest.mark.parametrize("damage", ["garbage", "checksum", "truncated"])
def test_damaged_store_is_named_damaged(tmp_path, damage):
    path = tmp_path / "s.duckdb"
    if damage == "garbage":
        path.write_bytes(b"not a database, just a block of text\n" * 500)
    else:
        _store_with_frames(path)
        data = bytearray(path.read_bytes())
        if damage == "checksum":  # DuckDB: "... in block at location ..."
            data[4096 + 100 : 4096 + 164] = b"\xff" * 64
        else:
            data = data[:5000]
        path.write_bytes(bytes(data))
    size = path.stat().st_size
    with pytest.raises(JalkalError) as e:
        Store(path, KEYS).close()
    msg = str(e.value)
    assert "not a DuckDB file or damaged" in msg, msg
    assert "restore it from a backup or move it aside" in msg
    assert "in use" not in msg
    assert path.stat().st_size == size  # left as it was


def test_store_held_by_another_process_names_it(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path, KEYS).close()
    hold = (
        "import sys\nfrom jalkal.ingest.store import Store\n"
        "st = Store(sys.argv[1])\nprint('open', flush=True)\nsys.stdin.read()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", hold, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "open"
        with pytest.raises(JalkalError) as e:
            Store(path, KEYS)
        msg = str(e.value)
        assert f"is in use by another process (PID {p.pid})" in msg, msg
        assert "stop it first" in msg and "damaged" not in msg
    finally:
        p.communicate("", timeout=30)


def _get(port: int, method: str, path: str, body: bytes = b"") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/octet-stream"}
        conn.request(method, path, body=body or None, headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_health_follows_the_store(tmp_path):
    st = Store(tmp_path / "s.duckdb", KEYS)
    httpd = IngestHTTPServer(("127.0.0.1", 0), Log(-1), MAX_BODY)
    httpd.store = st
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    fr = frames(4000)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        assert _get(port, "POST", "/v1/frames", b"".join(fr[:10]))[0] == 200
        assert _get(port, "GET", "/v1/health")[0] == 200
        wal = st.path.with_name(st.path.name + ".wal")
        room = max(st.path.stat().st_size, wal.stat().st_size) + 4096
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, hard))
        try:
            status, doc = _get(port, "POST", "/v1/frames", b"".join(fr[10:3000]))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert status == 503 and doc["acked"] == [], doc
        assert "File too large" in doc["message"]
        status, h = _get(port, "GET", "/v1/health")
        assert status == 503 and h["ok"] is False and h["error"] == "store_error"
        assert h["message"] == doc["message"] and h["frames"] == 10
        # the disk has room again: the next COMMIT works, and so does health
        status, doc = _get(port, "POST", "/v1/frames", b"".join(fr[10:3000]))
        assert status == 200 and doc["stored"] == 2990, doc
        status, h = _get(port, "GET", "/v1/health")
        assert status == 200 and h["ok"] is True and h["frames"] == 3000
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
        httpd.shutdown()
        httpd.server_close()
        st.close()
