"""A throwaway Milvus Lite server for the tests and benchmarks: `milvus-lite server` (the gRPC server
the `milvus-lite` package ships) on a free loopback port, with its data in a folder, reached through
the same pymilvus client a cluster is. `kill9()` kills it as a crash would; `start()` again brings it
back on the same port and data."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY_S = 90.0  # bound on start-up: the server imports pyarrow, grpc and faiss first (2-5 s idle, more on a busy machine)


def available() -> str | None:
    """None when a server can be started here, else why not (for a skip reason)."""
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ModuleNotFoundError as e:
        return f"{e.name} is not installed: pip install '.[milvus,test-milvus]'"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MilvusLiteServer:
    """`MilvusLiteServer().start()`; `uri(collection)`, `kill9()`, `restart()`, `stop()`."""

    def __init__(self, root: str | Path | None = None, port: int | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="dfmilvus-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.log = self.root / "milvus.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def uri(self, collection: str) -> str:
        return f"milvus://127.0.0.1:{self.port}/{collection}"

    def start(self) -> "MilvusLiteServer":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data), "--host", "127.0.0.1",
                 "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Until a client lists the collections, for at most READY_S."""
        import logging

        from pymilvus import MilvusClient

        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
        deadline = time.monotonic() + READY_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited with {self.proc.returncode}:\n{self.log.read_text(errors='replace')[-2000:]}")
            try:
                client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", timeout=2)
                client.list_collections()
                client.close()
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"milvus-lite server not ready after {READY_S:.0f} s:\n{self.log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.kill9()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None
