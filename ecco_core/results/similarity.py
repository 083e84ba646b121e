"""Layer x layer similarity of representations (CKA, CCA, SVCCA, PWCCA)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .base import Drawable


@dataclass
class LayerSimilarity(Drawable):
    """Similarity of every pair of layers' representations of one run."""

    matrix: np.ndarray
    """(layer, layer) score of each pair; 1 on the diagonal."""
    layers: list[int]
    """Layer numbers of the rows/columns (hidden: 0 = embeddings, i = after block i; ffn: block)."""
    method: str
    source: str
    n_positions: int
    """How many positions were compared."""
    note: str = ""
    """What the reader should know about this matrix (reductions, symmetrising)."""
    side: str = ""
    """'encoder' or 'decoder' on an encoder-decoder run; '' otherwise."""

    def labels(self) -> list[str]:
        if self.source == "hidden":
            return ["emb" if layer == 0 else str(layer) for layer in self.layers]
        return [str(layer) for layer in self.layers]

    def most_alike(self) -> np.ndarray:
        """(layer,) for each layer, the index of the other layer most alike to it."""
        off = self.matrix.copy()
        np.fill_diagonal(off, -np.inf)
        return off.argmax(axis=1)

    def to_frame(self) -> pd.DataFrame:
        labels = self.labels()
        n = len(labels)
        rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        return pd.DataFrame(
            {
                "layer_a": [labels[i] for i in rows.ravel()],
                "layer_b": [labels[j] for j in cols.ravel()],
                "similarity": self.matrix.ravel().astype(float),
            }
        )

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "source": self.source,
            "side": self.side,
            "layers": self.labels(),
            "n_positions": int(self.n_positions),
            "matrix": self.matrix.astype(float).tolist(),
            "note": self.note,
        }


def neighbour_count(most_alike: np.ndarray) -> int:
    """How many layers have a direct neighbour as their most similar other layer.

    Args:
        most_alike: (layer,) int index (into the same list of layers) of each layer's most similar one.

    Returns:
        The number of rows ``i`` with ``|most_alike[i] - i| == 1``.
    """
    most_alike = np.asarray(most_alike)
    return int(np.sum(np.abs(most_alike - np.arange(most_alike.shape[0])) == 1))
