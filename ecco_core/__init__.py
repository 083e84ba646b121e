"""ecco_core: what happens inside a language model as it writes, as data and Plotly figures.

>>> import ecco_core
>>> lm = ecco_core.from_pretrained()            # embedded SmolLM2-135M-Instruct
>>> seq = lm.generate("The keys to the cabinet", generate=5)
>>> seq.rankings().to_frame()

Errors, results and figures load without torch (a saved result draws anywhere); the model side
(``from_pretrained``, ``LM``, ``OutputSeq`` and the analysis modules) loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import figures  # registers every result type's figure()
from .errors import EccoError

if TYPE_CHECKING:
    from .facade import LM, OutputSeq, clear_cache, from_pretrained
    from .model.weights import DEFAULT_MODEL, EMBEDDED_ENCODER, EMBEDDED_MODELS

_LAZY = {
    "LM": "ecco_core.facade",
    "OutputSeq": "ecco_core.facade",
    "clear_cache": "ecco_core.facade",
    "from_pretrained": "ecco_core.facade",
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
]
