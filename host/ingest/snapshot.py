"""Reports while `jalkal serve` runs: the frames table read in one DuckDB
transaction inside the server and sent as an Arrow IPC stream.

DuckDB lets one process open a store file, so a report cannot open the file the
server holds. The server therefore answers ``GET /v1/snapshot`` on its HTTP
listener: one read transaction of its own (a second DuckDB connection of the same
database, so ingestion goes on meanwhile) sees every frame committed before the
request arrived, hence every frame acknowledged before the report started, and
nothing half-written. The answer is the table in (device, boot, seq) order as an
Arrow IPC stream (``application/vnd.apache.arrow.stream``, chunked), with the row
count in ``X-Jalkal-Frames`` so a cut stream is noticed; ``?columns=a,b`` selects
columns (default all).

The listener faces the boards, so the route is closed to them:

* a token of 256 random bits, made at each start and written with the URL, the PID
  and the store's path to ``<store>.serve.json`` beside the store, mode 0600 (only
  the server's user can read it), removed at a clean stop (a file left by kill -9
  names a PID that no longer runs: readers ignore it, the next start replaces it);
  the request must carry ``Authorization: Bearer <token>``, compared in constant
  time: none is answered 401 ``unauthorized``, a wrong one 403 ``forbidden``;
* only from this machine: the loopback addresses, or the server's own address on
  that connection; more networks only when ``$JALKAL_SNAPSHOT_FROM`` lists them
  (comma-separated, e.g. ``10.0.0.0/8``): anything else is 403 ``forbidden``
  before the token is looked at.

Every refusal is the same JSON object as any other answer of the server. The
reading side (the sidecar found, the stream read) is host/reports/live.py; the
names of the wire (path, header, sidecar suffix) are pinned equal there by
tests/test_report_while_serving.py."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import JalkalError
from .ack import refused

SNAPSHOT_PATH = "/v1/snapshot"
SIDECAR_SUFFIX = ".serve.json"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
FRAMES_HEADER = "X-Jalkal-Frames"
ALLOW_ENV = "JALKAL_SNAPSHOT_FROM"
BATCH_ROWS = 65536  # rows per Arrow record batch (one HTTP chunk each)
WRITE_TIMEOUT_S = 30.0  # the reader must take each chunk within this


def sidecar_path(store: str | Path) -> Path:
    """Where a running server says how to reach it: beside the store file."""
    p = Path(store)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def allowed_networks(text: str | None) -> list[Any]:
    """The networks of $JALKAL_SNAPSHOT_FROM (comma-separated addresses or CIDRs)."""
    out = []
    for part in (text or "").split(","):
        if part.strip():
            try:
                out.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise JalkalError(
                    f"${ALLOW_ENV}: {part.strip()!r} is not an address or network "
                    "(give e.g. 10.0.0.0/8,192.168.1.7)"
                )
    return out


def cert_pin(cert: str) -> str:
    """SHA-256 (hex) of the first certificate of a PEM file: what a reader pins."""
    text = Path(cert).read_text()
    end = "-----END CERTIFICATE-----"
    first = text[: text.index(end) + len(end)]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest()


@dataclass
class Access:
    """Who may read the snapshot: the token, and networks besides this machine."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    allow: list[Any] = field(default_factory=list)
    sidecar: Path | None = None

    def refusal(
        self, peer: str, local: str, auth: str | None
    ) -> tuple[int, str, str] | None:
        """None if the request may be answered, else (status, reason, message)."""
        try:
            ip = ipaddress.ip_address(peer.split("%", 1)[0])
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
        except ValueError:
            ip = None
        here = ip is not None and (ip.is_loopback or peer == local)
        if not here and not any(ip is not None and ip in n for n in self.allow):
            return 403, "forbidden", (
                f"{SNAPSHOT_PATH} answers this machine only (or the networks in "
                f"${ALLOW_ENV} where the server runs)"
            )  # fmt: skip
        scheme, _, given = (auth or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return 401, "unauthorized", (
                f"{SNAPSHOT_PATH} needs Authorization: Bearer <token>; the token is "
                f"in the server's {SIDECAR_SUFFIX} file beside the store"
            )  # fmt: skip
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return (
                403,
                "forbidden",
                "wrong token (the server makes a new one at each start)",
            )
        return None


def publish(
    store: str | Path, url: str, tls_cert: str | None = None, env: str | None = None
) -> Access:
    """A new token and the sidecar file saying where and how to read the snapshot,
    written atomically with mode 0600 (a file a crashed server left is replaced:
    the store's lock, held by now, says no other server runs on it)."""
    if "://" in str(store):  # PostgreSQL: readers open it themselves
        return Access()
    acc = Access(
        allow=allowed_networks(os.environ.get(ALLOW_ENV) if env is None else env)
    )
    path = sidecar_path(store)
    u = urlsplit(url)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
        u.hostname or "", u.hostname
    )
    shown = f"[{host}]" if host and ":" in host else host
    doc = {
        "url": f"{u.scheme}://{shown}:{u.port}{SNAPSHOT_PATH}",
        "pid": os.getpid(),
        "token": acc.token,
        "store": str(Path(store).resolve()),
    }
    if tls_cert:
        doc["tls_sha256"] = cert_pin(tls_cert)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(doc, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise JalkalError(f"cannot write {path}: {e.strerror or e}")
    acc.sidecar = path
    return acc


def withdraw(acc: Access | None) -> None:
    """Remove the sidecar at a clean stop, if it is still this server's."""
    if acc is None or acc.sidecar is None:
        return
    try:
        doc = json.loads(acc.sidecar.read_text())
        if hmac.compare_digest(str(doc.get("token", "")), acc.token):
            acc.sidecar.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _json(handler: Any, status: int, reason: str, message: str) -> None:
    data = (
        json.dumps(refused(reason, message).to_json(), separators=(",", ":")) + "\n"
    ).encode()
    handler.answered = True
    handler.close_connection = True
    handler.connection.settimeout(WRITE_TIMEOUT_S)
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    if status == 401:
        handler.send_header("WWW-Authenticate", 'Bearer realm="jalkal-snapshot"')
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(data)


class _Chunks:
    """A file-like sink for the Arrow writer: bytes gathered, sent as HTTP chunks."""

    def __init__(self, wfile: Any):
        self.wfile, self.buf, self.closed = wfile, bytearray(), False

    def write(self, b: Any) -> int:
        self.buf += bytes(b)
        return len(b)

    def flush(self) -> None:
        if self.buf:
            self.wfile.write(b"%x\r\n" % len(self.buf) + bytes(self.buf) + b"\r\n")
            self.buf.clear()

    def close(self) -> None:
        self.closed = True


def answer(handler: Any, acc: Access | None) -> None:
    """GET /v1/snapshot on the server's HTTP handler (httpd.Handler)."""
    log = handler.server.log
    who = handler.client_address[0]
    if acc is None:
        _json(handler, 404, "not_found", f"no {SNAPSHOT_PATH} on this server")
        return
    local = str(handler.connection.getsockname()[0])
    bad = acc.refusal(who, local, handler.headers.get("Authorization"))
    if bad is not None:
        _json(handler, *bad)
        log(f"http {who}: snapshot refused: {bad[1]}", 0)
        return
    con = getattr(handler.server.store, "con", None)
    if con is None:
        _json(
            handler,
            404,
            "not_found",
            "this store is read directly, not through the server",
        )
        return
    import pyarrow as pa

    with handler.server.store.lock:  # a second connection to the same database
        cur = con.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")  # one read: everything committed before it
        have = [str(r[0]) for r in cur.execute("DESCRIBE frames").fetchall()]
        q = parse_qs(urlsplit(handler.path).query).get("columns", [""])[0]
        want = [c for c in q.split(",") if c] or have
        unknown = sorted(set(want) - set(have))
        if unknown:
            _json(
                handler, 400, "bad_request", f"no column {', '.join(unknown)} in frames"
            )
            return
        n = int(cur.execute("SELECT count(*) FROM frames").fetchall()[0][0])
        cols = ", ".join('"' + c + '"' for c in want)
        rel = cur.sql(f"SELECT {cols} FROM frames ORDER BY device, boot, seq")
        reader = rel.to_arrow_reader(BATCH_ROWS)
        handler.answered = True
        handler.close_connection = True
        handler.connection.settimeout(WRITE_TIMEOUT_S)
        handler.send_response(200)
        handler.send_header("Content-Type", ARROW_STREAM)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header(FRAMES_HEADER, str(n))
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        sink = _Chunks(handler.wfile)
        with pa.ipc.new_stream(sink, reader.schema) as w:
            sink.flush()
            for batch in reader:
                w.write_batch(batch)
                sink.flush()
        sink.flush()
        handler.wfile.write(b"0\r\n\r\n")
        log(f"http {who}: snapshot of {n} frames sent", 1)
    except OSError:
        pass  # the reader went away
    except Exception as e:  # never let one request stop the server
        log(f"http {who}: snapshot failed: {e!r}", 0)
        if not handler.answered:
            _json(
                handler,
                500,
                "internal_error",
                str(e).splitlines()[0] if str(e) else repr(e),
            )
    finally:
        try:
            cur.execute("ROLLBACK")
        except Exception:
            pass
        cur.close()
