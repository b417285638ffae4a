"""`python -m dupfinder` runs the CLI."""

from .cli import cli

cli()
