"""The `dupfinder` command line: parse, call the engine, format. No algorithms here."""

from dupfinder.cli import model_cmds, store_cmds, train_cmds  # noqa: F401 (they register their commands)
from dupfinder.cli import serve_cmd  # noqa: F401 (registers `serve`; FastAPI loads only when it runs)
from dupfinder.cli.main import cli

__all__ = ["cli"]
