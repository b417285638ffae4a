"""`dupfinder serve`: the HTTP API and web page over one index (FastAPI + uvicorn, the serve extra)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import click

from dupfinder.cli.main import cli
from dupfinder.cli.options import index_option, log, model_option, threshold_option

KEY_ENV = "DUPFINDER_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_key(api_key_file: Path | None) -> str | None:
    """The API key: the file's first line when given, else $DUPFINDER_API_KEY, else None."""
    if api_key_file is not None:
        try:
            lines = api_key_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise click.ClickException(f"cannot read the API key file {api_key_file}: {e}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise click.ClickException(f"the API key file {api_key_file} is empty: put the key on its first line")
        return key
    key = os.environ.get(KEY_ENV, "").strip()
    return key or None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the real address can be printed before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it Nagle's algorithm held each answer's body for the client's delayed ACK (44 ms a request)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@cli.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to listen on. Anything but loopback needs an API key (${KEY_ENV} or --api-key-file).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one, printed at start).")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"File whose first line is the key that writes need (default: ${KEY_ENV}; none: writes are open).")
@model_option
@threshold_option
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="warning",
              show_default=True, help="uvicorn's log level (info logs every request).")
def serve(index_dir, host, port, api_key_file, model_dir, threshold, log_level):
    """Serve an index over HTTP: a JSON API under /v1, a web page at /, the API's docs at /docs.

    One engine per process; searches as you type, adds and removes are durable when answered.
    Writes (POST /v1/questions, DELETE /v1/questions/ID) need `Authorization: Bearer KEY` when a
    key is set. The server refuses to listen beyond loopback without a key. Stop it with Ctrl-C.

    Example: DUPFINDER_API_KEY=s3cret dupfinder serve --index indexes/mine --host 0.0.0.0 --port 8000
    """
    key = read_key(api_key_file)
    if key is None and not is_loopback(host):
        raise click.ClickException(
            f"refusing to listen on {host} without an API key (anyone who reaches it could add and delete questions): "
            f"set {KEY_ENV} or pass --api-key-file, or listen on 127.0.0.1")
    try:
        import uvicorn

        from dupfinder.server import create_app
    except ModuleNotFoundError as e:
        raise click.ClickException(f"dupfinder serve needs {e.name}: pip install 'dupfinder[serve]'") from None
    from dupfinder.engine import Engine
    from dupfinder.model.encoder import use_jit

    use_jit(True)  # a long-lived process: the numba kernel pays its load back within a few queries
    engine = Engine.open(index_dir, model_dir, threshold, log=log)
    try:
        engine.query(["warm up"], 1)  # loads the kernel now rather than in the first user's request
        app = create_app(engine, api_key=key)
        config = uvicorn.Config(app, log_level=log_level, access_log=log_level in ("info", "debug"), timeout_graceful_shutdown=5)
        sock = bind(host, port)
        shown = f"[{host}]" if ":" in host else host
        log(f"dupfinder {engine.store.location} ({engine.store.count:,} questions, writes {'need the API key' if key else 'open'}) "
            f"listening on http://{shown}:{sock.getsockname()[1]}")
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        engine.close()
