"""Request counts and latency histograms by route, written in Prometheus' text format by hand (a
few counters do not need a client library)."""

from __future__ import annotations

import threading
from collections import defaultdict

# latency histogram bounds in seconds: a search takes about a millisecond, a large batch add a second
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counts by (method, route, status) and a latency histogram by (method, route). Routes are the
    app's path templates (`/v1/questions/{id}`), so the label set stays small whatever clients send."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, str(status))] += 1
            key = (method, route)
            counts = self.buckets[key]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            self.sums[key] += seconds
            self.counts[key] += 1

    def render(self, extra: dict[str, tuple[str, str, float]]) -> str:
        """The exposition text; `extra` maps more metric names to (type, help, value)."""
        out = ["# HELP dupfinder_http_requests_total HTTP requests answered, by method, route and status.",
               "# TYPE dupfinder_http_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                out.append(f"dupfinder_http_requests_total{{{_labels(method=method, route=route, status=status)}}} {n}")
            out += ["# HELP dupfinder_http_request_duration_seconds Time from a request's arrival to the end of its answer.",
                    "# TYPE dupfinder_http_request_duration_seconds histogram"]
            for key in sorted(self.counts):
                labels = _labels(method=key[0], route=key[1])
                for bound, n in zip(BUCKETS, self.buckets[key]):
                    out.append(f'dupfinder_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {n}')
                out.append(f'dupfinder_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {self.counts[key]}')
                out.append(f"dupfinder_http_request_duration_seconds_sum{{{labels}}} {self.sums[key]:.6f}")
                out.append(f"dupfinder_http_request_duration_seconds_count{{{labels}}} {self.counts[key]}")
        for name, (kind, help_text, value) in extra.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        return "\n".join(out) + "\n"
