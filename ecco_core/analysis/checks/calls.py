"""Checks of the model-side API's arguments: ``from_pretrained``, ``LM.generate`` and ``LM(...)``.

The facade calls these before anything runs, so a wrong type or range is an ``EccoError`` that
names the argument, never a numpy or torch exception from deep inside (or a silent truncation).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import torch

from ...errors import DeviceError, GenerationSettingsError, InputError
from ...model.lm import MAX_GENERATE, LanguageModel
from .values import flag, optional_callable, optional_whole, optional_whole_list, real, shown

SEED_MAX = 2**64 - 1
"""torch generators take seeds in 0 .. 2**64 - 1."""
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
"""The dtypes a model may be loaded in (by name or as the torch dtype)."""
PROMPT_HELP = "a string or token ids (a list of whole numbers, a 1-D integer array or tensor)"


def prompt(text: object, vocab_size: int) -> None:
    """``text`` is a string, or token ids that are whole numbers in ``0 .. vocab_size - 1``.

    Raises:
        InputError: None, bytes, a number, float or bool ids, nested lists, ids outside the vocabulary.
    """
    if isinstance(text, str):
        return
    if isinstance(text, (bytes, bytearray)):
        raise InputError(
            f"text (the prompt) must be {PROMPT_HELP}, not bytes: decode it first, e.g. text.decode('utf-8')."
        )
    if isinstance(text, torch.Tensor):
        if text.dtype.is_floating_point or text.dtype.is_complex or text.dtype == torch.bool:
            raise InputError(
                f"text (the prompt) must be {PROMPT_HELP}; this tensor holds {text.dtype}, not ids."
            )
        ids = text.detach().cpu().numpy()
    elif isinstance(text, np.ndarray):
        if text.dtype.kind not in "iu":
            raise InputError(
                f"text (the prompt) must be {PROMPT_HELP}; this array holds {text.dtype}, not ids."
            )
        ids = text
    elif isinstance(text, (list, tuple, range)):
        bad = [item for item in text if not _is_id(item)]
        if bad:
            raise InputError(f"text (the prompt) must be {PROMPT_HELP}; {shown(bad[0])} is not a token id.")
        ids = np.asarray(list(text), dtype=np.int64)
    else:
        hint = f" To analyse one token id, pass [{text}]." if _is_id(text) else ""
        raise InputError(f"text (the prompt) must be {PROMPT_HELP}, not {shown(text)}.{hint}")
    if ids.ndim > 1 and not (ids.ndim == 2 and ids.shape[0] == 1):
        raise InputError(
            f"text as token ids must be one sequence (shape (pos,) or (1, pos)), not shape {ids.shape}."
        )
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise InputError(
            f"Token ids must lie in 0..{vocab_size - 1} for this model; "
            f"got {int(ids.min())}..{int(ids.max())}."
        )


def _is_id(item: object) -> bool:
    return isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))


def layer_count(lm: LanguageModel) -> int:
    """Layers a layer list may name: the decoder's, or the encoder's where it has more."""
    n = lm.arch.n_layers
    if lm.arch.encoder_blocks is not None:
        n = max(n, len(lm.arch.encoder_blocks))
    return n


def _bind(method: Callable, lm: LanguageModel, args: tuple, kwargs: dict) -> dict:
    try:
        bound = inspect.signature(method).bind(lm, *args, **kwargs)
    except TypeError as error:
        raise InputError(f"{method.__name__}(): {error}.") from error
    bound.apply_defaults()
    return dict(bound.arguments)


def capture_arguments(lm: LanguageModel, arguments: dict) -> None:
    """The arguments ``generate`` and ``__call__`` share: the prompt and what to capture."""
    prompt(arguments["text"], lm.model.get_input_embeddings().num_embeddings)
    flag("attention", arguments["attention"])
    last = layer_count(lm) - 1
    for name in ("activation_layers", "attention_layers"):
        layers = optional_whole_list(name, arguments[name], allow_empty=True, what="layer numbers")
        outside = [layer for layer in layers or () if not 0 <= layer <= last]
        if outside:
            raise InputError(
                f"Layers {outside} do not exist: {lm.name} has layers 0..{last} ({name} lists layer numbers)."
            )


def call_arguments(lm: LanguageModel, args: tuple, kwargs: dict) -> None:
    """``lm(text, attention=..., activation_layers=..., attention_layers=...)``."""
    capture_arguments(lm, _bind(LanguageModel.__call__, lm, args, kwargs))


def generate_arguments(lm: LanguageModel, args: tuple, kwargs: dict) -> None:
    """``lm.generate(text, generate, do_sample, temperature, top_k, top_p, seed, ...)``.

    Raises:
        InputError (prompt, layers, unknown arguments), GenerationSettingsError (the settings).
    """
    arguments = _bind(LanguageModel.generate, lm, args, kwargs)
    capture_arguments(lm, arguments)
    settings = GenerationSettingsError
    count = arguments["generate"]
    if not _is_id(count):
        raise settings(f"generate must be a whole number of tokens, not {shown(count)}.")
    if count < 1:
        raise settings(
            f"generate={count}: ask for at least 1 token, or call lm(text) to analyse text "
            "without generating."
        )
    if count > MAX_GENERATE:
        raise settings(f"generate={count} is too many: at most {MAX_GENERATE} tokens.")
    flag("do_sample", arguments["do_sample"], error=settings)
    real("temperature", arguments["temperature"], low=0.0, low_open=True, error=settings)
    optional_whole(
        "top_k", arguments["top_k"], 0, error=settings, allowed="None, 0 (off) or a whole number of tokens"
    )
    top_p = arguments["top_p"]
    if top_p is not None:
        real("top_p", top_p, 0.0, 1.0, low_open=True, error=settings, allowed="None or a number in (0, 1]")
    optional_whole("seed", arguments["seed"], 0, SEED_MAX, error=settings)
    optional_callable("progress", arguments["progress"])


def attribution_names(value: object, name: str = "attribution") -> list[str]:
    """``generate(attribution=...)``: a list of method names."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        example = f", e.g. [{value!r}]" if isinstance(value, str) else ""
        raise InputError(f"{name} must be a list of method names{example}, not {shown(value)}.")
    bad = [item for item in value if not isinstance(item, str)]
    if bad:
        raise InputError(f"{name} must be a list of method names; {shown(bad[0])} is not a name.")
    return list(value)


