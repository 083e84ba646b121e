"""Saved runs on disk: written atomically, read as untrusted input.

A run is one ``.npz`` (a zip of ``.npy`` arrays) plus a JSON ``meta`` entry. Writing goes to a
temporary file in the same folder, flushed to disk, then ``os.replace``-d over the target, so a
full disk or a crash leaves the previous file whole. Reading never unpickles, reads every zip
member's declared size and every ``.npy`` header (dtype, shape) before any array is allocated,
refuses anything past ``max_bytes``, and ``OutputSeq.load`` then checks every value against the
declared sizes (``check_run``).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy

from .errors import InputError, RunFileError

MAX_RUN_BYTES = int(float(os.environ.get("ECCO_MAX_RUN_MB", "1024")) * 2**20)
"""The most a saved run may expand to in memory (all arrays together); ``ECCO_MAX_RUN_MB`` sets it."""
MAX_META_BYTES = 16 * 2**20
MAX_MEMBERS = 256
NUMERIC_KINDS = "biuf"
"""dtype kinds an array of a run may have: bool, int, unsigned, float (no objects, strings, voids)."""


def run_path(path: object, save: bool = False) -> Path:
    """``path`` (a str or path-like) as a Path; with ``save``, ending in ``.npz``.

    Raises:
        RunFileError: not a path, or an empty name.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise RunFileError(f"path must be a file name (a str or pathlib.Path), not {type(path).__name__}.")
    name = os.fspath(path)
    if isinstance(name, bytes):
        raise RunFileError("path must be a file name as text, not a path object that gives bytes.")
    if "\x00" in name:
        raise RunFileError(f"path {str(path)[:80]!r} is not a usable file name: it holds a null byte.")
    try:
        resolved = Path(path)
        if save and resolved.suffix != ".npz":
            resolved = resolved.with_suffix(".npz")
    except (TypeError, ValueError) as error:
        raise RunFileError(f"path {str(path)[:80]!r} is not a usable file name: {error}.") from error
    if not resolved.name:
        raise RunFileError(f"path {str(path)[:80]!r} names a folder, not a file.")
    return resolved


def write_archive(handle: IO[bytes], arrays: dict[str, np.ndarray]) -> None:
    """The writer: a compressed ``.npz`` of ``arrays`` into an open file."""
    np.savez_compressed(handle, **arrays)


