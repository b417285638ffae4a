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
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
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
        "torch_threads": torch.get_num_threads(),
        "versions": versions,
    }


def print_environment(env: dict) -> None:
    print(f"# {env['date']}")
    print(f"# command: {env['command']}")
    print(f"# machine: {env['machine']}, torch threads {env['torch_threads']}")
    print("# versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))


def timed(fn, *args, **kw) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - start, result
