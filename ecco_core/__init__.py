"""ecco_core: what happens inside a language model as it writes, as data and Plotly figures.

>>> import ecco_core
>>> lm = ecco_core.from_pretrained()            # embedded SmolLM2-135M-Instruct
>>> seq = lm.generate("The keys to the cabinet", generate=5)
>>> seq.rankings().to_frame()
"""

from __future__ import annotations

from .errors import EccoError
from .lm import LM
from .loading import clear_cache, from_pretrained
from .models import DEFAULT_MODEL, EMBEDDED_ENCODER, EMBEDDED_MODELS
from .output import OutputSeq

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_ENCODER",
    "EMBEDDED_MODELS",
    "LM",
    "EccoError",
    "OutputSeq",
    "clear_cache",
    "from_pretrained",
]
