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

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .errors import EccoError, InputError, ModelTypeError

SIDES = ("self", "encoder", "cross")
THUMBNAIL = 24
"""Largest side of one thumbnail in the head grid; longer runs are max-pooled down to it."""


def layers_within_budget(
    n_layers: int, n_heads: int, n_tokens: int, budget_mb: float = 384
) -> list[int] | None:
    """Which layers' attention to keep so that (layer, head, pos, pos) float32 fits ``budget_mb``.

    Returns None (keep every layer) when all fit, else evenly spaced layers, always the last.
    """
    per_layer_mb = n_heads * n_tokens * n_tokens * 4 / 2**20
    fits = int(budget_mb // max(per_layer_mb, 1e-9))
    if fits >= n_layers:
        return None
    if fits < 1:
        return [n_layers - 1]
    return sorted({round(i) for i in np.linspace(0, n_layers - 1, fits)})


class AttentionMissingError(EccoError):
    """The run was made without attention capture."""


@dataclass
class AttentionMap:
    """One token-to-token attention map: a head, the mean over heads, or the rollout."""

    weights: np.ndarray
    """(query_pos, key_pos) float32 weights; each row sums to 1."""
    query_tokens: list[str]
    """query_pos strings (the attending tokens)."""
    key_tokens: list[str]
    """key_pos strings (the attended tokens)."""
    query_offset: int
    """Sequence position of query index 0 (``n_input_tokens`` for an encoder-decoder's decoder)."""
    key_offset: int
    """Sequence position of key index 0."""
    layer: int
    """The model layer (for rollout: the last layer multiplied in)."""
    head: int | None
    """The head, or None for 'mean' and 'rollout'."""
    method: str
    """'head', 'mean' or 'rollout'."""
    side: str = "self"
    """'self', 'encoder' or 'cross'."""

    @property
    def title(self) -> str:
        what = {"head": f"layer {self.layer}, head {self.head}", "mean": f"layer {self.layer}, mean of heads"}
        side = {"self": "", "encoder": " (encoder)", "cross": " (cross-attention)"}[self.side]
        return what.get(self.method, f"rollout through layers 0–{self.layer}") + side

    def top_keys(self, query: int, k: int = 3) -> list[tuple[int, str, float]]:
        """The ``k`` keys that query index ``query`` attends to most: (key index, token, weight)."""
        row = self.weights[query]  # (key_pos,)
        order = np.argsort(-row, kind="stable")[:k]
        return [(int(j), self.key_tokens[j], float(row[j])) for j in order]

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per (query, key) pair."""
        n_q, n_k = self.weights.shape
        return pd.DataFrame(
            {
                "query_position": np.repeat(np.arange(n_q) + self.query_offset, n_k),
                "query_token": np.repeat(np.array(self.query_tokens, dtype=object), n_k),
                "key_position": np.tile(np.arange(n_k) + self.key_offset, n_q),
                "key_token": np.tile(np.array(self.key_tokens, dtype=object), n_q),
                "weight": self.weights.reshape(-1).astype(float),
            }
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["weights"] = self.weights.astype(float).tolist()
        return data

    def figure(self, zmax: float | None = None):
        """Heatmap; ``zmax`` caps the colour scale (e.g. to look past an attention sink)."""
        from .figures.attention import attention_map_figure

        return attention_map_figure(self, zmax=zmax)


@dataclass
class HeadGrid:
    """Every head of some layers, as thumbnails, plus per-head statistics."""

    thumbnails: np.ndarray
    """(layer, head, rows, cols) float32 maps, max-pooled to at most ``THUMBNAIL`` a side."""
    layers: list[int]
    """The model layer of each thumbnail row."""
    entropy: np.ndarray
    """(layer, head) mean entropy of a query's attention, in bits."""
    to_first: np.ndarray
    """(layer, head) mean weight on the first key (the 'attention sink')."""
    to_previous: np.ndarray
    """(layer, head) mean weight on the key just before the query (self-attention only, else NaN)."""
    to_self: np.ndarray
    """(layer, head) mean weight on the query's own position (self-attention only, else NaN)."""
    n_queries: int
    n_keys: int
    pooled: bool
    """Whether thumbnails were max-pooled (runs longer than ``THUMBNAIL`` tokens)."""
    side: str = "self"

    @property
    def n_heads(self) -> int:
        return int(self.thumbnails.shape[1])

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, head) with its statistics."""
        n_layers, n_heads = self.entropy.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, n_heads),
                "head": np.tile(np.arange(n_heads), n_layers),
                "entropy_bits": self.entropy.reshape(-1).astype(float),
                "to_first": self.to_first.reshape(-1).astype(float),
                "to_previous": self.to_previous.reshape(-1).astype(float),
                "to_self": self.to_self.reshape(-1).astype(float),
            }
        )

    def to_dict(self) -> dict:
        return {
            "side": self.side,
            "layers": list(self.layers),
            "n_queries": self.n_queries,
            "n_keys": self.n_keys,
            "heads": self.to_frame().replace({np.nan: None}).to_dict(orient="records"),
        }

    def figure(self):
        from .figures.attention import head_grid_figure

        return head_grid_figure(self)


# ----- reading the run ----------------------------------------------------------------------------


def available_sides(seq) -> list[str]:
    """The sides with captured attention ('self'; 'encoder' and 'cross' on an encoder-decoder)."""
    sides = ["self"] if seq.attentions is not None else []
    encoder, decoder = seq.extras.get("encoder", {}), seq.extras.get("decoder", {})
    if encoder.get("attentions") is not None:
        sides.append("encoder")
    if decoder.get("cross_attentions") is not None:
        sides.append("cross")
    return sides


def missing_attention_message(seq) -> str:
    return (
        f"This run of {seq.model_name or 'the model'} has no attention weights. Turn on "
        "'Capture attention' in the sidebar's generation settings and press Run again "
        "(in Python: lm.generate(..., attention=True) or lm(text, attention=True))."
    )


def _side_data(seq, side: str) -> tuple[np.ndarray, list[int], list[str], list[str], int, int]:
    """(attentions (layer, head, query, key), layers, query tokens, key tokens, query/key offsets)."""
    if side not in SIDES:
        raise InputError(f"Unknown attention side '{side}': use one of {', '.join(SIDES)}.")
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


def _layer_index(layers: list[int], layer: int) -> int:
    """Index of ``layer`` in the captured ``layers``; negative values count from the last captured."""
    if layer < 0 and -len(layers) <= layer:
        return len(layers) + layer
    if layer not in layers:
        raise InputError(
            f"Layer {layer} has no captured attention: this run holds layers {_ranges(layers)}. "
            "Capture it with attention_layers=None (all) or include it."
        )
    return layers.index(layer)


def _ranges(layers: list[int]) -> str:
    return ", ".join(str(x) for x in layers) if len(layers) < 8 else f"{layers[0]}..{layers[-1]}"


def _map(seq, side: str, layer: int, weights_of, head: int | None, method: str) -> AttentionMap:
    attn, layers, queries, keys, q_off, k_off = _side_data(seq, side)
    index = _layer_index(layers, layer)
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


def head_attention(seq, layer: int, head: int, side: str = "self") -> AttentionMap:
    """One head's (query, key) weights at ``layer`` (negative: counted from the last captured)."""
    attn = _side_data(seq, side)[0]
    if not 0 <= head < attn.shape[1]:
        raise InputError(f"Head {head} does not exist: this model has heads 0..{attn.shape[1] - 1}.")
    return _map(seq, side, layer, lambda a: a[head], head, "head")


