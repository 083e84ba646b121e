"""Pure functions of a run (and its model, for lens and attribution) that return results.

``cka``, ``cca``, ``svcca`` and ``pwcca`` are ecco's ``ecco.analysis`` functions on (neurons,
positions) arrays, with ecco's values (``ecco_similarity``); ``similarity`` holds this project's
layer-similarity view on (positions, features) arrays.
"""

from .ecco_similarity import cca, cka, pwcca, svcca

__all__ = ["cca", "cka", "pwcca", "svcca"]
