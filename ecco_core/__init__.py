"""ecco_core: what happens inside a language model as it writes, as data and Plotly figures.

>>> import ecco_core
>>> lm = ecco_core.load()                      # embedded SmolLM2-135M-Instruct (the engine's LM)
>>> seq = lm.generate("The keys to the cabinet", generate=5)
>>> seq.rankings().to_frame()

``ecco_core.from_pretrained`` is ecco's: ``import ecco_core as ecco`` runs an ecco notebook
(``compat``); with ``device=`` / ``dtype=`` alone it is ``load``. Errors, results, figures and the
notebook display load without torch (a saved result draws anywhere); the model side loads on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import (
    figures,  # registers every result type's figure()
    notebook,  # registers every result type's notebook display
)
from .errors import EccoError

if TYPE_CHECKING:
    from .compat import from_pretrained, load
    from .facade import LM, OutputSeq, clear_cache
    from .model.weights import DEFAULT_MODEL, EMBEDDED_ENCODER, EMBEDDED_MODELS

_LAZY = {
    "LM": "ecco_core.facade",
    "OutputSeq": "ecco_core.facade",
    "clear_cache": "ecco_core.facade",
    "from_pretrained": "ecco_core.compat",
    "load": "ecco_core.compat",
    "DEFAULT_MODEL": "ecco_core.model.weights",
    "EMBEDDED_ENCODER": "ecco_core.model.weights",
    "EMBEDDED_MODELS": "ecco_core.model.weights",
}
_MODULES = {  # ``from ecco_core import attention`` and friends, as the README shows
    name: f"ecco_core.analysis.{name}"
    for name in ("attention", "attribution", "checks", "lens", "masked", "neurons", "similarity")
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    if name in ("analysis", "compat"):  # ecco's ``ecco.analysis.cka(...)``
        return importlib.import_module(f"ecco_core.{name}")
    raise AttributeError(f"module 'ecco_core' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_ENCODER",
    "EMBEDDED_MODELS",
    "LM",
    "EccoError",
    "OutputSeq",
    "clear_cache",
    "figures",
    "from_pretrained",
    "load",
    "notebook",
]
