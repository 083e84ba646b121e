"""ecco's call surface: ``from_pretrained`` with ecco's flags, ``EccoLM``, ``EccoOutputSeq`` (ecco's
attributes and views), ``EccoNMF`` and ecco's integrated-gradients settings (``ECCO_IG``).

``import ecco_core as ecco`` reaches it: ``ecco_core.from_pretrained`` is this module's.
"""

from .lm import EccoLM, from_pretrained, load
from .methods import ECCO_IG, ecco_method
from .nmf import EccoNMF
from .output import EccoOutputSeq

__all__ = ["ECCO_IG", "EccoLM", "EccoNMF", "EccoOutputSeq", "ecco_method", "from_pretrained", "load"]