def mean_attention(seq, layer: int, side: str = "self") -> AttentionMap:
    """The mean over heads of ``layer``'s weights (rows still sum to 1)."""
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


def rollout(seq, layer: int = -1, side: str = "self") -> AttentionMap:
    """Attention rollout from the embeddings up to ``layer`` (default: the last captured).

    Raises:
        InputError: for cross-attention, or when layers 0..layer were not all captured.
    """
    if side == "cross":
        raise InputError("Rollout follows one stack's self-attention; pick 'self' or 'encoder', not 'cross'.")
    attn, layers, *_ = _side_data(seq, side)
    last = layers[_layer_index(layers, layer)]
    if layers[: last + 1] != list(range(last + 1)):
        raise InputError(
            f"Rollout to layer {last} multiplies every layer from 0, but this run holds only "
            f"layers {_ranges(layers)}. Capture attention for all layers (attention_layers=None)."
        )
    joint = rollout_matrices(attn[: last + 1].mean(axis=1))  # (layer, pos, pos)
    return _map(seq, side, last, lambda _a: joint[-1], None, "rollout")


def attention(seq, method: str = "mean", layer: int = -1, head: int = 0, side: str = "self") -> AttentionMap:
    """One map by name: method 'head' (uses ``head``), 'mean' or 'rollout'."""
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
    attn, captured, queries, keys, *_ = _side_data(seq, side)
    chosen = captured if layers is None else [captured[_layer_index(captured, int(x))] for x in layers]
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
