"""The versioned model directory: config.json, vocab.json, weights.npz (the fp16 state dict, read by
torch and by the torch-free query path alike), manifest.json. Format 1 directories also hold the
same weights as weights.pt, which torch reads when present; format 2 stores them once.

Nothing here is pickled: weights load with `weights_only=True` or `allow_pickle=False`, everything
else is JSON. Only `load_network` imports torch (`save_model` is handed a torch network).
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from dupfinder import __version__
from dupfinder.atomic import write_atomic
from dupfinder.errors import ModelError
from dupfinder.text import TextConfig, Vocab

if TYPE_CHECKING:  # torch is imported where weights are touched: index and CLI errors stay fast
    from dupfinder.model.network import SiameseEncoder

FORMAT_VERSION = 2  # 2: weights once, in weights.npz (1 also had them as weights.pt)
NUMPY_WEIGHTS = "weights.npz"
DEFAULT_MODEL_DIR = Path(__file__).parent.parent / "models" / "default"


def library_versions() -> dict:
    import numpy
    import torch

    return {
        "dupfinder": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


@dataclass
class ModelFiles:
    """A model directory read without its weights: enough to tokenize and to load either forward pass."""

    path: Path
    model_config: dict  # config.json's "model" section, the fields of model.ModelConfig
    vocab: Vocab
    text_config: TextConfig
    manifest: dict

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]


@dataclass
class LoadedModel(ModelFiles):
    """A model directory read back with its torch network, in eval mode."""

    network: SiameseEncoder | None = None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def numpy_weights_bytes(state: dict) -> bytes:
    """A state dict (name -> tensor) as an uncompressed .npz of the same dtypes and numbers."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: v.detach().cpu().numpy() for k, v in state.items()})
    return buf.getvalue()


def fingerprint_of(weights: bytes, vocab_json: str, config_json: str) -> str:
    h = hashlib.sha256()
    for part in (weights, vocab_json.encode(), config_json.encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def save_model(
    directory: str | Path,
    network: SiameseEncoder,
    vocab: Vocab,
    text_config: TextConfig,
    threshold: float,
    extra: dict | None = None,
    half: bool = True,
) -> dict:
    """Write a model directory; each file atomically, the manifest last (it is the commit point).

    The fingerprint covers weights.npz, the vocabulary and the config; the manifest also holds
    weights.npz's sha256, so a stale or damaged file is refused.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in network.state_dict().items()}
    npz = numpy_weights_bytes(state)
    config_json = json.dumps({"model": asdict(network.config), "text": asdict(text_config)}, indent=2)
    vocab_json = vocab.to_json()
    manifest = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fingerprint_of(npz, vocab_json, config_json),
        "threshold": float(threshold),
        "dimension": network.config.d_vector,
        "weights_dtype": "float16" if half else "float32",
        "numpy_weights": {"file": NUMPY_WEIGHTS, "sha256": sha256_hex(npz)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        **(extra or {}),
    }
    write_atomic(directory / "config.json", config_json.encode())
    write_atomic(directory / "vocab.json", vocab_json.encode())
    write_atomic(directory / NUMPY_WEIGHTS, npz)
    (directory / "weights.pt").unlink(missing_ok=True)  # a format 1 leftover, stale from now on
    write_atomic(directory / "manifest.json", json.dumps(manifest, indent=2).encode())
    return manifest


def read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path.parent} is not a dupfinder model: {path.name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is corrupt ({e}); retrain or restore the model") from None


def read_model_dir(directory: str | Path | None = None) -> ModelFiles:
    """Read and check a model directory's manifest, config and vocabulary (the shipped default when None), not its weights."""
    path = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
    if not path.is_dir():
        if directory is None:
            raise ModelError(f"the default model is missing from the installation ({path}); reinstall dupfinder")
        raise ModelError(f"model directory not found: {path}")
    manifest = read_json(path / "manifest.json")
    if not isinstance(manifest, dict) or "format_version" not in manifest:
        raise ModelError(f"{path / 'manifest.json'} is not a dupfinder model manifest")
    version = manifest["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"{path} has model format {version}, newer than this dupfinder reads ({FORMAT_VERSION}); upgrade dupfinder"
        )
    config = read_json(path / "config.json")
    try:
        model_config = dict(config["model"])
        text_config = TextConfig(**config["text"])
        vocab = Vocab(read_json(path / "vocab.json"))
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{path} has an unreadable config or vocabulary ({e}); retrain or restore the model") from None
    from dupfinder.model.fast import POOLINGS

    if model_config.get("pooling", "mean") not in POOLINGS:
        raise ModelError(f"{path} pools with {model_config.get('pooling')!r}, which this dupfinder does not run "
                         f"(it runs {', '.join(POOLINGS)}); use the dupfinder release that trained it, or retrain")
    return ModelFiles(path, model_config, vocab, text_config, manifest)


def load_network(files: ModelFiles) -> SiameseEncoder:
    """The torch network of a model directory, in eval mode: from weights.pt in a format 1 directory
    that has it, else from weights.npz."""
    import torch

    from dupfinder.model.network import ModelConfig, SiameseEncoder

    path = files.path
    try:
        model_config = ModelConfig(**files.model_config)
    except (TypeError, ValueError) as e:
        raise ModelError(f"{path} has an unreadable config ({e}); retrain or restore the model") from None
    source = path / "weights.pt"
    try:
        if files.manifest["format_version"] < 2 and source.exists():
            state = torch.load(source, map_location="cpu", weights_only=True)
        else:
            arrays = load_numpy_weights(files)
            source = path / NUMPY_WEIGHTS
            if arrays is None:
                raise ModelError(f"{path} is not a dupfinder model: {NUMPY_WEIGHTS} is missing")
            state = {name: torch.from_numpy(a) for name, a in arrays.items()}
        network = SiameseEncoder(model_config)
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except ModelError:
        raise
    except Exception as e:  # torch raises many kinds for a damaged file
        raise ModelError(f"{source} is corrupt or does not match config.json ({type(e).__name__}); retrain or restore the model") from None
    network.eval()
    return network


def load_numpy_weights(files: ModelFiles) -> dict | None:
    """weights.npz as name -> array, checked against the manifest's sha256; None when the model has
    none (written before it existed): then only torch can run it."""
    import io

    import numpy as np

    record = files.manifest.get("numpy_weights")
    if not isinstance(record, dict) or "sha256" not in record:
        return None
    path = files.path / record.get("file", NUMPY_WEIGHTS)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if sha256_hex(data) != record["sha256"]:
        raise ModelError(f"{path} does not match {files.path / 'manifest.json'} (stale or damaged); restore the model")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as e:  # zipfile and numpy raise many kinds for a damaged file
        raise ModelError(f"{path} is corrupt ({type(e).__name__}); restore the model") from None


def load_model_dir(directory: str | Path | None = None) -> LoadedModel:
    """Read a model directory written by `save_model` (the shipped default when None), with its torch network."""
    files = read_model_dir(directory)
    return LoadedModel(**vars(files), network=load_network(files))
