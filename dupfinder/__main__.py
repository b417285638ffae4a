"""`python -m dupfinder` runs the CLI."""

from dupfinder.cli import cli

cli()