def write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an ``.npz`` at ``path``: a temporary file, fsync, then ``os.replace``.

    Raises:
        RunFileError: the folder is missing or read-only, or the disk is full; ``path`` (if it
            existed) is unchanged and no temporary file is left behind.
    """
    tmp = path.with_name(f".{path.name[:200]}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write_archive(handle, arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        reason = error.strerror or str(error)
        kept = "The previous file is unchanged." if _exists(path) else "Nothing was written."
        raise RunFileError(f"Could not save the run to '{path}': {reason}. {kept}") from error
    finally:
        with contextlib.suppress(OSError):  # a name too long for a temporary file was never created
            tmp.unlink(missing_ok=True)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:
        return False


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header bytes) of one ``.npy`` member, read from its first bytes only."""
    with archive.open(info) as member:
        version = npy.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(member, max_header_size=10000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(member, max_header_size=10000)
        else:
            raise ValueError(f"unknown .npy version {version}")
        return tuple(int(n) for n in shape), dtype, member.tell()


def read_archive(path: str | Path, max_bytes: int = MAX_RUN_BYTES) -> tuple[dict, dict[str, np.ndarray]]:
    """The ``meta`` dict and the arrays of a saved run, each array vetted before it is allocated.

    Raises:
        RunFileError: missing, empty, truncated, a lone ``.npy``, not a zip, a member that is not
            a plain numeric ``.npy`` (pickles and objects included), sizes that disagree with the
            headers, or more than ``max_bytes`` in all.
    """
    path = run_path(path)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise InputError(f"max_bytes must be a whole number of bytes (at least 1), not {max_bytes!r}.")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as error:
        raise RunFileError(f"Cannot read the saved run '{path}': {error.strerror or error}.") from error
    if not magic:
        raise RunFileError(f"'{path}' is empty: it is not a saved run.")
    if magic == b"\x93NUMPY":
        raise RunFileError(f"'{path}' is a single .npy array, not a saved run (.npz written by seq.save).")
    if magic[:4] != b"PK\x03\x04":
        raise RunFileError(f"'{path}' is not a saved run: it is not an .npz (zip) file.")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_members(path, archive, max_bytes)
    except RunFileError:
        raise
    except Exception as error:  # noqa: BLE001 - the zip, zlib and .npy readers fail in many ways on a damaged file
        raise RunFileError(
            f"'{path}' is damaged or not a saved run ({type(error).__name__}: {str(error)[:160]})."
        ) from error


def _read_members(path: Path, archive: zipfile.ZipFile, max_bytes: int) -> tuple[dict, dict[str, np.ndarray]]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise RunFileError(f"'{path}' holds {len(infos)} entries; a saved run has at most {MAX_MEMBERS}.")
    declared = sum(info.file_size for info in infos)
    if declared > max_bytes:
        raise RunFileError(
            f"'{path}' would expand to {declared / 2**20:.0f} MB, past the limit of "
            f"{max_bytes / 2**20:.0f} MB (raise it with load(..., max_bytes=...) or ECCO_MAX_RUN_MB)."
        )
    headers = {}
    for info in infos:
        if not info.filename.endswith(".npy") or "/" in info.filename:
            raise RunFileError(
                f"'{path}' holds '{info.filename[:80]}', which is not an array of a saved run."
            )
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise RunFileError(f"'{path}': entry '{info.filename}' uses an unsupported compression.")
        shape, dtype, header = _member_header(archive, info)
        _check_member(path, info, shape, dtype, header)
        headers[info.filename[:-4]] = info
    if "meta" not in headers:
        raise RunFileError(f"'{path}' has no 'meta' entry: it was not written by OutputSeq.save.")
    arrays = {}
    for name, info in headers.items():
        with archive.open(info) as member:
            arrays[name] = npy.read_array(member, allow_pickle=False)
    meta_array = arrays.pop("meta")
    try:
        meta = json.loads(str(meta_array[()]))
    except ValueError as error:
        raise RunFileError(f"'{path}': its metadata is not JSON ({error}).") from error
    if not isinstance(meta, dict):
        raise RunFileError(f"'{path}': its metadata is not a JSON object.")
    return meta, arrays


def _check_member(path: Path, info: zipfile.ZipInfo, shape: tuple, dtype: np.dtype, header: int) -> None:
    name = info.filename[:-4]
    if dtype.hasobject:
        raise RunFileError(f"'{path}': entry '{name}' holds Python objects (a pickle); saved runs never do.")
    if name == "meta":
        if dtype.kind != "U" or shape != () or dtype.itemsize > MAX_META_BYTES:
            raise RunFileError(
                f"'{path}': its metadata is not one JSON string (dtype {dtype}, shape {shape})."
            )
    elif dtype.kind not in NUMERIC_KINDS or dtype.itemsize > 8:
        raise RunFileError(
            f"'{path}': entry '{name}' has dtype {dtype}; runs hold numbers and booleans only."
        )
    if any(n < 0 for n in shape):
        raise RunFileError(f"'{path}': entry '{name}' declares a negative size {shape}.")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes != info.file_size - header:
        raise RunFileError(
            f"'{path}': entry '{name}' declares shape {shape} ({nbytes} bytes) but holds "
            f"{info.file_size - header} bytes."
        )


# ----- what the arrays must agree on ------------------------------------------------------------------

MODEL_TYPES = ("causal", "mlm", "enc-dec")
CORE_ARRAYS = ("token_ids", "hidden_states", "activations", "attentions", "special")
ID_LIMIT = 2**31
"""Token ids of a run without a model to compare with must still be below this."""


def _bad(path: object, what: str) -> RunFileError:
    return RunFileError(f"'{path}' is not a valid saved run: {what}.")


def _int_list(path: object, meta: dict, key: str, high: int | None = None) -> list[int]:
    value = meta.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _bad(path, f"'{key}' is not a list of whole numbers")
    if len(set(value)) != len(value) or any(v < 0 or (high is not None and v >= high) for v in value):
        raise _bad(path, f"'{key}' {value[:8]} repeats a layer or names one outside 0..{(high or 1) - 1}")
    return value


def _array(path, arrays, key, kinds: str, ndim: int, shape: tuple | None = None, finite: bool = True):
    """``arrays[key]`` (None when absent) checked for dtype kind, rank, shape (None: any), finiteness."""
    if key not in arrays:
        return None
    array = arrays[key]
    if array.dtype.kind not in kinds or array.ndim != ndim:
        raise _bad(
            path, f"'{key}' is {array.dtype} with {array.ndim} axes; expected {ndim} axes of kind {kinds!r}"
        )
    if shape is not None and any(want is not None and got != want for got, want in zip(array.shape, shape)):
        raise _bad(path, f"'{key}' has shape {array.shape}; the run's declared sizes give {shape}")
    if finite and array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _bad(path, f"'{key}' holds NaN or inf")
    return array


def check_run(
    meta: dict,
    arrays: dict[str, np.ndarray],
    path: object = "",
    vocab_size: int | None = None,
    n_layers: int | None = None,
    d_model: int | None = None,
) -> None:
    """Every field of a saved run against the sizes it declares (and the model's, where given).

    Raises:
        RunFileError: naming the first field that disagrees.
    """
    tokens = meta.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise _bad(path, "'tokens' is not a non-empty list of strings")
    n = len(tokens)
    model_type = meta.get("model_type", "causal")
    if model_type not in MODEL_TYPES:
        raise _bad(path, f"model_type {str(model_type)[:40]!r} is not one of {MODEL_TYPES}")
    n_input = meta.get("n_input_tokens")
    if not isinstance(n_input, int) or isinstance(n_input, bool) or not 0 < n_input <= n:
        raise _bad(path, f"n_input_tokens {str(n_input)[:40]} is not a whole number in 1..{n}")
    for key in ("model_name", "run_id"):
        if not isinstance(meta.get(key, ""), str):
            raise _bad(path, f"'{key}' is not a string")
    ids = _array(path, arrays, "token_ids", "iu", 1, (n,))
    if ids is None:
        raise _bad(path, "it has no token_ids")
    limit = vocab_size or ID_LIMIT
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= limit):
        raise _bad(
            path, f"token ids run {int(ids.min())}..{int(ids.max())}, outside the vocabulary 0..{limit - 1}"
        )
    _array(path, arrays, "special", "b", 1, (n,))
    states = n - n_input if model_type == "enc-dec" else n
    hidden = _array(
        path, arrays, "hidden_states", "f", 3, (None if n_layers is None else n_layers + 1, states, d_model)
    )
    layers = n_layers if hidden is None else hidden.shape[0] - 1
    if hidden is not None and layers < 1:
        raise _bad(
            path,
            f"hidden_states has {hidden.shape[0]} layer(s); a run has the embeddings and at least one block",
        )
    _check_stack(path, meta, arrays, "", states, layers)
    if model_type == "enc-dec":
        _check_encoder(path, meta, arrays, n_input, d_model)
    _check_attributions(path, meta, arrays, n)
    extras = meta.get("extras", {})
    if not isinstance(extras, dict) or not all(isinstance(v, dict) for v in extras.values()):
        raise _bad(path, "'extras' is not a mapping of mappings")
    for key in arrays:
        parts = key.split("__")
        known = key in CORE_ARRAYS or (
            len(parts) == 3 and parts[0] in ("extras", "attribution") and all(parts)
        )
        if not known:
            raise _bad(path, f"it holds an entry {key[:60]!r} that no run has")
    for key, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise _bad(path, f"'{key}' holds NaN or inf")


