"""A progress bar on stderr that shows a rate and extra fields, and stays silent when not a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    """`update(n, loss=0.31)` advances the bar; `close()` ends the line. Silent unless stderr is a tty
    (or `force`), so logs and pipes stay clean.
    """

    def __init__(self, total: int | None, label: str = "", unit: str = "it", force: bool = False, stream=None):
        self.total, self.label, self.unit = total, label, unit
        self.stream = stream or sys.stderr
        self.enabled = force or self.stream.isatty()
        self.done = 0
        self.fields: dict[str, float] = {}
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def update(self, n: int = 1, **fields: float) -> None:
        self.done += n
        self.fields.update(fields)
        now = time.perf_counter()
        if self.enabled and (now - self.last_draw > 0.2 or self.done == self.total):
            self.last_draw = now
            self.draw(now)

    def draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [self.label] if self.label else []
        if self.total:
            filled = int(30 * self.done / self.total)
            parts.append(f"[{'#' * filled}{'-' * (30 - filled)}] {self.done:,}/{self.total:,}")
            if rate > 0 and self.done < self.total:
                parts.append(f"eta {int((self.total - self.done) / rate)}s")
        else:
            parts.append(f"{self.done:,}")
        parts.append(f"{rate:,.1f} {self.unit}/s")
        parts += [f"{k} {v:.4g}" for k, v in self.fields.items()]
        self.stream.write("\r" + "  ".join(parts) + "\033[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
