"""A store held by a running `jalkal serve`: its frames read through the server.

DuckDB lets one process open a store file. A server with an HTTP listener writes
``<store>.serve.json`` beside the store (mode 0600: URL, PID, a token made at its
start; host/ingest/snapshot.py) and answers ``GET /v1/snapshot`` with the frames
table of one read transaction as an Arrow IPC stream: every frame committed before
the request. ``find`` reads that file when it is usable (ours, not open to others,
naming this store and a PID that runs); ``fetch`` reads the snapshot. The names of
the wire are the server's (tests pin them equal)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pyarrow as pa

from jkproto import link

from ..errors import JalkalError

SNAPSHOT_PATH = "/v1/snapshot"
SIDECAR_SUFFIX = ".serve.json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
FRAMES_HEADER = "X-Jalkal-Frames"
TIMEOUT_S = 60.0  # between two reads of the answer


@dataclass
class Server:
    """A running server's answer to 'where is the snapshot' (its sidecar file)."""

    url: str
    pid: int
    token: str
    sidecar: Path
    tls_sha256: str | None = None


class Unreachable(Exception):
    """The sidecar's server does not answer (a PID reused after a kill -9)."""


def sidecar_path(store: str | Path) -> Path:
    p = Path(store)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    except OSError:
        return False
    return True


def find(store: str | Path) -> Server | None:
    """The server holding this store, from its sidecar file; None when there is
    none, it is stale (its PID no longer runs: a server killed with -9), names
    another store, or is not this user's own private file (anyone who could write
    it could point the report at a server of theirs)."""
    path = sidecar_path(store)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            return None
        if hasattr(os, "getuid") and st.st_uid not in (os.getuid(), 0):
            return None
        doc = json.loads(path.read_text())
        pid, url, token = int(doc["pid"]), str(doc["url"]), str(doc["token"])
        same = Path(str(doc["store"])) == Path(store).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or not _alive(pid) or pid == os.getpid():
        return None
    pin = doc.get("tls_sha256")
    return Server(url, pid, token, path, str(pin) if pin else None)


def _connect(srv: Server) -> http.client.HTTPConnection:
    u = urlsplit(srv.url)
    host, port = u.hostname or "127.0.0.1", u.port
    if u.scheme != "https":
        return http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    # the server's own certificate, pinned by the sidecar (we reach it by address)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    con = http.client.HTTPSConnection(host, port, timeout=TIMEOUT_S, context=ctx)
    con.connect()
    sock = con.sock
    der = None
    if isinstance(sock, ssl.SSLSocket):
        der = sock.getpeercert(binary_form=True)
    if not der or hashlib.sha256(der).hexdigest() != srv.tls_sha256:
        con.close()
        raise JalkalError(
            f"{srv.url}: the server's certificate is not the one {srv.sidecar} names"
        )
    return con


def _reach(srv: Server) -> http.client.HTTPConnection:
    """A connection to the server: Unreachable when nothing answers there,
    JalkalError for any other failure."""
    try:
        return _connect(srv)
    except (ConnectionRefusedError, ConnectionResetError) as e:
        raise Unreachable(str(e))
    except OSError as e:
        raise JalkalError(f"cannot reach {srv.url}: {e.strerror or e}")


def count(srv: Server) -> int:
    """How many frames the server has committed, from its GET /v1/health (one
    count in the server, nothing of the frames sent): for a reader that only
    wants to know whether there is anything new. Raises as fetch does."""
    con = _reach(srv)
    try:
        con.request("GET", link.HEALTH_PATH)
        res = con.getresponse()
        doc = json.loads(res.read(65536))
    except ConnectionRefusedError as e:
        raise Unreachable(str(e))
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise JalkalError(f"reading the health of {srv.url} failed: {e}")
    finally:
        con.close()
    n = doc.get(link.FRAMES) if isinstance(doc, dict) else None
    if res.status != 200 or not isinstance(n, int):
        msg = doc.get(link.MESSAGE) if isinstance(doc, dict) else None
        raise JalkalError(f"{srv.url} answered {res.status}: {msg or doc}")
    return n


def fetch(srv: Server, columns: list[str] | None = None) -> pa.Table:
    """The snapshot: every frame the server committed before this request, in
    (device, boot, seq) order. Raises Unreachable when nothing answers at the
    sidecar's address, JalkalError for any other failure."""
    u = urlsplit(srv.url)
    target = u.path or SNAPSHOT_PATH
    if columns:
        target += "?columns=" + quote(",".join(columns), safe=",")
    con = _reach(srv)
    try:
        con.request("GET", target, headers={"Authorization": f"Bearer {srv.token}"})
        res = con.getresponse()
        if res.status != 200:
            body = res.read(65536)
            try:
                msg = json.loads(body).get("message") or body.decode(errors="replace")
            except ValueError:
                msg = body.decode(errors="replace")
            raise JalkalError(f"{srv.url} answered {res.status}: {msg}")
        if res.getheader("Content-Type", "").split(";")[0] != ARROW_STREAM:
            raise JalkalError(f"{srv.url} did not answer an Arrow stream")
        want = int(res.getheader(FRAMES_HEADER) or -1)
        tb = pa.ipc.open_stream(res).read_all()
    except ConnectionRefusedError as e:
        raise Unreachable(str(e))
    except (OSError, http.client.HTTPException, pa.ArrowInvalid) as e:
        raise JalkalError(f"reading the snapshot from {srv.url} failed: {e}")
    finally:
        con.close()
    if tb.num_rows != want:
        raise JalkalError(
            f"the snapshot from {srv.url} was cut: {tb.num_rows} of {want} frames"
        )
    return tb


def read(
    store: str | Path, columns: list[str] | None = None
) -> tuple[pa.Table, str] | None:
    """The snapshot of a store a running server holds, and the one line to say
    about it; None when no running server holds it (open the file then)."""
    srv = find(store)
    if srv is None:
        return None
    t0 = time.monotonic()
    try:
        tb = fetch(srv, columns)
    except Unreachable:
        return None
    took = time.monotonic() - t0
    line = (
        f"store {store} is held by jalkal serve (PID {srv.pid}): read its snapshot "
        f"of {tb.num_rows:,} frames (all committed before this started) from "
        f"{srv.url} in {took:.1f} s"
    )
    return tb, line


def busy_hint(store: str | Path) -> str:
    """What to say when the store is locked and no usable sidecar says by whom."""
    side = sidecar_path(store)
    why = (
        f"{side.name} names no running server this user may read"
        if side.exists()
        else "a jalkal serve with an HTTP listener writes it"
    )
    return (
        f"; reports read a running server's snapshot through {side.name} "
        f"({why}); a server without --http (MQTT only) has none: restart it with "
        "--http 127.0.0.1:0 to report while it runs"
    )