def _check_stack(path, meta: dict, arrays: dict, prefix: str, states: int, layers: int | None) -> None:
    """Activations and attention of one stack: one entry per declared layer, positions as declared."""
    source = meta if not prefix else meta.get("extras", {}).get(prefix.split("__")[1], {})
    act_layers = _int_list(path, source, "activation_layers", layers)
    attn_layers = _int_list(path, source, "attention_layers", layers)
    acts = _array(path, arrays, f"{prefix}activations", "f", 3, (len(act_layers), None, states))
    if acts is None and act_layers and not prefix:
        raise _bad(path, f"it declares activation_layers {act_layers[:8]} but holds no activations")
    attn = _array(path, arrays, f"{prefix}attentions", "f", 4, (len(attn_layers), None, states, states))
    if attn is not None and attn.size and (attn.min() < 0 or attn.max() > 1 + 1e-3):
        raise _bad(path, f"attention weights run {attn.min():.3g}..{attn.max():.3g}, outside 0..1")


def _check_encoder(path, meta: dict, arrays: dict, n_input: int, d_model: int | None) -> None:
    prefix = "extras__encoder__"
    _array(path, arrays, f"{prefix}token_ids", "iu", 1, (n_input,))
    hidden = _array(path, arrays, f"{prefix}hidden_states", "f", 3, (None, n_input, d_model))
    _check_stack(path, meta, arrays, prefix, n_input, None if hidden is None else hidden.shape[0] - 1)
    decoder = meta.get("extras", {}).get("decoder", {})
    cross_layers = _int_list(path, decoder, "cross_attention_layers")
    n_decoder = len(meta["tokens"]) - n_input
    cross = (len(cross_layers), None, n_decoder, n_input)
    _array(path, arrays, "extras__decoder__cross_attentions", "f", 4, cross)


def _check_attributions(path, meta: dict, arrays: dict, n: int) -> None:
    saved = meta.get("attribution", {})
    if not isinstance(saved, dict):
        raise _bad(path, "'attribution' is not a mapping of method names")
    for method, fields in saved.items():
        prefix = f"attribution__{method}__"
        positions = _array(path, arrays, f"{prefix}positions", "iu", 1)
        if positions is None or not isinstance(fields, dict):
            raise _bad(path, f"the saved {method!r} attribution has no positions")
        if positions.size and (positions.min() < 1 or positions.max() >= n):
            raise _bad(path, f"the saved {method!r} attribution explains positions outside 1..{n - 1}")
        for key in ("values", "signed"):
            _array(path, arrays, f"{prefix}{key}", "f", 2, (len(positions), n))
        for key in ("target_values", "baseline_values"):
            _array(path, arrays, f"{prefix}{key}", "f", 1, (len(positions),))
        _array(path, arrays, f"{prefix}evaluations", "iu", 1, (len(positions),))
