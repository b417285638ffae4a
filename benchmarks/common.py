"""What every benchmark prints first: the command, the machine and the library versions."""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    """Date, command, machine and versions. torch is optional (the light install has none): without
    it the record says so and `torch_threads` is None."""
    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    try:
        import torch

        versions["torch"], torch_threads = torch.__version__, torch.get_num_threads()
    except ImportError:
        versions["torch"], torch_threads = "not installed", None
    try:
        import faiss

        versions["faiss"] = faiss.__version__
    except ImportError:
        pass
    from dupfinder import __version__

    versions["dupfinder"] = __version__
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [os.path.relpath(sys.executable), *sys.argv]),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu_model()})",
        "torch_threads": torch_threads,
        "versions": versions,
    }


def set_threads(threads: int) -> None:
    """torch (when installed) and FAISS use `threads` CPU threads, from now on (dupfinder's own rule)."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (loaded now, so the count applies now and `environment()` records it)
    from dupfinder.engine import set_threads as engine_threads

    engine_threads(threads)


def print_environment(env: dict) -> None:
    print(f"# {env['date']}")
    print(f"# command: {env['command']}")
    print(f"# machine: {env['machine']}, torch threads {env['torch_threads'] if env['torch_threads'] is not None else '-'}")
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))


def timed(fn, *args, **kw) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - start, result
