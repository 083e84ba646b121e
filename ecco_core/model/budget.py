"""A memory budget for the process: size a capture (and the work on it) before it runs.

Everything here is arithmetic on a model's shape and a token count; nothing allocates. A hosted
app (Streamlit Community Cloud kills an app above 2.7 GB) plans every capture with
``plan_capture`` and chunks long attributions with ``targets_per_chunk``; the API may do the same.

The budget is ``ECCO_MEMORY_BUDGET_MB`` (default 2200 MB) for the whole process: the model's
weights, the Python and torch runtime, every session's stored runs and the computation running
now. ``store_bytes`` is the part kept for stored runs and results (``ECCO_STORE_MB``, default
30% of the budget).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import MemoryBudgetError

MB = 2**20
DEFAULT_BUDGET_MB = 2200
"""Well under Streamlit Community Cloud's 2.7 GB, leaving room for the allocator's slack."""
RUNTIME_MB = 450
"""Python, torch, transformers and Streamlit before any model (measured: 0.42-0.47 GB RSS)."""
FLOAT = 4  # bytes per float32


def budget_bytes() -> int:
    """The process's memory budget in bytes (``ECCO_MEMORY_BUDGET_MB``, default 2200)."""
    return int(_env_mb("ECCO_MEMORY_BUDGET_MB", DEFAULT_BUDGET_MB) * MB)


def store_bytes() -> int:
    """Bytes kept for stored runs and view results across all sessions (``ECCO_STORE_MB``)."""
    return int(_env_mb("ECCO_STORE_MB", 0.3 * budget_bytes() / MB) * MB)


