"""Logit-lens results: what each layer predicts, and the ranks of chosen or watched tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import Drawable


@dataclass
class LayerPredictions(Drawable):
    """Top-k tokens each layer would predict for the token at ``position``."""

    position: int
    """The position of the token being predicted (the hidden state is at ``position - 1``)."""
    lens: str
    """'normed' (final norm applied), 'raw' (ecco's read-out) or 'ecco' (raw, ecco's layer numbers)."""
    layers: np.ndarray
    """(layer,) int: hidden-state index of each row, 0 the embeddings; with lens 'ecco', ecco's
    layer number (0 the first block's output, no embedding row)."""
    token_ids: np.ndarray
    """(layer, k) int64 ids of the top-k predictions, most likely first."""
    tokens: np.ndarray
    """(layer, k) str: readable text of ``token_ids``."""
    probs: np.ndarray
    """(layer, k) float32 probabilities of ``token_ids``."""
    target_ranks: np.ndarray
    """(layer,) int64 rank of the token actually at ``position`` (-1 for the unwritten next token)."""
    target_probs: np.ndarray
    """(layer,) float32 probability of that token (NaN for the unwritten next token)."""
    target_id: int
    """Id of the token at ``position``, or -1 at position ``n_tokens``."""
    target_token: str
    """Text of the token at ``position`` ('' at position ``n_tokens``)."""
    context_token: str
    """Text of the token at ``position - 1``, the last one the prediction sees."""

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, rank): layer, rank, token, token_id, prob, is_target."""
        n_layers, k = self.token_ids.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, k),
                "rank": np.tile(np.arange(1, k + 1), n_layers),
                "token": self.tokens.ravel(),
                "token_id": self.token_ids.ravel(),
                "prob": self.probs.ravel().astype(float),
                "is_target": (self.token_ids == self.target_id).ravel(),
            }
        )

    def to_dict(self) -> dict:
        """JSON-ready; ``predictions`` is ecco's printJson: per layer, a list of
        ``{'token', 'prob' (str), 'ranking', 'layer'}``."""
        predictions = [
            [
                {"token": str(tok), "prob": str(float(p)), "ranking": r + 1, "layer": int(layer)}
                for r, (tok, p) in enumerate(zip(row_tokens, row_probs))
            ]
            for layer, row_tokens, row_probs in zip(self.layers, self.tokens, self.probs)
        ]
        return {
            "position": self.position,
            "lens": self.lens,
            "target_token": self.target_token,
            "target_id": self.target_id,
            "target_ranks": self.target_ranks.tolist(),
            "target_probs": [None if np.isnan(p) else float(p) for p in self.target_probs],
            "predictions": predictions,
        }


@dataclass
class Rankings(Drawable):
    """Rank, per layer, of the token that actually came next, at each position."""

    lens: str
    layers: np.ndarray
    """(layer,) int: hidden-state index of each row, 0 the embeddings; with lens 'ecco', ecco's
    layer number (0 the first block's output, no embedding row)."""
    positions: np.ndarray
    """(pos,) int: positions of the ranked tokens (each predicted from ``position - 1``)."""
    token_ids: np.ndarray
    """(pos,) int64 ids of the ranked tokens."""
    tokens: np.ndarray
    """(pos,) str: the ranked tokens."""
    context_tokens: np.ndarray
    """(pos,) str: the token before each ranked token (the one the prediction is made at)."""
    ranks: np.ndarray
    """(layer, pos) int64: 1 means the layer's top prediction is the token."""
    probs: np.ndarray
    """(layer, pos) float32 probability of the token."""
    predicted_ids: np.ndarray
    """(layer, pos) int64: each layer's top prediction."""
    predicted_tokens: np.ndarray
    """(layer, pos) str: text of ``predicted_ids``."""
    n_input_tokens: int
    """Positions below this are prompt tokens."""

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, position): layer, position, token, context, rank, prob, predicted."""
        n_layers, n_pos = self.ranks.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, n_pos),
                "position": np.tile(self.positions, n_layers),
                "token": np.tile(self.tokens, n_layers),
                "context_token": np.tile(self.context_tokens, n_layers),
                "part": np.tile(np.where(self.positions < self.n_input_tokens, "prompt", "output"), n_layers),
                "rank": self.ranks.ravel(),
                "prob": self.probs.ravel().astype(float),
                "predicted_token": self.predicted_tokens.ravel(),
            }
        )

    def to_dict(self) -> dict:
        """JSON-ready, ecco's printJson keys (``input_tokens`` and ``output_tokens`` as repr)
        plus ``positions``, ``layers``, ``probs`` and ``lens``. ``token_found_mask`` is 0 where
        the layer's top prediction is the token."""
        return {
            "input_tokens": [repr(str(t)) for t in self.context_tokens],
            "output_tokens": [repr(str(t)) for t in self.tokens],
            "rankings": self.ranks.tolist(),
            "predicted_tokens": self.predicted_tokens.tolist(),
            "token_found_mask": (self.ranks != 1).astype(int).tolist(),
            "positions": self.positions.tolist(),
            "layers": self.layers.tolist(),
            "probs": self.probs.astype(float).tolist(),
            "lens": self.lens,
        }


