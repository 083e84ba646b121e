"""What every result shares: drawing itself through the builder ``ecco_core.figures`` registers.

Results are plain dataclasses of numpy arrays (no torch, no plotly). ``result.figure()`` looks up
the figure builder for its type; ``ecco_core.figures`` registers its builders when it is imported,
which importing ``ecco_core`` (or any module under it) always does first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import EccoError

_BUILDERS: dict[type, Callable[..., Any]] = {}
"""result type -> figure builder; filled once, when ``ecco_core.figures`` is imported."""


def register_figure(result_type: type, builder: Callable[..., Any]) -> None:
    """Make ``result_type(...).figure(**kwargs)`` call ``builder(result, **kwargs)``."""
    _BUILDERS[result_type] = builder


class Drawable:
    """Mixin: ``figure(**kwargs)`` returns a Plotly ``go.Figure`` of the result (never shows it)."""

    def figure(self, **kwargs: Any) -> Any:
        builder = _BUILDERS.get(type(self))
        if builder is None:
            raise EccoError(f"No figure is registered for {type(self).__name__}: import ecco_core.figures.")
        return builder(self, **kwargs)
