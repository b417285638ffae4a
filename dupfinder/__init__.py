"""dupfinder: find duplicate questions with a Siamese LSTM encoder, a vector store and a verdict rule."""

__version__ = "0.2.0"

__all__ = ["Engine", "Hit", "Question", "load_model", "open_store", "__version__"]

# numpy, faiss and the model load only when these are used, so `import dupfinder` stays cheap
_LAZY = {"Engine": "engine", "Hit": "engine", "Question": "store.base", "load_model": "model.encoder", "open_store": "store"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"dupfinder.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dupfinder' has no attribute {name!r}")