@dataclass
class WatchRankings(Drawable):
    """Rank, per layer, of chosen candidate tokens at one position."""

    position: int
    """The position being predicted (hidden state at ``position - 1``)."""
    lens: str
    layers: np.ndarray
    """(layer,) int: hidden-state index of each row, 0 the embeddings; with lens 'ecco', ecco's
    layer number (0 the first block's output, no embedding row)."""
    watch_ids: np.ndarray
    """(cand,) int64 ids of the watched tokens."""
    watch_tokens: np.ndarray
    """(cand,) str: text of the watched tokens (leading spaces kept)."""
    ranks: np.ndarray
    """(layer, cand) int64 rank of each watched token; 1 is the layer's top prediction."""
    probs: np.ndarray
    """(layer, cand) float32 probability of each watched token."""
    predicted_tokens: np.ndarray
    """(layer,) str: each layer's top prediction at this position."""
    input_tokens: list[str]
    """The tokens the prediction sees: positions ``0 .. position - 1``."""

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, candidate): layer, token, token_id, rank, prob, predicted_token."""
        n_layers, n_cand = self.ranks.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, n_cand),
                "position": self.position,
                "token": np.tile(self.watch_tokens, n_layers),
                "token_id": np.tile(self.watch_ids, n_layers),
                "rank": self.ranks.ravel(),
                "prob": self.probs.ravel().astype(float),
                "predicted_token": np.repeat(self.predicted_tokens, n_cand),
            }
        )

    def to_dict(self) -> dict:
        """JSON-ready, ecco's printJson keys (``output_tokens`` as repr) plus extras."""
        return {
            "input_tokens": list(self.input_tokens),
            "output_tokens": [repr(str(t)) for t in self.watch_tokens],
            "rankings": self.ranks.tolist(),
            "position": self.position,
            "layers": self.layers.tolist(),
            "watch_ids": self.watch_ids.tolist(),
            "probs": self.probs.astype(float).tolist(),
            "lens": self.lens,
        }


def first_layer_at_rank_1(ranks: np.ndarray, layers: np.ndarray) -> np.ndarray:
    """The first layer (top to bottom) where the token is the top prediction.

    Args:
        ranks: (layer, ...) int ranks, 1 = top prediction, e.g. (layer, pos) or (layer,).
        layers: (layer,) int hidden-state index of each row of ``ranks``.

    Returns:
        (...) int: the layer of the first rank 1 along axis 0, -1 where the rank is never 1.
    """
    top = np.asarray(ranks) == 1  # (layer, ...)
    return np.where(top.any(0), np.asarray(layers)[top.argmax(0)], -1)


def settled_layer(ranks: np.ndarray, layers: np.ndarray) -> np.ndarray:
    """The layer from which the token stays the top prediction down to the last layer given.

    Args:
        ranks: (layer, pos) int ranks, 1 = top prediction.
        layers: (layer,) int hidden-state index of each row of ``ranks``.

    Returns:
        (pos,) int: the first layer of the trailing run of rank 1, -1 where the last layer's rank is not 1.
    """
    top = np.asarray(ranks) == 1  # (layer, pos)
    settled = top[::-1].cumprod(axis=0)[::-1].astype(bool)  # (layer, pos): rank 1 from here to the last
    return np.where(settled.any(0), np.asarray(layers)[settled.argmax(0)], -1)
