"""Errors a user can cause and fix. The CLI turns each into a one-line `Error: ...`; no click here."""


class DupfinderError(Exception):
    """Base class: bad input, missing or mismatched artifacts. The message says how to fix it."""


class InputError(DupfinderError):
    """A data file that is missing, unreadable, empty or has the wrong columns."""


class ModelError(DupfinderError):
    """A model directory that is missing, corrupt or written by an incompatible format."""


class IndexStoreError(DupfinderError):
    """An index directory that is missing, corrupt, or built with another model."""
