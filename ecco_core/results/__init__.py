"""Results: plain dataclasses of numpy arrays (no torch, no plotly), with ``to_frame()``,
``to_dict()`` and ``figure()``; they hold no reference to the run or the model."""

from __future__ import annotations

from .attention import AttentionMap, HeadGrid
from .attribution import Saliency
from .base import Drawable, register_figure, register_html
from .labels import token_label, visible_text
from .lens import LayerPredictions, Rankings, WatchRankings
from .masked import MaskedPredictions
from .neurons import Factorization, NeuronTrace, Routing, TopNeurons
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
    "Routing",
    "Saliency",
    "TopNeurons",
    "WatchRankings",
    "register_figure",
    "register_html",
    "token_label",
    "visible_text",
]
