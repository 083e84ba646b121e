"""Interventions: patching grids (approximate and exact), a regeneration under an intervention,
direct logit attribution. Plain data: numpy arrays, no torch, no plotly."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import InputError
from .base import Drawable

METRICS = ("logit_diff", "prob")
"""'logit_diff': answer logit minus foil logit; 'prob': the answer's probability."""
SITE_NAMES = {"resid": "residual stream", "attn": "attention output", "mlp": "MLP output"}


def site_rows(site: str, n_rows: int) -> list[str]:
    """Row labels of a grid: 'emb', 'L0' .. for the residual stream (after block l), 'L0' .. else."""
    if site == "resid":
        return ["emb", *(f"after L{i}" for i in range(n_rows - 1))]
    return [f"L{i}" for i in range(n_rows)]


@dataclass
class Patching(Drawable):
    """Effects of patching corrupted-run activations into the clean run, per site, layer, position.

    Every value is ``metric(clean run with that one activation patched) - metric(clean run)``.
    """

    approx: dict[str, np.ndarray]
    """site -> (layer, pos) attribution patching (first-order) estimate; 'resid' has layer + 1 rows."""
    exact: dict[str, np.ndarray]
    """site -> (layer, pos) exact patching effect, NaN where not computed."""
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    metric: str
    answer: str
    foil: str | None
    metric_clean: float
    """The metric of the clean run."""
    metric_corrupted: float
    """The metric of the corrupted run."""

    @property
    def sites(self) -> list[str]:
        return list(self.approx)

    def grid(self, site: str, kind: str = "approx") -> np.ndarray:
        """(layer, pos) values of ``site``: 'approx' or 'exact' (NaN where not computed)."""
        if site not in self.approx:
            raise InputError(f"site must be one of {', '.join(self.approx)}, not {site!r}.")
        if kind not in ("approx", "exact"):
            raise InputError(f"kind must be 'approx' or 'exact', not {kind!r}.")
        return (self.approx if kind == "approx" else self.exact)[site]

    def with_exact(self, site: str, cells: list[tuple[int, int]], values: np.ndarray) -> Patching:
        """A copy with exact values at ``cells`` (layer, position) of ``site``."""
        exact = {k: v.copy() for k, v in self.exact.items()}
        for (layer, pos), value in zip(cells, values):
            exact[site][layer, pos] = value
        return replace(self, exact=exact)

    def to_frame(self) -> pd.DataFrame:
        frames = []
        for site, grid in self.approx.items():
            layers, positions = np.meshgrid(np.arange(grid.shape[0]), np.arange(grid.shape[1]), indexing="ij")
            frames.append(
                pd.DataFrame(
                    {
                        "site": site,
                        "layer": np.asarray(site_rows(site, grid.shape[0]))[layers.ravel()],
                        "position": positions.ravel(),
                        "clean_token": np.asarray(self.clean_tokens, dtype=object)[positions.ravel()],
                        "corrupted_token": np.asarray(self.corrupted_tokens, dtype=object)[positions.ravel()],
                        "approximation": grid.ravel().astype(float),
                        "exact": self.exact[site].ravel().astype(float),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def to_dict(self) -> dict:
        def plain(grid: np.ndarray) -> list:
            return [[None if np.isnan(x) else float(x) for x in row] for row in grid]

        return {
            "metric": self.metric,
            "answer": self.answer,
            "foil": self.foil,
            "metric_clean": self.metric_clean,
            "metric_corrupted": self.metric_corrupted,
            "clean_tokens": self.clean_tokens,
            "corrupted_tokens": self.corrupted_tokens,
            "approx": {s: plain(g) for s, g in self.approx.items()},
            "exact": {s: plain(g) for s, g in self.exact.items()},
        }

    def comparison(self) -> pd.DataFrame:
        """Every cell with an exact value, beside its approximation."""
        frame = self.to_frame()
        return frame[frame["exact"].notna()].reset_index(drop=True)


@dataclass
class Regeneration(Drawable):
    """Two greedy continuations of one prompt: the model as it is, and under an intervention."""

    prompt_tokens: list[str]
    original_tokens: list[str]
    """n generated tokens of the unchanged model."""
    original_p: np.ndarray
    """(n,) each original token's probability under the unchanged model."""
    original_p_intervened: np.ndarray
    """(n,) the same tokens' probabilities under the intervention (same prefixes)."""
    intervened_tokens: list[str]
    """n generated tokens under the intervention."""
    intervened_p: np.ndarray
    """(n,) each intervened token's probability under the intervention."""
    intervened_p_original: np.ndarray
    """(n,) the same tokens' probabilities under the unchanged model (same prefixes)."""
    description: str
    """What was done, in words."""
    original_ids: list[int] = field(default_factory=list)
    intervened_ids: list[int] = field(default_factory=list)

    @property
    def first_divergence(self) -> int | None:
        """Index of the first generated token that differs, or None if the continuations agree."""
        for i, (a, b) in enumerate(zip(self.original_ids, self.intervened_ids)):
            if a != b:
                return i
        return (
            None
            if len(self.original_ids) == len(self.intervened_ids)
            else min(len(self.original_ids), len(self.intervened_ids))
        )

    def to_frame(self) -> pd.DataFrame:
        n = max(len(self.original_tokens), len(self.intervened_tokens))

        def pad(values, fill=None) -> list:
            values = list(values)
            return values + [fill] * (n - len(values))

        return pd.DataFrame(
            {
                "step": np.arange(n),
                "original": pad(self.original_tokens),
                "p_original": pad(self.original_p.astype(float), np.nan),
                "p_original_intervened": pad(self.original_p_intervened.astype(float), np.nan),
                "intervened": pad(self.intervened_tokens),
                "p_intervened": pad(self.intervened_p.astype(float), np.nan),
                "p_intervened_original": pad(self.intervened_p_original.astype(float), np.nan),
            }
        )

    def to_dict(self) -> dict:
        return {
            "description": self.description,
            "prompt": "".join(self.prompt_tokens),
            "original": self.original_tokens,
            "intervened": self.intervened_tokens,
            "first_divergence": self.first_divergence,
            **{
                k: getattr(self, k).astype(float).tolist()
                for k in ("original_p", "original_p_intervened", "intervened_p", "intervened_p_original")
            },
        }


@dataclass
class LogitAttribution(Drawable):
    """Direct logit attribution: what each component wrote into one token's logit, read through
    the final norm frozen at the run's own scale. ``contributions.sum()`` equals ``logit``."""

    labels: list[str]
    """component names: 'embeddings', 'L0 attn', 'L0 mlp', ..., 'bias' (what the read-out adds)."""
    contributions: np.ndarray
    """(component,) each component's share of the logit, in logit units."""
    head_contributions: np.ndarray | None
    """(layer, head) each attention head's share (the layer's 'attn' is their sum plus the
    output projection's bias), or None."""
    logit: float
    """The model's own logit of the token (before any soft-cap)."""
    token: str
    position: int
    """The position whose token is explained (predicted from the state at ``position - 1``)."""
    tolerance: float
    """How far ``contributions.sum()`` may lie from ``logit`` in float32 (derived, see the note)."""
    note: str = ""

    @property
    def total(self) -> float:
        return float(self.contributions.sum())

    @property
    def sum_error(self) -> float:
        """|sum of contributions - logit|."""
        return abs(self.total - self.logit)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"component": self.labels, "contribution": self.contributions.astype(float)})

    def heads_frame(self) -> pd.DataFrame:
        if self.head_contributions is None:
            return pd.DataFrame(columns=["layer", "head", "contribution"])
        layers, heads = np.meshgrid(*map(np.arange, self.head_contributions.shape), indexing="ij")
        return pd.DataFrame(
            {
                "layer": layers.ravel(),
                "head": heads.ravel(),
                "contribution": self.head_contributions.ravel().astype(float),
            }
        )

    def to_dict(self) -> dict:
        heads = self.head_contributions
        return {
            "token": self.token,
            "position": self.position,
            "logit": self.logit,
            "sum": self.total,
            "tolerance": self.tolerance,
            "components": dict(zip(self.labels, self.contributions.astype(float).tolist())),
            "heads": None if heads is None else heads.astype(float).tolist(),
            "note": self.note,
        }
