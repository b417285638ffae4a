"""The HTTP service over an engine: `create_app(engine)` (FastAPI; the serve extra) and the web page
in static/. `dupfinder serve` runs it."""

from dupfinder.server.app import create_app
from dupfinder.server.schemas import Limits

__all__ = ["Limits", "create_app"]
