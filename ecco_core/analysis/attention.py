"""Attention: one head, the mean over heads, attention rollout, and a layer x head overview.

Attention weights come from the capture forward (``lm.generate(..., attention=True)`` or
``lm(text, attention=True)``, eager attention; ``attention_layers=[...]`` keeps only some
layers). Every function here is a pure function of the OutputSeq; results hold no reference to
it or to the model.

Sides: 'self' is the run's own stack (a causal LM, a masked LM, or an encoder-decoder's decoder
self-attention); 'encoder' the encoder's self-attention and 'cross' the decoder's attention over
the encoder output (encoder-decoders only).
"""

from __future__ import annotations

import numpy as np

from ..errors import AttentionMissingError, InputError, ModelTypeError
from ..results.attention import AttentionMap, HeadGrid
from ..run import OutputSeq
from . import checks
from .checks import captured_layer_index, layer_ranges

SIDES = ("self", "encoder", "cross")
_SIZES = ("n_layers", "n_heads", "n_tokens")
THUMBNAIL = 24
"""Largest side of one thumbnail in the head grid; longer runs are max-pooled down to it."""


def layers_within_budget(
    n_layers: int, n_heads: int, n_tokens: int, budget_mb: float = 384
) -> list[int] | None:
    """Which layers' attention to keep so that (layer, head, pos, pos) float32 fits ``budget_mb``.

    Returns None (keep every layer) when all fit, else evenly spaced layers, always the last.
    """
    n_layers, n_heads, n_tokens = (
        checks.values.whole(k, v, 1) for k, v in zip(_SIZES, (n_layers, n_heads, n_tokens))
    )
    budget_mb = checks.values.real("budget_mb", budget_mb, 0.0, low_open=True)
    per_layer_mb = n_heads * n_tokens * n_tokens * 4 / 2**20
    fits = int(budget_mb // max(per_layer_mb, 1e-9))
    if fits >= n_layers:
        return None
    if fits < 1:
        return [n_layers - 1]
    return sorted({round(i) for i in np.linspace(0, n_layers - 1, fits)})


# ----- reading the run ----------------------------------------------------------------------------


def available_sides(seq: OutputSeq) -> list[str]:
    """The sides with captured attention ('self'; 'encoder' and 'cross' on an encoder-decoder)."""
    sides = ["self"] if seq.attentions is not None else []
    encoder, decoder = seq.extras.get("encoder", {}), seq.extras.get("decoder", {})
    if encoder.get("attentions") is not None:
        sides.append("encoder")
    if decoder.get("cross_attentions") is not None:
        sides.append("cross")
    return sides


def missing_attention_message(seq: OutputSeq) -> str:
    return (
        f"This run of {seq.model_name or 'the model'} has no attention weights. Turn on "
        "'Capture attention' in the sidebar's generation settings and press Run again "
        "(in Python: lm.generate(..., attention=True) or lm(text, attention=True))."
    )


def _side_data(seq: OutputSeq, side: str) -> tuple[np.ndarray, list[int], list[str], list[str], int, int]:
    """(attentions (layer, head, query, key), layers, query tokens, key tokens, query/key offsets)."""
    checks.values.choice("side", side, SIDES)
    if side != "self" and seq.model_type != "enc-dec":
        raise ModelTypeError(
            f"'{side}' attention exists only on encoder-decoders; {seq.model_name} is not one."
        )
    if side not in available_sides(seq):
        raise AttentionMissingError(missing_attention_message(seq))
    if side == "self":
        off = seq.state_offset
        tokens = seq.tokens[off:]
        return seq.attentions, list(seq.attention_layers), tokens, tokens, off, off
    encoder, decoder = seq.extras["encoder"], seq.extras["decoder"]
    if side == "encoder":
        tokens = list(encoder["tokens"])
        return encoder["attentions"], list(encoder["attention_layers"]), tokens, tokens, 0, 0
    queries, keys = list(decoder["tokens"]), list(encoder["tokens"])
    layers = list(decoder["cross_attention_layers"])
    return decoder["cross_attentions"], layers, queries, keys, seq.n_input_tokens, 0


def _map(seq: OutputSeq, side: str, layer: int, weights_of, head: int | None, method: str) -> AttentionMap:
    attn, layers, queries, keys, q_off, k_off = _side_data(seq, side)
    index = captured_layer_index(layers, layer)
    return AttentionMap(
        weights=np.asarray(weights_of(attn[index]), dtype=np.float32),
        query_tokens=queries,
        key_tokens=keys,
        query_offset=q_off,
        key_offset=k_off,
        layer=layers[index],
        head=head,
        method=method,
        side=side,
    )


# ----- the maps -----------------------------------------------------------------------------------


def head_attention(seq: OutputSeq, layer: int, head: int, side: str = "self") -> AttentionMap:
    """One head's (query, key) weights at ``layer`` (negative: counted from the last captured)."""
    checks.views.attention(layer, head, side)
    attn = _side_data(seq, side)[0]
    if not 0 <= head < attn.shape[1]:
        raise InputError(f"Head {head} does not exist: this model has heads 0..{attn.shape[1] - 1}.")
    return _map(seq, side, layer, lambda a: a[head], head, "head")


def mean_attention(seq: OutputSeq, layer: int, side: str = "self") -> AttentionMap:
    """The mean over heads of ``layer``'s weights (rows still sum to 1)."""
    checks.views.attention(layer, side=side)
    return _map(seq, side, layer, lambda a: a.mean(axis=0), None, "mean")  # (query, key)


def rollout_matrices(mean_per_layer: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema, 2020) after each layer.

    Each layer's head-mean map gets the identity added (the residual connection) and its rows
    renormalised; the rollout after layer ``l`` is the product ``A_l @ ... @ A_1 @ A_0``.

    Args:
        mean_per_layer: (layer, pos, pos) head-mean attention of consecutive layers from 0.

    Returns:
        (layer, pos, pos) rollout after each layer; rows sum to 1.
    """
    n_layers, n_pos, _ = mean_per_layer.shape
    eye = np.eye(n_pos, dtype=np.float64)
    out = np.empty((n_layers, n_pos, n_pos), dtype=np.float64)
    joint = eye
    for layer in range(n_layers):
        step = mean_per_layer[layer].astype(np.float64) + eye  # (pos, pos)
        step /= step.sum(axis=-1, keepdims=True)
        joint = step @ joint
        out[layer] = joint
    return out


def rollout(seq: OutputSeq, layer: int = -1, side: str = "self") -> AttentionMap:
    """Attention rollout from the embeddings up to ``layer`` (default: the last captured).

    Raises:
        InputError: for cross-attention, or when layers 0..layer were not all captured.
    """
    checks.views.attention(layer, side=side)
    if side == "cross":
        raise InputError("Rollout follows one stack's self-attention; pick 'self' or 'encoder', not 'cross'.")
    attn, layers, *_ = _side_data(seq, side)
    last = layers[captured_layer_index(layers, layer)]
    if layers[: last + 1] != list(range(last + 1)):
        raise InputError(
            f"Rollout to layer {last} multiplies every layer from 0, but this run holds only "
            f"layers {layer_ranges(layers)}. Capture attention for all layers (attention_layers=None)."
        )
    joint = rollout_matrices(attn[: last + 1].mean(axis=1))  # (layer, pos, pos)
    return _map(seq, side, last, lambda _a: joint[-1], None, "rollout")


def attention(
    seq: OutputSeq, method: str = "mean", layer: int = -1, head: int = 0, side: str = "self"
) -> AttentionMap:
    """One map by name: method 'head' (uses ``head``), 'mean' or 'rollout'."""
    checks.views.attention(layer, head, side, method)
    if method == "head":
        return head_attention(seq, layer, head, side)
    if method == "mean":
        return mean_attention(seq, layer, side)
    if method == "rollout":
        return rollout(seq, layer, side)
    raise InputError(f"Unknown aggregation '{method}': use 'head', 'mean' or 'rollout'.")


# ----- the grid -----------------------------------------------------------------------------------


def _pool_edges(n: int, size: int) -> list[np.ndarray]:
    return np.array_split(np.arange(n), min(n, size))


def pooled(maps: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """Max-pool the last two axes of ``maps`` (..., q, k) to at most ``size`` x ``size``."""
    rows, cols = _pool_edges(maps.shape[-2], size), _pool_edges(maps.shape[-1], size)
    out = np.empty((*maps.shape[:-2], len(rows), len(cols)), dtype=np.float32)
    for i, r in enumerate(rows):
        band = maps[..., r, :].max(axis=-2)  # (..., k)
        for j, c in enumerate(cols):
            out[..., i, j] = band[..., c].max(axis=-1)
    return out


def _head_statistics(attn: np.ndarray, aligned: bool) -> tuple[np.ndarray, ...]:
    """Entropy, first-key, previous-key and self weights per (layer, head) of (layer, head, q, k)."""
    safe = np.clip(attn, 1e-12, 1.0)
    entropy = -(attn * np.log2(safe)).sum(axis=-1).mean(axis=-1)  # (layer, head)
    to_first = attn[..., 0].mean(axis=-1)  # (layer, head)
    n_q = attn.shape[-2]
    if aligned and n_q == attn.shape[-1]:
        diag = np.diagonal(attn, axis1=-2, axis2=-1)  # (layer, head, q)
        to_self = diag.mean(axis=-1)
        prev = np.diagonal(attn, offset=-1, axis1=-2, axis2=-1)  # (layer, head, q - 1)
        to_previous = prev.mean(axis=-1) if n_q > 1 else np.full(to_first.shape, np.nan)
    else:
        to_self = to_previous = np.full(to_first.shape, np.nan)
    return entropy, to_first, to_previous, to_self


def attention_grid(
    seq, layers: list[int] | None = None, side: str = "self", size: int = THUMBNAIL
) -> HeadGrid:
    """Every head of ``layers`` (default: all captured) as thumbnails with per-head statistics."""
    checks.values.optional_whole_list("layers", layers), checks.values.whole("size", size, 1)
    attn, captured, queries, keys, *_ = _side_data(seq, side)
    chosen = (
        captured if layers is None else [captured[captured_layer_index(captured, int(x))] for x in layers]
    )
    picked = attn[[captured.index(x) for x in chosen]]  # (layer, head, q, k)
    entropy, to_first, to_previous, to_self = _head_statistics(picked, aligned=side != "cross")
    return HeadGrid(
        thumbnails=pooled(picked, size),
        layers=list(chosen),
        entropy=entropy.astype(np.float32),
        to_first=to_first.astype(np.float32),
        to_previous=to_previous.astype(np.float32),
        to_self=to_self.astype(np.float32),
        n_queries=len(queries),
        n_keys=len(keys),
        pooled=max(len(queries), len(keys)) > size,
        side=side,
    )
