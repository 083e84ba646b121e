"""Results: plain dataclasses of numpy arrays (no torch, no plotly), with ``to_frame()``,
``to_dict()`` and ``figure()``; they hold no reference to the run or the model."""

from __future__ import annotations

from .attention import AttentionMap, HeadGrid
from .attribution import Saliency
from .base import Drawable, register_figure
from .labels import token_label, visible_text
from .lens import LayerPredictions, Rankings, WatchRankings
from .masked import MaskedPredictions
from .neurons import Factorization, NeuronTrace, TopNeurons
from .similarity import LayerSimilarity

__all__ = [
    "AttentionMap",
    "Drawable",
    "Factorization",
    "HeadGrid",
    "LayerPredictions",
    "LayerSimilarity",
    "MaskedPredictions",
    "NeuronTrace",
    "Rankings",
    "Saliency",
    "TopNeurons",
    "WatchRankings",
    "register_figure",
    "token_label",
    "visible_text",
]
