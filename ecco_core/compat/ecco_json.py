"""ecco's ``printJson=True`` layouts, built from this engine's results.

Each returns an ``EccoData``: a plain ``dict`` with ecco's keys, shapes and types (numpy arrays
where ecco returned them) that, as the last value of a notebook cell, also shows the explorable
(ecco printed the dict and drew the view).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..results import LayerPredictions, Rankings, Saliency, WatchRankings
from .config import is_partial, strip_prefix


def _bundle(plain: str, view: Any) -> dict[str, str]:
    bundle = {"text/plain": plain}
    if view is not None and hasattr(view, "_repr_html_"):
        bundle["text/html"] = view._repr_html_()
    return bundle


class EccoData(dict):
    """ecco's JSON data (a ``dict``), displayed in a notebook as the view it came from."""

    def __init__(self, data: dict, view: Any = None) -> None:
        super().__init__(data)
        self.view = view

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return _bundle(repr(dict(self)), self.view)


class EccoList(list):
    """ecco's JSON list (``layer_predictions``), displayed in a notebook as its view."""

    def __init__(self, data: list, view: Any = None) -> None:
        super().__init__(data)
        self.view = view

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return _bundle(repr(list(self)), self.view)


def saliency_json(result: Saliency, raw_tokens: list[str], tokenizer, config: dict) -> EccoData:
    """ecco's ``primary_attributions(printJson=True)``: ``tokens`` (one dict per token, its value
    for the first generated token) and ``attributions`` (one list per generated token)."""
    first = result.values[0] if len(result.positions) else np.zeros(len(raw_tokens))
    limit = int(result.positions[0]) if len(result.positions) else 0
    tokens = [
        {
            "token": strip_prefix(config, tokenizer.decode([int(token_id)])),
            "token_id": int(token_id),
            "is_partial": is_partial(config, raw),
            "type": "input" if idx < result.n_input_tokens else "output",
            "value": str(first[idx] if idx < limit else 0),
            "position": idx,
        }
        for idx, (token_id, raw) in enumerate(zip(result.token_ids, raw_tokens))
    ]
    attributions = [result.values[i, : int(p)].tolist() for i, p in enumerate(result.positions)]
    return EccoData({"tokens": tokens, "attributions": attributions}, result)


def layer_predictions_json(result: LayerPredictions) -> EccoList:
    """ecco's ``layer_predictions(printJson=True)``: per layer, the top-k as ``{'token', 'prob'
    (a string), 'ranking', 'layer'}``."""
    data = [
        [
            {"token": str(token), "prob": str(np.float32(prob)), "ranking": rank + 1, "layer": int(layer)}
            for rank, (token, prob) in enumerate(zip(tokens, probs))
        ]
        for layer, tokens, probs in zip(result.layers, result.tokens, result.probs)
    ]
    return EccoList(data, result)


def rankings_json(result: Rankings, raw_tokens: list[str], config: dict) -> EccoData:
    """ecco's ``rankings(printJson=True)``: ``input_tokens`` and ``output_tokens`` (repr of the
    prefix-stripped raw tokens), ``rankings`` (layer, position) int32, ``predicted_tokens``
    (layer, position) the token each column ranks, ``token_found_mask`` 0 where it ranks first."""
    positions = result.positions
    ranks = np.asarray(result.ranks, dtype=np.int32)  # (layer, pos)
    chosen = np.asarray([str(t) for t in result.tokens], dtype="U25")
    return EccoData(
        {
            "input_tokens": [repr(strip_prefix(config, raw_tokens[p - 1])) for p in positions],
            "output_tokens": [repr(strip_prefix(config, raw_tokens[p])) for p in positions],
            "rankings": ranks,
            "predicted_tokens": np.broadcast_to(chosen, ranks.shape).copy(),
            "token_found_mask": (ranks != 1).astype(np.float64),
        },
        result,
    )


def watch_json(result: WatchRankings, raw_tokens: list[str], config: dict) -> EccoData:
    """ecco's ``rankings_watch(printJson=True)``: ``input_tokens`` (every token, prefix stripped),
    ``output_tokens`` (repr of each watched token) and ``rankings`` (layer, watched) int32."""
    return EccoData(
        {
            "input_tokens": [strip_prefix(config, t) for t in raw_tokens],
            "output_tokens": [repr(str(t)) for t in result.watch_tokens],
            "rankings": np.asarray(result.ranks, dtype=np.int32),
        },
        result,
    )
