"""Downloads from the model hub, a file at a time, with progress (files and bytes done of total).

Only what a model needs is fetched: its top-level config, tokenizer and weight files (safetensors
when the repository has them, else the ``.bin`` checkpoint), each with ``hf_hub_download`` into
the usual hub cache; transformers then loads the local snapshot folder. The endpoint is read from
``huggingface_hub.constants.ENDPOINT`` at call time (``HF_ENDPOINT`` sets it).
"""

from __future__ import annotations

import fnmatch
import os
import threading
from dataclasses import dataclass, field

from ..errors import EccoError, ModelNotFoundError, NoNetworkError

MB = 2**20
CONFIG_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja")
"""Configs, tokenizers (vocabularies, merges, sentencepiece and tiktoken files), chat templates."""
SKIPPED = ("*.msgpack", "*.h5", "*.onnx", "*.ot", "*.gguf")


@dataclass
class DownloadProgress:
    """Files and bytes of one model's download, done of total (0 totals before the listing)."""

    name: str
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    _finished_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def fraction(self) -> float:
        return min(self.bytes_done / self.bytes_total, 1.0) if self.bytes_total else 0.0

    def text(self) -> str:
        if not self.files_total:
            return f"Asking the model hub for {self.name}…"
        return (
            f"Downloading {self.name} from the model hub: {self.files_done} of {self.files_total} files, "
            f"{self.bytes_done / MB:.1f} of {self.bytes_total / MB:.1f} MB"
        )

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes_done += int(count)

    def file_done(self, size: int) -> None:
        with self._lock:
            self._finished_bytes += size
            self.files_done += 1
            self.bytes_done = self._finished_bytes


def model_files(siblings: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """(file, bytes) of a repository listing that a model needs (top-level files only)."""
    top = [(name, size or 0) for name, size in siblings if "/" not in name]
    top = [(n, s) for n, s in top if not any(fnmatch.fnmatch(n, p) for p in SKIPPED)]
    safetensors = [(n, s) for n, s in top if n.endswith(".safetensors")]
    weights = safetensors or [(n, s) for n, s in top if fnmatch.fnmatch(n, "pytorch_model*.bin")]
    configs = [(n, s) for n, s in top if any(fnmatch.fnmatch(n, p) for p in CONFIG_FILES)]
    if not safetensors:
        configs = [(n, s) for n, s in configs if n != "model.safetensors.index.json"]
    return sorted(configs) + sorted(weights)


def _counter(progress: DownloadProgress) -> type:
    """A tqdm stand-in for ``hf_hub_download``: counts the bytes it reports into ``progress``."""

    class ByteCounter:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __enter__(self) -> ByteCounter:
            return self

        def __exit__(self, *exc) -> None:
            return None

        def update(self, count: int = 1) -> None:
            progress.add_bytes(count)

        def close(self) -> None:
            pass

    return ByteCounter


def download(repo_id: str, progress: DownloadProgress) -> str:
    """Download the files ``repo_id`` needs into the hub cache; returns the snapshot folder.

    Raises huggingface_hub's errors (not found, gated, refused, connection): the caller explains them.
    """
    from huggingface_hub import HfApi, constants, hf_hub_download

    endpoint = constants.ENDPOINT
    info = HfApi(endpoint=endpoint).model_info(repo_id, files_metadata=True)
    files = model_files([(s.rfilename, s.size) for s in info.siblings or []])
    progress.files_total, progress.bytes_total = len(files), sum(size for _, size in files)
    folder = None
    for name, size in files:
        path = hf_hub_download(
            repo_id, name, revision=info.sha, endpoint=endpoint, tqdm_class=_counter(progress)
        )
        progress.file_done(size)
        folder = os.path.dirname(path)
    if folder is None:
        raise FileNotFoundError(f"{repo_id} lists no model files on the hub")
    return folder


def explain(name: str, error: Exception) -> EccoError:
    """A clear ``EccoError`` for a failed hub download (not found, gated, refused, cut off)."""
    from huggingface_hub import errors as hub_errors

    if isinstance(error, EccoError):
        return error
    if isinstance(error, hub_errors.HFValidationError):
        return ModelNotFoundError(
            f"Unknown model '{name}': it is not a local folder, a .gguf file or a well-formed hub id "
            "such as 'gpt2' or 'EleutherAI/pythia-70m'."
        )
    if isinstance(error, hub_errors.GatedRepoError):
        return ModelNotFoundError(
            f"'{name}' is gated on the model hub: accept its terms on the hub and set HF_TOKEN, or use "
            "another model."
        )
    if isinstance(error, (hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError)):
        return ModelNotFoundError(
            f"Unknown model '{name}': the model hub has no such repository (or it is private). Try "
            "an id like 'gpt2'."
        )
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, hub_errors.HfHubHTTPError) and status is not None:
        return ModelNotFoundError(
            f"The model hub refused to send '{name}' (HTTP {status}). Try again later or use another model."
        )
    return NoNetworkError(
        f"The download of '{name}' from the model hub failed ({type(error).__name__}: "
        f"{str(error)[:200]}). Try again later, or use a local folder or a .gguf file."
    )
