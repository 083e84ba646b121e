"""Attention results: one (query x key) map, and the layer x head grid of thumbnails."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .base import Drawable


@dataclass
class AttentionMap(Drawable):
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


@dataclass
class HeadGrid(Drawable):
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


def default_grid_layers(layers: Sequence[int]) -> list[int]:
    """The layers the head grid shows at first: all up to 12, else about 8 evenly spaced ones."""
    step = max(1, len(layers) // 8) if len(layers) > 12 else 1
    return list(layers)[::step]


def grid_point_to_head(index: int, layers: Sequence[int], n_heads: int) -> tuple[int, int]:
    """(layer, head) of point ``index`` of the head grid's click layer, which runs head-fastest.

    Args:
        index: the point's index in the grid's clickable trace (layer-major, head-minor).
        layers: the model layer of each grid row.
        n_heads: heads per layer.
    """
    return int(layers[index // n_heads]), int(index % n_heads)


def clicked_head(points: Sequence[dict], layers: Sequence[int], n_heads: int) -> tuple[int, int] | None:
    """(layer, head) of a click on the head grid, from a plotly selection's points (None: no click).

    Only the figure's second trace (``curve_number`` 1, the invisible click targets) counts.
    """
    if not points or points[0].get("curve_number") != 1 or points[0].get("point_index") is None:
        return None
    return grid_point_to_head(int(points[0]["point_index"]), layers, n_heads)


def max_past_first(weights: np.ndarray) -> float | None:
    """The largest attention weight on any key but the first (where attention sinks pile up).

    Args:
        weights: (..., key) float attention weights, e.g. (query, key) or one query's (key,).

    Returns:
        The maximum over ``weights[..., 1:]``, or None with a single key.
    """
    weights = np.asarray(weights)
    return float(weights[..., 1:].max()) if weights.shape[-1] > 1 else None
