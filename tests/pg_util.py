"""A private PostgreSQL for the tests: a cluster made with initdb in a temporary
folder, listening on a loopback port (and a socket in that folder), run as the
`postgres` user when the tests run as root (PostgreSQL refuses to run as root), and
stopped and removed afterwards. No system service is touched.

    with PrivatePostgres() as pg:
        psycopg.connect(pg.url)

Its folder is a new one under the system's temporary folder (the `postgres` user
cannot enter pytest's root-only tmp_path), removed when the cluster stops.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_VERSIONS = ("17", "16", "15")


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server program (initdb, pg_ctl) from PATH or Debian's
    /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    for v in PG_VERSIONS:
        p = Path(f"/usr/lib/postgresql/{v}/bin/{name}")
        if p.is_file():
            return str(p)
    return None


def available() -> str | None:
    """None when a private cluster can be made here, else why not."""
    if pg_bin("initdb") is None or pg_bin("pg_ctl") is None:
        return "PostgreSQL server programs (initdb, pg_ctl) not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """initdb + pg_ctl start in `root`; `url` is a libpq URL for the superuser."""

    def __init__(self, user: str = "jalkal"):
        self.root = Path(tempfile.mkdtemp(prefix="jalkal-pg-"))
        self.data = self.root / "pgdata"
        self.sock = self.root / "pgsock"
        self.user = user
        self.port = _free_port()
        self.started = False
        self._as: dict[str, object] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            uid, gid = pw.pw_uid, pw.pw_gid

            def demote() -> None:
                os.setgid(gid)
                os.setuid(uid)

            self._as = {"preexec_fn": demote}
            self._owner: tuple[int, int] | None = (uid, gid)
        else:
            self._owner = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str], timeout: float = 60) -> None:
        r = subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, cwd=self.root,
            env={**os.environ, "LC_ALL": "C"}, **self._as,  # type: ignore[arg-type]
        )  # fmt: skip
        if r.returncode:
            raise RuntimeError(f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")

    def start(self) -> PrivatePostgres:
        self.sock.mkdir(exist_ok=True)
        if self._owner is not None:
            for p in (self.root, self.sock):
                os.chown(p, *self._owner)
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        assert initdb and pg_ctl, available()
        self._run([initdb, "-D", str(self.data), "-U", self.user, "-A", "trust",
                   "-E", "UTF8", "--no-sync"])  # fmt: skip
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.sock} -c fsync=on "
            "-c max_connections=60 -c shared_buffers=32MB"
        )
        self._run([pg_ctl, "-D", str(self.data), "-o", opts, "-w", "-t", "60",
                   "-l", str(self.root / "pg.log"), "start"])  # fmt: skip
        self.started = True
        return self

    def stop(self, mode: str = "fast") -> None:
        if not self.started:
            return
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl
        try:
            self._run([pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])
        finally:
            self.started = False

    def kill9(self) -> None:
        """kill -9 the postmaster (a crash): its children go with it."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.started = False

    def restart(self) -> None:
        """Start again on the same data and port (after stop or kill9)."""
        pg_ctl = pg_bin("pg_ctl")
        assert pg_ctl
        pid = self.data / "postmaster.pid"
        if pid.exists() and not self.started:
            pid.unlink()  # left by kill -9; the server checks no process has it
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.sock}"
        )
        self._run([pg_ctl, "-D", str(self.data), "-o", opts, "-w", "-t", "60",
                   "-l", str(self.root / "pg.log"), "start"])  # fmt: skip
        self.started = True

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
