"""``from_pretrained``: device and dtype choice, and the in-process model cache."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import torch

from ..errors import EccoError
from .lm import LanguageModel
from .weights import DEFAULT_MODEL, load_weights

MAX_MODELS = int(os.environ.get("ECCO_MAX_MODELS", "3"))
"""How many models stay loaded per process; the least recently used one is dropped first."""
_models: OrderedDict[tuple[str, str, str, type], LanguageModel] = OrderedDict()
_models_lock = threading.Lock()

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise EccoError(f"Unknown device '{device}': use 'auto', 'cpu' or 'cuda'.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise EccoError("device='cuda' was asked for but no CUDA GPU is available here.")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None means float32 (exact gradients and ranks); strings name a torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise EccoError(f"Unknown dtype '{dtype}': use one of {sorted(_DTYPES)}.")
    return _DTYPES[dtype]


def from_pretrained(
    name_or_path: str | None = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    lm_class: type[LanguageModel] = LanguageModel,
) -> LanguageModel:
    """Load a model once per process (cached by name, device, dtype and ``lm_class``) and wrap
    it in ``lm_class``; the arguments and errors are those of ``ecco_core.from_pretrained``."""
    name = (name_or_path or DEFAULT_MODEL).strip()
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    key = (name, str(resolved_device), str(resolved_dtype), lm_class)
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
        else:
            weights = load_weights(name, resolved_dtype)
            weights.model = _to_device(weights.model, resolved_device)
            _models[key] = lm_class(weights, resolved_device)
            while len(_models) > MAX_MODELS:
                _models.popitem(last=False)
        return _models[key]


def _to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to the device; a model too large for one GPU is spread with accelerate."""
    if device.type != "cuda":
        return model.to(device)
    try:
        return model.to(device)
    except torch.cuda.OutOfMemoryError:
        from accelerate import dispatch_model, infer_auto_device_map

        torch.cuda.empty_cache()
        return dispatch_model(model.cpu(), device_map=infer_auto_device_map(model))


def clear_cache() -> None:
    """Forget every loaded model (frees memory; the disk cache stays)."""
    with _models_lock:
        _models.clear()
