"""``from_pretrained``: device and dtype choice, and the in-process model cache."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import torch

from ..errors import EccoError, HubTimeoutError, ModelLoadTimeoutError
from . import weights as weight_sources
from .hub import DownloadProgress
from .lm import LanguageModel
from .weights import DEFAULT_MODEL, load_weights

MAX_MODELS = int(os.environ.get("ECCO_MAX_MODELS", "3"))
"""How many models stay loaded per process; the least recently used one is dropped first."""
_models: OrderedDict[tuple[str, str, str, type], LanguageModel] = OrderedDict()
_models_lock = threading.Lock()
"""Guards ``_models`` and ``_loading`` only: never held while a model loads."""


@dataclass
class Loading:
    """A load in flight: its future (the model or the error) and, from the hub, its download."""

    future: Future = field(default_factory=Future)
    progress: DownloadProgress = field(default_factory=lambda: DownloadProgress(""))
    needs_hub: bool = False


_loading: dict[tuple[str, str, str, type], Loading] = {}
"""Loads in flight: a second caller of the same model waits on the first one's load."""
LOAD_TIMEOUT_S = float(os.environ.get("ECCO_LOAD_TIMEOUT_S", "120"))
"""The one loading timeout: how long ``from_pretrained`` waits for a model from the hub (and the
app for any model) before it raises; the load goes on in the background and a later call gets
the model once it is there."""
POLL_S = 0.25
"""How often a waiting caller hears a download's progress."""

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU (``checks.calls.device`` vets the rest)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
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
    timeout: float | None = None,
    on_progress: Callable[[DownloadProgress], None] | None = None,
) -> LanguageModel:
    """Load a model once per process (cached by name, device, dtype and ``lm_class``) and wrap
    it in ``lm_class``; the arguments and errors are those of ``ecco_core.from_pretrained``.

    Args:
        timeout: seconds to wait (None: ``LOAD_TIMEOUT_S`` for a model from the hub, no limit
            for a local one); then HubTimeoutError (from the hub) or ModelLoadTimeoutError.
        on_progress: called every ``POLL_S`` while a hub download goes on, with its progress.
    """
    load = start_loading(name_or_path, device, dtype, lm_class)
    if isinstance(load, LanguageModel):
        return load
    if timeout is None and load.needs_hub:
        timeout = LOAD_TIMEOUT_S
    return wait_for(load, (name_or_path or DEFAULT_MODEL).strip(), timeout, on_progress)


def start_loading(
    name_or_path: str | None = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    lm_class: type[LanguageModel] = LanguageModel,
) -> LanguageModel | Loading:
    """The loaded model, or the load in flight (started here in its own thread when none is)."""
    name = (name_or_path or DEFAULT_MODEL).strip()
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    key = (name, str(resolved_device), str(resolved_dtype), lm_class)
    fresh = Loading(progress=DownloadProgress(name), needs_hub=weight_sources.needs_hub(name))
    with _models_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        load = _loading.get(key)
        starts = load is None
        if starts:
            load = _loading[key] = fresh
    if starts:
        args = (load, key, name, resolved_device, resolved_dtype, lm_class)
        threading.Thread(target=_load, args=args, name=f"ecco-load-{name[:40]}", daemon=True).start()
    return load


def wait_for(
    load: Loading,
    name: str,
    timeout: float | None,
    on_progress: Callable[[DownloadProgress], None] | None = None,
) -> LanguageModel:
    """The model once ``load`` ends (or its error), waiting at most ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return load.future.result(left if on_progress is None else min(POLL_S, left or POLL_S))
        except FutureTimeout:
            if deadline is not None and time.monotonic() >= deadline:
                raise _timeout_error(load, name, timeout) from None
            if on_progress is not None and load.needs_hub:
                on_progress(load.progress)


def _timeout_error(load: Loading, name: str, timeout: float) -> EccoError:
    if load.needs_hub:
        got = load.progress
        so_far = f" ({got.text().split(': ', 1)[-1]} so far)" if got.files_total else ""
        return HubTimeoutError(
            f"Loading '{name}' from the model hub did not finish within {timeout:.0f} s{so_far}: the "
            "hub answers but the download is slow or stalls. It goes on in the background: try again "
            f"in a while, or use the embedded models ({', '.join(weight_sources.EMBEDDED_MODELS)}). "
            "ECCO_LOAD_TIMEOUT_S sets the limit."
        )
    return ModelLoadTimeoutError(
        f"Loading the model '{name}' has taken more than {timeout:.0f} s (a busy server). It goes on "
        "in the background: press Run again in a minute (ECCO_LOAD_TIMEOUT_S sets the limit)."
    )


def _load(load: Loading, key: tuple, name: str, device: torch.device, dtype: torch.dtype, lm_class) -> None:
    """Load one model into ``_models`` and settle ``load.future`` (runs in its own thread)."""
    try:
        weights = load_weights(name, dtype, progress=load.progress)
        weights.model = _to_device(weights.model, device)
        lm = lm_class(weights, device)
        with _models_lock:
            _models[key] = lm
            while len(_models) > MAX_MODELS:
                _models.popitem(last=False)
        load.future.set_result(lm)
    except BaseException as error:  # noqa: BLE001 - handed to every waiting caller
        load.future.set_exception(error)
    finally:
        with _models_lock:
            _loading.pop(key, None)


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