def device(value: object) -> None:
    """'auto', or a device (a string or ``torch.device``) that exists on this machine.

    Raises:
        DeviceError: not a device name, or one this machine does not have (e.g. 'mps' off a Mac).
    """
    allowed = "'auto', 'cpu' or 'cuda' / 'cuda:N' (where a GPU exists)"
    if isinstance(value, str) and value == "auto":
        return
    if not isinstance(value, (str, torch.device)):
        raise DeviceError(f"device must be {allowed}, not {shown(value)}.")
    try:
        resolved = torch.device(value)
    except (RuntimeError, TypeError, ValueError) as error:
        raise DeviceError(f"device must be {allowed}, not {value!r}.") from error
    if resolved.type == "cpu":
        return
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"device={value!r} was asked for but no CUDA GPU is available here: use 'cpu' or 'auto'."
            )
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f"device={value!r}: this machine has CUDA GPUs 0..{count - 1}.")
        return
    backend = getattr(torch.backends, resolved.type, None) or getattr(torch, resolved.type, None)
    available = getattr(backend, "is_available", None)
    if resolved.type == "meta" or available is None or not available():
        raise DeviceError(f"device={value!r} is not available on this machine: use {allowed}.")


def dtype(value: object) -> None:
    """None (float32), or a floating dtype by name or as the torch dtype.

    Raises:
        DeviceError: an integer, bool or complex dtype, or an unknown name.
    """
    names = ", ".join(repr(n) for n in DTYPES)
    if value is None or (isinstance(value, str) and value in DTYPES):
        return
    if isinstance(value, torch.dtype) and value in DTYPES.values():
        return
    raise DeviceError(
        f"dtype must be None (float32) or one of {names} (or the torch dtype), not {shown(value)}."
    )


def model_name(value: object) -> None:
    """None (the default model) or a string (a name, a folder, a ``.gguf`` file or a hub id)."""
    if value is not None and not isinstance(value, str):
        raise InputError(
            "name_or_path must be a model name, a folder, a .gguf file or a hub id (a str), "
            f"not {shown(value)}."
        )


def from_pretrained_arguments(
    name_or_path: object,
    device_value: object,
    dtype_value: object,
    timeout: object = None,
    on_progress: object = None,
) -> None:
    """``from_pretrained(name_or_path, device, dtype, timeout=, on_progress=)``."""
    model_name(name_or_path)
    device(device_value)
    dtype(dtype_value)
    if timeout is not None:
        real("timeout", timeout, low=0, low_open=True, allowed="None or a number of seconds above 0")
    optional_callable("on_progress", on_progress)
