"""Load on `dupfinder serve`: a real server process over a 100,000-question index, a real HTTP
client (asyncio, keep-alive connections, one per simulated client) in this process.

Phases, each after a warm-up:
  search      POST /v1/search of dev questions (one per request, k=5) at 1, 8 and 32 clients
  writes      one client: single-question adds, then removes of them (the write latency alone)
  mixed       8 clients, 95% searches and 5% single-question adds
  kill -9     the mixed run again, the server killed with SIGKILL part-way; then restarted, and every
              acknowledged add looked up (GET /v1/questions/{id}); the index must open, and count
              what was there plus what was acknowledged (plus any add committed but unanswered)

Reported per phase: requests/s, latency p50/p90/p99/max, errors, and the server's CPU seconds
per request (user + system, from /proc), which says what the server costs whatever else the
machine is running; for searches, how many one engine call answered (the server's /metrics). The
load average before and after each phase says how busy the machine was.

Targets (2 cores, 100,000 questions): search >= 500 requests/s at 8 clients with p50 <= 5 ms
and p99 <= 25 ms; one add or remove p50 <= 10 ms and p99 <= 50 ms; mixed and kill -9: zero errors,
zero acknowledged writes lost, the index opens consistent.

The built index is cached under --work (index-<n>/) and copied for each run, so runs start alike.
Prints the machine, versions and command; writes JSON to benchmarks/results/; never asserts.

Examples:
  python benchmarks/bench_server.py --work /tmp/bench-server
  python benchmarks/bench_server.py --work /tmp/bench-server --n 20000 --seconds 5 --clients 1,8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, print_environment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DUPFINDER_DATA", ROOT.parent / "shared" / "data" / "quora"))
KEY = "bench-key"


# ---------------------------------------------------------------- data and index


def unique_questions(path: Path):
    from dupfinder.engine import read_questions

    return read_questions([str(path)])  # a pairs file: each qid once, with its id


def build_index(work: Path, n: int, train: Path) -> tuple[Path, list]:
    """index-<n>/ under `work` (built once), and the train questions beyond the first n (for adds)."""
    from dupfinder.engine import Engine

    questions = unique_questions(train)
    indexed, spare = questions[:n], questions[n:]
    target = work / f"index-{n}"
    if not (target / "manifest.json").exists():
        print(f"building {target} from the first {len(indexed):,} unique questions of {train} (once; cached)", flush=True)
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        with Engine.for_writing(target) as engine:
            for i in range(0, len(indexed), 20_000):
                engine.add(indexed[i : i + 20_000])
                print(f"  {min(i + 20_000, len(indexed)):,} questions, {time.perf_counter() - start:.0f} s", flush=True)
    return target, spare


# ---------------------------------------------------------------- the server process


class Server:
    def __init__(self, index: Path, port: int = 0):
        env = dict(os.environ, DUPFINDER_API_KEY=KEY)
        self.proc = subprocess.Popen([sys.executable, "-m", "dupfinder", "serve", "--index", str(index), "--port", str(port)],
                                     env=env, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        deadline = time.monotonic() + 300
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"listening on http://([\d.]+):(\d+)", line)
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("the server did not start:\n" + "".join(self.log))
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()
        self.started = time.perf_counter()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


# ---------------------------------------------------------------- the client


def request(method: str, path: str, body: dict | None = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {KEY}\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


async def exchange(reader, writer, raw: bytes) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    return status, await reader.readexactly(length)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    v = sorted(values)
    at = lambda q: v[min(len(v) - 1, int(q * len(v)))] * 1000  # noqa: E731
    return {"n": len(v), "p50_ms": round(at(0.50), 3), "p90_ms": round(at(0.90), 3), "p99_ms": round(at(0.99), 3),
            "max_ms": round(v[-1] * 1000, 3), "mean_ms": round(sum(v) / len(v) * 1000, 3)}


async def load(server: Server, clients: int, seconds: float, next_request, warmup: float = 1.0, kill_after: float | None = None) -> dict:
    """`clients` connections, each sending next_request(client) -> (kind, bytes, id) back to back
    for warmup + seconds; latencies recorded after the warm-up. With kill_after, the server is
    killed that many seconds into the measured part and the run ends."""
    latencies: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    acked: list[str] = []
    attempted: list[str] = []
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    killed = asyncio.Event()
    cpu = {}

    async def client(c: int):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            while time.perf_counter() < stop_at and not killed.is_set():
                kind, raw, qid = next_request(c)
                if qid is not None:
                    attempted.append(qid)
                t = time.perf_counter()
                try:
                    status, body = await exchange(reader, writer, raw)
                except (ConnectionError, asyncio.IncompleteReadError, OSError):
                    if not killed.is_set():
                        errors[f"{kind} connection"] = errors.get(f"{kind} connection", 0) + 1
                    return
                done = time.perf_counter()
                if status != 200:
                    errors[f"{kind} {status}"] = errors.get(f"{kind} {status}", 0) + 1
                elif qid is not None:
                    if json.loads(body)["questions"][0]["status"] == "added":
                        acked.append(qid)
                    else:  # its text is indexed already (Quora repeats some questions under new ids)
                        attempted.remove(qid)
                if t >= measure_from:
                    latencies.setdefault(kind, []).append(done - t)
        finally:
            writer.close()

    async def mark():
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu["start"], cpu["t"] = server.cpu_seconds(), time.perf_counter()
        if kill_after is not None:
            await asyncio.sleep(kill_after)
            cpu["end"], cpu["t_end"] = server.cpu_seconds(), time.perf_counter()
            killed.set()
            server.kill()

    load_before = os.getloadavg()[0]
    await asyncio.gather(mark(), *[client(c) for c in range(clients)])
    if "end" not in cpu:
        cpu["end"], cpu["t_end"] = server.cpu_seconds(), time.perf_counter()
    elapsed = cpu["t_end"] - cpu["t"]
    measured = sum(len(v) for v in latencies.values())
    out = {"clients": clients, "seconds": round(elapsed, 2), "requests": measured, "requests_per_s": round(measured / elapsed, 1),
           "errors": errors, "server_cpu_ms_per_request": round((cpu["end"] - cpu["start"]) / max(measured, 1) * 1000, 3),
           "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    for kind, values in sorted(latencies.items()):
        out[kind] = percentiles(values)
    out["_acked"], out["_attempted"] = acked, attempted
    return out


def show(name: str, r: dict) -> None:
    kinds = [k for k in r if isinstance(r[k], dict) and "n" in r[k]]
    parts = [f"{k}: p50 {r[k]['p50_ms']:.2f} p90 {r[k]['p90_ms']:.2f} p99 {r[k]['p99_ms']:.2f} max {r[k]['max_ms']:.1f} ms (n={r[k]['n']:,})"
             for k in kinds if r[k]["n"]]
    print(f"{name:<14} {r['clients']:>3} clients  {r['requests_per_s']:>7,.1f} req/s  " + "  ".join(parts)
          + f"  errors {sum(r['errors'].values())}  server CPU {r['server_cpu_ms_per_request']:.2f} ms/req"
          + (f"  {r['searches_per_engine_call']:.1f} searches/engine call" if r.get("searches_per_engine_call") else "")
          + f"  load {r['load_average'][0]:.1f}->{r['load_average'][1]:.1f}", flush=True)


def batching(server: "Server") -> tuple[int, int]:
    """(engine calls that answered searches, searches they answered) so far, from /metrics."""
    text = asyncio.run(_get(server, "/metrics")).decode()
    counts = dict(re.findall(r"^(dupfinder_search\w+_total) (\d+)", text, re.M))
    return int(counts.get("dupfinder_search_batches_total", 0)), int(counts.get("dupfinder_searches_batched_total", 0))


def batched_load(server: "Server", clients: int, seconds: float, next_request) -> dict:
    """`load`, with the searches answered per engine call (the worker batches the queued ones;
    warm-up included)."""
    calls0, searches0 = batching(server)
    r = asyncio.run(load(server, clients, seconds, next_request))
    calls1, searches1 = batching(server)
    r["searches_per_engine_call"] = round((searches1 - searches0) / max(1, calls1 - calls0), 2)
    return r


# ---------------------------------------------------------------- phases


class Workload:
    """The requests of every phase: dev questions to search, unindexed train questions to add."""

    def __init__(self, dev: Path, spare: list, seed: int = 0):
        self.rng = random.Random(seed)
        searches = [q.text for q in unique_questions(dev) if q.text.strip()]
        self.rng.shuffle(searches)
        self.searches = [request("POST", "/v1/search", {"question": t[:1000], "k": 5}) for t in searches[:5000]]
        self.sent = 0
        self.adds = iter(q for q in spare if q.text.strip())

    def search(self, client: int):
        self.sent += 1
        return "search", self.searches[self.sent % len(self.searches)], None

    def add(self, tag: str):
        q = next(self.adds)
        qid = f"bench-{tag}-{q.user_id}"
        return "add", request("POST", "/v1/questions", {"questions": [{"id": qid, "text": q.text[:1000]}]}), qid

    def mixed(self, tag: str):
        return lambda client: self.add(tag) if self.rng.random() < 0.05 else self.search(client)


def phase_writes(server: Server, work: Workload, n: int) -> dict:
    """One client: n single-question adds, then a remove of each added one."""
    ids: list[str] = []
    add_lat: list[float] = []
    remove_lat: list[float] = []

    async def run():
        reader, writer = await asyncio.open_connection(server.host, server.port)
        for _ in range(n):
            _, raw, qid = work.add("w")
            t = time.perf_counter()
            status, body = await exchange(reader, writer, raw)
            add_lat.append(time.perf_counter() - t)
            if status == 200 and json.loads(body)["questions"][0]["status"] == "added":
                ids.append(qid)
        for qid in ids:
            t = time.perf_counter()
            await exchange(reader, writer, request("DELETE", f"/v1/questions/{qid}"))
            remove_lat.append(time.perf_counter() - t)
        writer.close()

    cpu0, load0 = server.cpu_seconds(), os.getloadavg()[0]
    asyncio.run(run())
    w = {"clients": 1, "add": percentiles(add_lat[10:]), "remove": percentiles(remove_lat[10:]), "acknowledged": len(ids),
         "server_cpu_ms_per_request": round((server.cpu_seconds() - cpu0) / max(1, len(add_lat) + len(remove_lat)) * 1000, 3),
         "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    print(f"{'writes':<14}   1 client   add: p50 {w['add']['p50_ms']:.2f} p99 {w['add']['p99_ms']:.2f} max {w['add']['max_ms']:.1f} ms"
          f"  remove: p50 {w['remove']['p50_ms']:.2f} p99 {w['remove']['p99_ms']:.2f} max {w['remove']['max_ms']:.1f} ms"
          f"  ({len(ids)} of {n} acknowledged)  server CPU {w['server_cpu_ms_per_request']:.2f} ms/req", flush=True)
    return w


def phase_kill(server: Server, work: Workload, index: Path, clients: int, seconds: float, kill_after: float) -> tuple[dict, Server]:
    """The mixed run with a kill -9 part-way, a restart, and every add looked up again."""
    count_before = json.loads(asyncio.run(_get(server, "/v1/info")))["count"]
    r = asyncio.run(load(server, clients, seconds, work.mixed("k"), kill_after=kill_after))
    show("mixed, kill -9", r)
    acked, attempted = r.pop("_acked"), r.pop("_attempted")
    restart = time.perf_counter()
    server = Server(index)
    restart_s = time.perf_counter() - restart
    present = asyncio.run(_present(server, acked))
    unacked = [q for q in attempted if q not in set(acked)]
    committed_unacked = asyncio.run(_present(server, unacked))
    count_after = json.loads(asyncio.run(_get(server, "/v1/info")))["count"]
    k = {k: v for k, v in r.items() if not k.startswith("_")} | {
        "acknowledged_adds": len(acked), "present_after_restart": len(present), "lost": len(acked) - len(present),
        "unacknowledged_adds": len(unacked), "unacknowledged_but_present": len(committed_unacked),
        "count_before": count_before, "count_after": count_after,
        "consistent": count_after == count_before + len(present) + len(committed_unacked), "restart_s": round(restart_s, 2)}
    print(f"{'after kill -9':<14} restart {restart_s:.1f} s: {len(present)} of {len(acked)} acknowledged adds present "
          f"(lost {k['lost']}); {len(committed_unacked)} of {len(unacked)} unanswered adds committed; "
          f"count {count_before:,} -> {count_after:,} ({'consistent' if k['consistent'] else 'INCONSISTENT'})", flush=True)
    return k, server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="Folder for the cached index and the run's copy.")
    ap.add_argument("--n", type=int, default=100_000, help="Questions in the index (unique train questions).")
    ap.add_argument("--train", type=Path, default=DATA / "train.csv.gz")
    ap.add_argument("--dev", type=Path, default=DATA / "dev.csv", help="Where the search questions come from.")
    ap.add_argument("--phases", default="search,writes,mixed,kill9", help="Which phases to run, in this order.")
    ap.add_argument("--clients", default="1,8,32", help="Concurrent clients of the search phases.")
    ap.add_argument("--seconds", type=float, default=10.0, help="Measured seconds per phase.")
    ap.add_argument("--writes", type=int, default=300, help="Adds (then removes) of the writes phase.")
    ap.add_argument("--mixed-clients", type=int, default=8)
    ap.add_argument("--kill-after", type=float, default=5.0, help="Seconds into the kill -9 run.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "server.json")
    args = ap.parse_args()
    phases = args.phases.split(",")

    env = environment()
    import fastapi
    import uvicorn

    env["versions"] |= {"fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__}
    try:  # uvicorn's HTTP parser: httptools when installed, else h11 (pure Python, slower)
        import httptools

        env["versions"]["httptools"] = httptools.__version__
    except ImportError:
        env["versions"]["httptools"] = "not installed (h11)"
    print_environment(env)
    args.work.mkdir(parents=True, exist_ok=True)
    cached, spare = build_index(args.work, args.n, args.train)
    index = args.work / "run-index"
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(cached, index)
    work = Workload(args.dev, spare)

    results: dict = {"environment": env, "n": args.n, "phases": {}}
    server = Server(index)
    results["server_start_s"] = round(time.perf_counter() - server.started, 2)
    info = json.loads(asyncio.run(_get(server, "/v1/info")))
    results["index"] = info
    print(f"server pid {server.proc.pid}: {info['count']:,} questions ({info['kind']}), RSS {server.rss_mb():.0f} MB", flush=True)
    try:
        for phase in phases:
            if phase == "search":
                for clients in [int(c) for c in args.clients.split(",")]:
                    r = batched_load(server, clients, args.seconds, work.search)
                    show("search", r)
                    results["phases"][f"search_{clients}"] = {k: v for k, v in r.items() if not k.startswith("_")}
            elif phase == "writes":
                results["phases"]["writes"] = phase_writes(server, work, args.writes)
            elif phase == "mixed":
                r = batched_load(server, args.mixed_clients, args.seconds, work.mixed("m"))
                show("mixed", r)
                results["phases"]["mixed"] = {k: v for k, v in r.items() if not k.startswith("_")}
            elif phase == "kill9":
                results["phases"]["kill9"], server = phase_kill(server, work, index, args.mixed_clients, args.seconds, args.kill_after)
            else:
                raise SystemExit(f"unknown phase {phase!r}; the phases are: search, writes, mixed, kill9")
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


async def _get(server: Server, path: str) -> bytes:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    status, body = await exchange(reader, writer, request("GET", path))
    writer.close()
    return body


async def _present(server: Server, ids: list[str]) -> list[str]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    found = []
    for qid in ids:
        status, _ = await exchange(reader, writer, request("GET", f"/v1/questions/{qid}"))
        if status == 200:
            found.append(qid)
    writer.close()
    return found


if __name__ == "__main__":
    main()
