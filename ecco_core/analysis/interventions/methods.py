"""The facade's interventions methods, as mixins (``ecco_core.facade`` adds them to its classes)."""

from __future__ import annotations

from collections.abc import Sequence

from ...results.interventions import LogitAttribution, Regeneration
from .dla import direct_logit_attribution
from .edits import Intervention
from .patching import PromptPair, compare
from .regenerate import regenerate


class InterventionRunMethods:
    """``OutputSeq`` methods: direct logit attribution, regenerate under an intervention."""

    def direct_logit_attribution(
        self, position: int = -1, token: int | str | None = None, heads: bool = True
    ) -> LogitAttribution:
        """What each component wrote into the logit of the token at ``position``."""
        return direct_logit_attribution(self, position=position, token=token, heads=heads)

    def regenerate(self, interventions: Sequence[Intervention], generate: int = 20) -> Regeneration:
        """The run's continuation beside a greedy one under ``interventions``."""
        return regenerate(self, interventions, generate=generate)


class InterventionModelMethods:
    """``LM`` methods: compare a clean and a corrupted prompt."""

    def compare(
        self,
        clean: str,
        corrupted: str,
        answer: int | str,
        foil: int | str | None = None,
        metric: str = "logit_diff",
    ) -> PromptPair:
        """A clean/corrupted prompt pair; ``.attribution_patching()`` and ``.exact_patching(...)``."""
        return compare(self, clean, corrupted, answer, foil=foil, metric=metric)
