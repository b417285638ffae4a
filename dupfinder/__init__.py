"""dupfinder: find duplicate questions with a Siamese LSTM encoder, a FAISS index and SQLite metadata."""

__version__ = "0.1.0"

__all__ = ["Encoder", "load_model", "__version__"]


def __getattr__(name):
    # torch is imported only when the encoder is used, so `import dupfinder` stays cheap
    if name in ("Encoder", "load_model"):
        from . import encode

        return getattr(encode, name)
    raise AttributeError(f"module 'dupfinder' has no attribute {name!r}")
