"""What every result shares: drawing itself through the builder ``ecco_core.figures`` registers,
and showing itself in a notebook through the HTML builder ``ecco_core.notebook`` registers.

Results are plain dataclasses of numpy arrays (no torch, no plotly). ``result.figure()`` looks up
the figure builder for its type; ``ecco_core.figures`` registers its builders when it is imported,
which importing ``ecco_core`` (or any module under it) always does first. In Jupyter a result
displays through ``_repr_mimebundle_``: self-contained HTML (``ecco_core.notebook``) and a short
text line instead of the arrays' dump.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np

from ..errors import EccoError

_BUILDERS: dict[type, Callable[..., Any]] = {}
"""result type -> figure builder; filled once, when ``ecco_core.figures`` is imported."""
_HTML: dict[type, Callable[[Any], str]] = {}
"""result type (or ``Drawable`` for the default) -> notebook HTML; filled by ``ecco_core.notebook``."""


def register_figure(result_type: type, builder: Callable[..., Any]) -> None:
    """Make ``result_type(...).figure(**kwargs)`` call ``builder(result, **kwargs)``."""
    _BUILDERS[result_type] = builder


def register_html(result_type: type, builder: Callable[[Any], str]) -> None:
    """Make ``result_type``'s notebook display ``builder(result)`` (``Drawable``: every other type)."""
    _HTML[result_type] = builder


def summary_line(value: Any) -> str:
    """A one-line text form of a dataclass: scalars as they are, arrays and lists by their shape."""
    if not is_dataclass(value):
        return repr(value)
    parts = []
    for f in fields(value):
        item = getattr(value, f.name)
        if isinstance(item, np.ndarray):
            parts.append(f"{f.name}{tuple(item.shape)}")
        elif isinstance(item, (list, tuple, dict)):
            parts.append(f"{f.name}[{len(item)}]")
        elif item is None or isinstance(item, (bool, int, float, str, np.generic)):
            text = repr(item)
            parts.append(f"{f.name}={text if len(text) <= 40 else text[:37] + '...'}")
    return f"<{type(value).__name__} {', '.join(parts)}>"


class Drawable:
    """Mixin: ``figure(**kwargs)`` returns a Plotly ``go.Figure`` of the result (never shows it);
    in a notebook the result shows itself (``_repr_html_``, ``_repr_mimebundle_``)."""

    def figure(self, **kwargs: Any) -> Any:
        builder = _BUILDERS.get(type(self))
        if builder is None:
            raise EccoError(f"No figure is registered for {type(self).__name__}: import ecco_core.figures.")
        return builder(self, **kwargs)

    def _repr_html_(self) -> str:
        builder = _HTML.get(type(self)) or _HTML.get(Drawable)
        if builder is None:
            raise EccoError(f"No notebook view is registered for {type(self).__name__}: import ecco_core.")
        return builder(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self._repr_html_(), "text/plain": summary_line(self)}
