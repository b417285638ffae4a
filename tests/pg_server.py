"""A throwaway PostgreSQL server for the tests and benchmarks: the binaries (with pgvector) that the
`pgserver` package ships, in a temp folder, on a loopback port and a Unix socket.

Superuser `postgres` with a password over TCP (so a wrong password can be tested), trust over the
socket. Started as a process group of its own, so `kill9()` kills the postmaster and every backend at
once, as a crash would. PostgreSQL refuses to run as root: as root the server runs as the OS user
`pgserver`, created with `useradd` when missing (what pgserver itself does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PASSWORD = "s3cret-pw"
OS_USER = "pgserver"


def binaries() -> Path | None:
    """The folder of `postgres`, `initdb`, `pg_ctl`: $DUPFINDER_PG_BIN, else the pgserver package's, else None."""
    if os.environ.get("DUPFINDER_PG_BIN"):
        return Path(os.environ["DUPFINDER_PG_BIN"])
    try:
        from pgserver._commands import POSTGRES_BIN_PATH
    except Exception:  # noqa: BLE001  (not installed, or its import fails: the tests say why they skip)
        return None
    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """`PgServer().start()`; `uri(db)`, `admin_uri(db)`, `psql(sql)`, `kill9()`, `restart()`, `stop()`."""

    def __init__(self, root: str | Path | None = None, bin_dir: Path | None = None, settings: dict | None = None):
        self.bin = bin_dir or binaries()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL binaries: pip install pgserver, or set DUPFINDER_PG_BIN")
        self.root = Path(root or tempfile.mkdtemp(prefix="dfpg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.user = OS_USER if os.geteuid() == 0 else None
        # fsync guards against an OS crash, not a killed server: off, for speed
        self.settings = {"listen_addresses": "127.0.0.1", "fsync": "off", "max_connections": "50", "shared_buffers": "128MB",
                         **(settings or {})}

    # -------------------------------------------------------------- as root, a user to run it as

    def _prepare_root(self) -> None:
        import pwd

        try:
            entry = pwd.getpwnam(OS_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", OS_USER],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(OS_USER)
        for path in (self.root, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        # the server reads its binaries and libraries through every folder above them
        def allow(path: Path, bits: int) -> None:
            mode = path.stat().st_mode
            if mode & bits != bits:
                path.chmod((mode | bits) & 0o7777)

        for top in (self.bin.parent, self.root):
            for p in (top, *top.parents):
                allow(p, 0o055)
        for dirpath, _, filenames in os.walk(self.bin.parent):
            allow(Path(dirpath), 0o055)
            for name in filenames:
                path = Path(dirpath) / name
                if not path.is_symlink():
                    allow(path, 0o055 if path.stat().st_mode & 0o100 else 0o044)

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(args, check=True, capture_output=True, text=True, user=self.user, **kw)

    # -------------------------------------------------------------- life cycle

    def start(self) -> "PgServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.user:
            self._prepare_root()
        if not (self.data / "PG_VERSION").exists():
            pwfile = self.root / "pw"
            pwfile.write_text(PASSWORD + "\n")
            if self.user:
                shutil.chown(pwfile, self.user)
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--pwfile", str(pwfile),
                       "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-instructions"])
            pwfile.unlink()
        self._spawn()
        return self

    def _spawn(self) -> None:
        log = open(self.log, "ab")
        if self.user:
            shutil.chown(self.log, self.user)
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.socket_dir),
             *(arg for k, v in self.settings.items() for arg in ("-c", f"{k}={v}"))],
            stdout=log, stderr=log, user=self.user, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            r = subprocess.run([str(self.bin / "pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", "-q"])
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start in 60 s:\n{self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        """SIGKILL to the postmaster and all its backends at once, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            # PostgreSQL 18's children leave the postmaster's process group, so they are found by parent
            os.kill(self.proc.pid, signal.SIGSTOP)  # no new children while they are listed
            children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
            for pid in [int(c) for c in children] + [self.proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()

    def restart(self) -> None:
        """Start again on the same port and folder (after `kill9` this runs crash recovery)."""
        self.stop()
        self._spawn()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -------------------------------------------------------------- connecting

    def uri(self, db: str = "postgres", table: str | None = None, user: str = "postgres", password: str | None = PASSWORD) -> str:
        """A TCP URI with a password, as a user would give --index."""
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}" + (f"?table={table}" if table else "")

    def socket_uri(self, db: str = "postgres", table: str | None = None) -> str:
        """A Unix-socket URI (trust: no password)."""
        return f"postgresql://postgres@/{db}?host={self.socket_dir}&port={self.port}" + (f"&table={table}" if table else "")

    def psql(self, sql: str, db: str = "postgres") -> str:
        r = subprocess.run([str(self.bin / "psql"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip()

    def create_database(self, name: str, vector: bool = True) -> None:
        self.psql(f"CREATE DATABASE {name}")
        if vector:
            self.psql("CREATE EXTENSION vector", db=name)

    def __enter__(self) -> "PgServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


def probe() -> str | None:
    """None when these binaries' pgvector computes a 256-d inner product here; else the server log's
    line on the backend that died. A prebuilt pgvector may use instructions this CPU lacks: its
    backend then dies of SIGILL. Any other failure is raised: it is not the CPU's."""
    with PgServer() as server:
        v = "[" + ",".join(["0.5"] * 256) + "]"
        try:
            server.psql(f"CREATE EXTENSION IF NOT EXISTS vector; SELECT '{v}'::vector <#> '{v}'::vector")
            return None
        except RuntimeError:
            died = [line for line in server.log.read_text().splitlines() if "terminated by signal" in line]
            if not died:
                raise
            return died[0]


if __name__ == "__main__":  # python tests/pg_server.py --probe: exit 0 if pgvector works on this CPU
    import sys

    if sys.argv[1:] != ["--probe"]:
        sys.exit("usage: python tests/pg_server.py --probe")
    why = probe()
    print(f"{binaries()}: pgvector works here" if why is None else f"{binaries()}: pgvector fails here: {why}")
    sys.exit(0 if why is None else 3)