def _env_mb(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError as error:
        raise MemoryBudgetError(f"{name}={raw!r} is not a number of megabytes (e.g. 2200).") from error
    if not 16 <= value <= 2**24:
        raise MemoryBudgetError(f"{name}={raw!r} is out of range: use 16 .. 16777216 megabytes.")
    return value


@dataclass(frozen=True)
class ModelShape:
    """The sizes a capture's arrays are made of."""

    n_layers: int
    n_heads: int
    d_model: int
    n_neurons: int
    vocab: int
    param_bytes: int
    kv_dim: int = 0
    """Width of one layer's keys (and of its values): n_kv_heads x head_dim; 0 means d_model."""


def model_shape(lm) -> ModelShape:
    """The shape of a loaded ``LanguageModel`` (its config and parameters)."""
    config = lm.model.config
    config = getattr(config, "get_text_config", lambda: config)()
    n_heads = _first_int(config, ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads"), 1)
    d_model = _first_int(config, ("hidden_size", "n_embd", "d_model", "dim"), 1)
    n_neurons = _first_int(
        config, ("intermediate_size", "n_inner", "d_ff", "ffn_dim", "hidden_dim"), 4 * d_model
    )
    vocab = _first_int(config, ("vocab_size",), 1)
    params = sum(p.numel() * p.element_size() for p in lm.model.parameters())
    n_kv = _first_int(config, ("num_key_value_heads", "num_kv_heads", "n_head_kv"), n_heads)
    head_dim = _first_int(config, ("head_dim",), d_model // max(n_heads, 1))
    return ModelShape(int(lm.arch.n_layers), n_heads, d_model, n_neurons, vocab, int(params), n_kv * head_dim)


def _first_int(config, names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


# ----- what a capture keeps and what its forward needs --------------------------------------------------


def hidden_bytes(shape: ModelShape, n_tokens: int) -> int:
    return (shape.n_layers + 1) * n_tokens * shape.d_model * FLOAT  # (layer + 1, pos, d_model)


def activation_bytes(shape: ModelShape, n_tokens: int, n_layers: int) -> int:
    return n_layers * shape.n_neurons * n_tokens * FLOAT  # (layer, neuron, pos)


def attention_layer_bytes(shape: ModelShape, n_tokens: int) -> int:
    return shape.n_heads * n_tokens * n_tokens * FLOAT  # (head, pos, pos) per kept layer


def kv_cache_bytes(shape: ModelShape, n_tokens: int) -> int:
    """The keys and values a generation keeps for its next step (the Run's turns hold them until
    the capture is made): 2 x (layer, pos, kv_dim). SmolLM2: 46 kB a token, 101 MB at 2,200."""
    return 2 * shape.n_layers * n_tokens * (shape.kv_dim or shape.d_model) * FLOAT


def forward_bytes(shape: ModelShape, n_tokens: int, eager_attention: bool) -> int:
    """Transient memory of one capture forward: a few (pos, d) and (pos, neuron) buffers per block
    (measured: about 150 MB beyond the kept arrays for 2730 tokens of SmolLM2),
    and with eager attention the scores, softmax and dropout copies of one layer (3 x (head, pos, pos))."""
    per_block = n_tokens * (12 * shape.d_model + 4 * shape.n_neurons) * FLOAT
    attention = 3 * attention_layer_bytes(shape, n_tokens) if eager_attention else 0
    return per_block + attention + shape.vocab * FLOAT  # one row of logits (logits_to_keep=1)


@dataclass
class CapturePlan:
    """What a capture may keep within ``limit`` bytes, and what was reduced to fit."""

    n_tokens: int
    """Tokens the capture will see (prompt kept + generated)."""
    keep_prompt_tokens: int | None
    """None: the whole prompt; else the number of prompt tokens kept (the last ones)."""
    attention: bool
    attention_layers: list[int] | None
    """None: every layer's attention (or none when ``attention`` is False)."""
    activation_layers: list[int] | None
    """None: every layer's FFN activations."""
    kept_bytes: int
    """Bytes of the arrays the run keeps."""
    peak_bytes: int
    """What the capture needs at its peak: the kept arrays twice (torch's copies while they are
    converted; measured: +1.59 GB peak RSS for a 2730-token capture of SmolLM2 that keeps 458 MB,
    0.54 GB of it the weights paging in) and the forward's buffers."""
    notices: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def plan_capture(
    shape: ModelShape, n_prompt: int, n_generate: int, attention: bool, keep_limit: int, work_limit: int
) -> CapturePlan:
    """Fit a capture: what it keeps within ``keep_limit`` bytes and what its forward needs on top
    within ``work_limit``. First everything; then fewer attention layers, no attention, fewer
    activation layers, and last a shorter prompt (its last tokens).

    Raises:
        MemoryBudgetError: when even a few tokens do not fit (the limits are below the model's needs).
    """
    notices: list[str] = []
    n_tokens = n_prompt + n_generate

    def base(n: int) -> int:  # the capture forward's buffers and the generation's keys and values
        return forward_bytes(shape, n, False) + kv_cache_bytes(shape, n)

    while (
        hidden_bytes(shape, n_tokens) > min(keep_limit, work_limit - base(n_tokens)) // 2
        or base(n_tokens) > work_limit // 2
    ):
        if n_tokens <= n_generate + 8:
            raise MemoryBudgetError(
                f"The memory budget ({_mb(keep_limit)} kept per run, {_mb(work_limit)} to compute it) is "
                f"too small for {shape.n_layers} layers of width {shape.d_model}: raise "
                "ECCO_MEMORY_BUDGET_MB or ECCO_STORE_MB."
            )
        n_tokens = max(n_generate + 8, int(n_tokens * 0.8))
    keep = None
    if n_tokens < n_prompt + n_generate:
        keep = n_tokens - n_generate
        notices.append(
            f"Long text: only the last {keep} of {n_prompt} prompt tokens are analysed, to stay "
            f"within the memory budget ({_mb(keep_limit + work_limit)} for a run)."
        )
    transient = base(n_tokens)
    keep_limit = min(keep_limit, work_limit - transient)  # the capture holds torch copies of what it keeps
    kept = hidden_bytes(shape, n_tokens)
    share = (keep_limit - kept) * (3 if attention else 5) // 5
    acts = _fit_layers(shape.n_layers, activation_bytes(shape, n_tokens, 1), share)
    if acts is not None:
        notices.append(
            f"Long text: FFN activations kept for {len(acts)} of {shape.n_layers} layers "
            f"({_short(acts)}), to bound memory."
        )
    kept += activation_bytes(shape, n_tokens, shape.n_layers if acts is None else len(acts))
    layers: list[int] | None = None
    if attention:
        per_layer = attention_layer_bytes(shape, n_tokens)
        scores = forward_bytes(shape, n_tokens, True) - forward_bytes(shape, n_tokens, False)  # eager scores
        if scores > work_limit - transient - kept or per_layer > keep_limit - kept:
            attention = False
            notices.append(
                f"Long text: attention is not captured; at {n_tokens} tokens one layer's attention "
                f"needs {(per_layer + scores) / MB:.0f} MB while it is computed."
            )
        else:
            layers = _fit_layers(shape.n_layers, per_layer, keep_limit - kept)
            if layers is not None:
                notices.append(
                    f"Long text: attention kept for layers {_short(layers)} only, to bound memory."
                )
            kept += per_layer * (shape.n_layers if layers is None else len(layers))
            transient += scores
    # Peak: the kept arrays, their torch copies while the capture converts them, the forward's buffers.
    return CapturePlan(n_tokens, keep, attention, layers, acts, kept, 2 * kept + transient, notices)


def _fit_layers(n_layers: int, per_layer: int, room: int) -> list[int] | None:
    """None when every layer fits in ``room``, else evenly spaced layers (always the last one)."""
    fits = int(max(room, 0) // max(per_layer, 1))
    if fits >= n_layers:
        return None
    if fits < 1:
        return [n_layers - 1]
    return sorted({round(i) for i in np.linspace(0, n_layers - 1, fits)})


def _mb(size: int) -> str:
    return f"{size / MB:.0f} MB" if size >= MB else f"{size / 1024:.0f} kB"


def _short(layers: list[int]) -> str:
    return (
        ", ".join(map(str, layers))
        if len(layers) <= 8
        else f"{len(layers)} evenly spaced, {layers[0]}..{layers[-1]}"
    )


# ----- attribution: how many targets at once -----------------------------------------------------------


def gradient_target_bytes(shape: ModelShape, n_tokens: int) -> int:
    """Memory of one explained token's backward: every block's (head, pos, pos) attention weights
    and their gradients kept for the backward, and a (pos, d) plus (pos, neuron) buffer per block.

    Measured on SmolLM2-135M (hand-written backward, the app's saliency page, one target per
    chunk): +1.19 GB peak RSS over the run at 701 tokens (this gives 1.31 GB); +500 MB for one
    target at 800 tokens in a fresh process without captured attention.
    """
    attention = 9 * shape.n_heads * n_tokens * n_tokens * FLOAT // 4
    per_block = attention + n_tokens * (shape.d_model + shape.n_neurons) * FLOAT
    return shape.n_layers * per_block + 16 * shape.vocab * FLOAT


def longest_explainable(shape: ModelShape, limit: int) -> int:
    """The most tokens a run may have for one explained token to fit ``limit`` bytes."""
    return longest_within(lambda n: gradient_target_bytes(shape, n), limit)


def targets_per_chunk(shape: ModelShape, n_tokens: int, limit: int, most: int = 8, work: int = 1200) -> int:
    """How many explained tokens one attribution chunk may hold (1 .. most): within ``limit``
    bytes, and at most ``work`` (tokens x explained tokens), so a chunk takes about a second and
    others' requests run between chunks."""
    by_memory = limit // max(gradient_target_bytes(shape, n_tokens), 1)
    return int(min(most, max(1, by_memory), max(1, work // max(n_tokens, 1))))


# ----- views on a stored run ------------------------------------------------------------------------


def factorisation_bytes(shape: ModelShape, n_tokens: int, n_layers: int) -> int:
    """Peak memory of NMF / PCA of ``n_layers`` layers' FFN activations over ``n_tokens``: about six
    float32 copies of the (neuron, pos) matrix (measured: +1.68 GB for 17 x 1536 neurons x 2735
    positions of SmolLM2, whose matrix is 285 MB)."""
    return 6 * n_layers * shape.n_neurons * n_tokens * FLOAT


def similarity_bytes(shape: ModelShape, n_tokens: int, method: str, source: str, n_layers: int) -> int:
    """Peak memory of a layer x layer similarity: float64 copies of every layer's (pos, features)
    and, for CKA, every layer's float64 (pos, pos) Gram matrix (measured: +3.9 GB for CKA of
    SmolLM2's 31 hidden layers over 2735 positions; this gives 4.2 GB)."""
    features = shape.d_model if source == "hidden" else shape.n_neurons
    reps = n_layers * n_tokens * features * 8  # (layer, pos, features) float64
    if method == "cka":
        return 2 * reps + n_layers * n_tokens * n_tokens * 8  # + (layer, pos * pos) Gram matrices
    return 3 * reps + 4 * n_tokens * min(n_tokens, features) * 8


def longest_within(cost, limit: int) -> int:
    """The largest token count ``n`` with ``cost(n) <= limit`` (0 when none)."""
    low, high = 0, 1 << 20
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if cost(mid) <= limit else (low, mid - 1)
    return low


def nbytes(value, _seen: set[int] | None = None, _depth: int = 0) -> int:
    """Bytes of the numpy arrays (and strings) reachable from ``value``: dataclasses, dicts,
    lists, tuples and ``__dict__`` objects of this package, a model (anything with a ``lock``
    and a ``model``) not included; an array's base is counted once."""
    seen = set() if _seen is None else _seen
    if id(value) in seen or _depth > 6 or value is None:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        base = value if value.base is None or not isinstance(value.base, np.ndarray) else value.base
        if base is not value and id(base) in seen:
            return 0
        seen.add(id(base))
        return int(base.nbytes)
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, (int, float, bool)):
        return 8
    if hasattr(value, "lock") and hasattr(value, "model"):  # a loaded model: shared, not a run's
        return 0
    if isinstance(value, dict):
        items = list(value.keys()) + list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif dataclasses.is_dataclass(value) or type(value).__module__.startswith(("ecco_core", "ecco_app")):
        items = list(getattr(value, "__dict__", {}).values())
    elif hasattr(value, "memory_usage") and hasattr(value, "to_numpy"):  # pandas
        return (
            int(value.memory_usage(deep=True).sum())
            if hasattr(value, "columns")
            else int(value.memory_usage(deep=True))
        )
    else:
        return 64
    return 64 + sum(nbytes(item, seen, _depth + 1) for item in items)
