"""dupfinder: find duplicate questions with a Siamese LSTM encoder, a FAISS index and SQLite metadata."""

__version__ = "0.1.0"

__all__ = ["Encoder", "Hit", "QuestionIndex", "load_model", "__version__"]

# torch and faiss are imported only when these are used, so `import dupfinder` stays cheap
_LAZY = {"Encoder": "encode", "load_model": "encode", "QuestionIndex": "index", "Hit": "search"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'dupfinder' has no attribute {name!r}")
