"""Input saliency: how much each earlier token drove each explained token."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import PositionError
from .base import Drawable


@dataclass
class Saliency(Drawable):
    """Input saliency of each explained token over the tokens before it (ecco's ``saliency``)."""

    method: str
    target: str
    tokens: list[str]
    """pos token strings of the whole sequence."""
    token_ids: np.ndarray
    """(pos,) int64 token ids."""
    n_input_tokens: int
    positions: np.ndarray
    """(n_out,) positions of the explained tokens (the generated ones by default)."""
    values: np.ndarray
    """(n_out, pos) score of each earlier token for each explained token; 0 at and after it."""
    target_values: np.ndarray
    """(n_out,) the target function at the real input (probability, logit or difference)."""
    unit: str = ""
    signed: np.ndarray | None = None
    """(n_out, pos) signed contributions (sum over embedding dims of the attribution), or None."""
    baseline_values: np.ndarray | None = None
    """(n_out,) the target function at the IG baseline, or None."""
    foil: str | None = None
    foil_id: int | None = None
    n_steps: int | None = None
    baseline: str | None = None
    quadrature: str | None = None
    style: str = "minimal"
    backend: str | None = None
    """What computed the gradients: "hand-written" (``analysis.attribution.hand_written``) or
    "autograd"; None for methods without gradients (erasure, attention)."""
    evaluations: np.ndarray | None = None
    """(n_out,) gradient evaluations each explained token used (adaptive IG, where ``n_steps`` is
    the most it may use), or None."""

    @property
    def completeness_gap(self) -> np.ndarray | None:
        """(n_out,) sum of signed attributions minus (f(x) - f(baseline)); IG only."""
        if self.signed is None or self.baseline_values is None:
            return None
        return self.signed.sum(-1) - (self.target_values - self.baseline_values)

    @property
    def completeness_error(self) -> np.ndarray | None:
        """(n_out,) |completeness gap| relative to |f(x) - f(baseline)|; IG only."""
        gap = self.completeness_gap
        if gap is None:
            return None
        change = np.abs(self.target_values - self.baseline_values)
        return np.abs(gap) / np.maximum(change, 1e-12)

    def row(self, position: int) -> np.ndarray:
        """(pos,) scores for the explained token at ``position``."""
        hits = np.flatnonzero(self.positions == position)
        if not len(hits):
            raise PositionError(
                f"Position {position} was not explained; explained positions are "
                f"{self.positions.min()}..{self.positions.max()}."
            )
        return self.values[hits[0]]

    def to_frame(self) -> pd.DataFrame:
        """One row per (explained token, earlier token) pair."""
        rows = []
        for i, pos in enumerate(self.positions):
            for j in range(int(pos)):
                rows.append(
                    {
                        "output_position": int(pos),
                        "output_token": self.tokens[pos],
                        "input_position": j,
                        "input_token": self.tokens[j],
                        "value": float(self.values[i, j]),
                        **({"signed": float(self.signed[i, j])} if self.signed is not None else {}),
                    }
                )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """ecco's ``printJson`` shape: tokens (type input/output) and one attribution list per output."""
        first = self.values[0] if len(self.values) else np.zeros(len(self.tokens))
        tokens = [
            {
                "token": tok,
                "token_id": int(self.token_ids[p]),
                "type": "input" if p < self.n_input_tokens else "output",
                "value": float(first[p]),
                "position": p,
            }
            for p, tok in enumerate(self.tokens)
        ]
        data = {
            "tokens": tokens,
            "attributions": [self.values[i, : int(p)].tolist() for i, p in enumerate(self.positions)],
            "positions": [int(p) for p in self.positions],
            "method": self.method,
            "target": self.target,
            "unit": self.unit,
            "target_values": self.target_values.tolist(),
            "backend": self.backend,
        }
        if self.foil is not None:
            data["foil"] = self.foil
        if self.completeness_error is not None:
            data["completeness_error"] = self.completeness_error.tolist()
            data["n_steps"] = self.n_steps
        if self.evaluations is not None:
            data["evaluations"] = self.evaluations.tolist()
        return data
