"""Masked-LM predictions per layer at one position."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import Drawable


@dataclass
class MaskedPredictions(Drawable):
    """Top-k tokens for one position after each layer of a masked LM."""

    token_ids: np.ndarray
    """(layer + 1, k) int64 predicted token ids, best first; row 0 reads the embeddings."""
    tokens: list[list[str]]
    """(layer + 1) x k predicted token strings."""
    probs: np.ndarray
    """(layer + 1, k) float32 softmax probabilities."""
    position: int
    """The predicted position in the sequence."""
    token: str
    """The token at that position in the input (often the mask token)."""

    def to_frame(self) -> pd.DataFrame:
        n_layers, k = self.probs.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(np.arange(n_layers), k),
                "rank": np.tile(np.arange(1, k + 1), n_layers),
                "token": [t for row in self.tokens for t in row],
                "token_id": self.token_ids.reshape(-1),
                "probability": self.probs.reshape(-1).astype(float),
            }
        )

    def to_dict(self) -> dict:
        return {
            "position": self.position,
            "token": self.token,
            "tokens": self.tokens,
            "token_ids": self.token_ids.tolist(),
            "probs": self.probs.astype(float).tolist(),
        }
