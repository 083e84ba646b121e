"""Plotly builders: results in, ``go.Figure`` out. Never shows, never imports streamlit or torch.

Importing this package registers each builder as its result type's ``figure()``.
"""

from __future__ import annotations

from ..results import (
    AttentionMap,
    Factorization,
    HeadGrid,
    LayerPredictions,
    LayerSimilarity,
    MaskedPredictions,
    NeuronTrace,
    Rankings,
    Routing,
    Saliency,
    TopNeurons,
    WatchRankings,
    register_figure,
)
from ..results.interventions import LogitAttribution, Patching, Regeneration
from .attention import attention_map_figure, head_grid_figure
from .attribution import saliency_heatmap
from .base import base_layout, sequential_color
from .interventions import logit_attribution_figure, patching_figure, regeneration_figure
from .lens import layer_predictions_figure, rankings_figure, watch_figure
from .masked import masked_predictions_figure
from .neurons import (
    factor_heatmap,
    neuron_trace_figure,
    routing_heatmap,
    similarity_heatmap,
    top_neurons_bar,
)

for _type, _builder in (
    (LayerPredictions, layer_predictions_figure),
    (Rankings, rankings_figure),
    (WatchRankings, watch_figure),
    (Saliency, saliency_heatmap),
    (Factorization, factor_heatmap),
    (TopNeurons, top_neurons_bar),
    (NeuronTrace, neuron_trace_figure),
    (LayerSimilarity, similarity_heatmap),
    (AttentionMap, attention_map_figure),
    (HeadGrid, head_grid_figure),
    (MaskedPredictions, masked_predictions_figure),
    (Routing, routing_heatmap),
    (Patching, patching_figure),  # interventions (issue 16)
    (Regeneration, regeneration_figure),
    (LogitAttribution, logit_attribution_figure),
):
    register_figure(_type, _builder)

__all__ = ["base_layout", "sequential_color"]
