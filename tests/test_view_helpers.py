"""The views' former inline computations (now in ecco_core), against the expressions they replaced."""

from __future__ import annotations

import numpy as np

from ecco_core import highlight
from ecco_core.results import attention as attention_results
from ecco_core.results import lens as lens_results
from ecco_core.results import similarity as similarity_results


def test_rank_1_layers_match_the_rankings_view_expressions():
    rng = np.random.default_rng(0)
    ranks = rng.integers(1, 4, size=(7, 9))  # (layer, pos)
    ranks[:, 0] = 5  # never at rank 1
    layers = np.arange(3, 10)
    top = ranks == 1
    settled = top[::-1].cumprod(axis=0)[::-1].astype(bool)
    assert (
        lens_results.first_layer_at_rank_1(ranks, layers) == np.where(top.any(0), layers[top.argmax(0)], -1)
    ).all()
    assert (
        lens_results.settled_layer(ranks, layers) == np.where(settled.any(0), layers[settled.argmax(0)], -1)
    ).all()
    assert lens_results.settled_layer(np.array([[1], [2], [1]]), np.array([0, 1, 2])).tolist() == [2]
    assert int(lens_results.first_layer_at_rank_1(np.array([4, 1, 1]), np.array([0, 5, 9]))) == 5  # (layer,)


def test_shares_and_sign_classes():
    full = np.array([[0.0, -2.0, 1.0], [0.0, 0.0, 0.0]])  # (factor, pos)
    assert np.allclose(highlight.peak_shares(full), [[0, 1, 0.5], [0, 0, 0]])
    assert highlight.sign_classes(full[0]).tolist() == [-1, 1, 0]
    assert np.allclose(
        highlight.strongest_shares(highlight.peak_shares(full), np.array([-1, 0, 0])), [0, 1, 0.5]
    )


def test_neighbours_and_attention_helpers():
    assert similarity_results.neighbour_count(np.array([1, 0, 3, 2, 0])) == 4
    assert attention_results.default_grid_layers(list(range(30)))[:3] == [0, 3, 6]
    assert attention_results.default_grid_layers([0, 1, 2]) == [0, 1, 2]
    assert attention_results.grid_point_to_head(4, [4, 8], 3) == (8, 1)
    assert attention_results.clicked_head([{"curve_number": 1, "point_index": 4}], [4, 8], 3) == (8, 1)
    assert attention_results.clicked_head([{"curve_number": 0, "point_index": 7}], [4, 8], 3) is None
    assert attention_results.clicked_head([], [4, 8], 3) is None
    weights = np.array([[0.9, 0.1], [0.5, 0.5]])  # (query, key)
    assert (
        attention_results.max_past_first(weights) == 0.5
        and attention_results.max_past_first(np.ones((2, 1))) is None
    )


def test_download_buttons_make_their_files_only_on_click(monkeypatch):
    """The page holds callables, not a CSV and a JSON of every drawn result."""
    import json

    import pandas as pd

    from ecco_app import widgets

    class Result:
        made = 0

        def to_frame(self):
            Result.made += 1
            return pd.DataFrame({"layer": [0, 1], "p": [0.25, 0.5]})

        def to_dict(self):
            Result.made += 1
            return {"p": [0.25, 0.5]}

    buttons = {}

    class Column:
        def download_button(self, label, data, file_name, mime, **kwargs):
            buttons[file_name] = (label, data)

    monkeypatch.setattr(widgets.st, "columns", lambda n: [Column(), Column()])
    widgets.download_buttons(Result(), "lp", "lp-download", what="predictions")
    assert Result.made == 0 and all(callable(data) for _, data in buttons.values())
    assert buttons["lp.csv"][0] == "Download predictions CSV"
    assert buttons["lp.csv"][1]() == "layer,p\n0,0.25\n1,0.5\n"
    assert json.loads(buttons["lp.json"][1]()) == {"p": [0.25, 0.5]}
    widgets.download_buttons(Result(), "dla", "dla-download", frame=lambda: pd.DataFrame({"x": [7]}))
    assert buttons["dla.csv"][1]() == "x\n7\n"
