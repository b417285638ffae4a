"""A real `dupfinder serve` process on a free loopback port, for the HTTP and browser tests, over a
small index of tests/data/pairs.csv built with the shipped model."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

DATA = Path(__file__).parent / "data"
KEY = "test-key-0123"
READY_S = 60.0  # bound on start-up: the engine loads a model and warms its kernel first


def pairs_questions() -> list[tuple[str, str]]:
    """(id, text) of every question of tests/data/pairs.csv, once each: q<qid>."""
    out: dict[str, str] = {}
    with open(DATA / "pairs.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(f"q{row['qid1']}", row["question1"])
            out.setdefault(f"q{row['qid2']}", row["question2"])
    return list(out.items())


def build_index(directory: Path) -> int:
    """The pairs questions indexed at `directory` with the shipped model; returns the count."""
    from dupfinder.engine import Engine
    from dupfinder.store.base import Question

    with Engine.for_writing(directory) as engine:
        return engine.add([Question(i, t, "pairs.csv") for i, t in pairs_questions()]).count


class Server:
    """`python -m dupfinder serve --port 0` on `index`; the address is read from its start-up line."""

    def __init__(self, index: Path, home: Path, key: str | None = KEY, extra: list[str] | None = None):
        env = {k: v for k, v in os.environ.items() if k not in ("DUPFINDER_INDEX", "DUPFINDER_MODEL", "DUPFINDER_API_KEY")}
        env["DUPFINDER_HOME"] = str(home)
        if key is not None:
            env["DUPFINDER_API_KEY"] = key
        self.key = key
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dupfinder", "serve", "--index", str(index), "--port", "0", *(extra or [])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.url = self._wait_for_address()
        threading.Thread(target=self._drain, daemon=True).start()  # keep reading so the pipe never fills
        self._wait_healthy()

    def _wait_for_address(self) -> str:
        found: list[str] = []

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    found.append(m.group(1))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(READY_S)
        if not found:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "".join(self.log))
        return found[0]

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + READY_S
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the server never answered /healthz:\n" + "".join(self.log))
            time.sleep(0.05)

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
