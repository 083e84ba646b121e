"""How far a long computation got: what step generators (``analysis.neurons.nmf_steps``,
``analysis.similarity.similarity_steps``, the app's own) yield between their steps."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One step of a long computation done."""

    done: float
    """Work done so far, in the unit of ``total`` (layers, sweeps, rows)."""
    total: float
    """All the work (for NMF: the most sweeps it may take; it usually stops earlier)."""
    what: str = ""
    """What is done, for a person: 'layers 0-7 of 0-30', 'sweep 48, fit error 23.1%'."""
    partial: Any = None
    """A result of the part done so far that a view can draw meanwhile, or a function of no
    arguments that makes it (called only when the screen is drawn); None: nothing to draw."""

    def part(self) -> Any:
        """The partial result (made now if ``partial`` is a function), or None."""
        return self.partial() if callable(self.partial) else self.partial

    @property
    def share(self) -> float:
        """done / total in [0, 1]."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total else 0.0


def drain(steps: Generator) -> Any:
    """Run a step generator to its end and return its result (the one-call form of a view)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
