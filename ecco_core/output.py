"""OutputSeq: the data of one run, plus thin methods that delegate to the analysis modules."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import EccoError, ModelTypeError

if TYPE_CHECKING:
    from .lm import LM

_ARRAYS = ("token_ids", "hidden_states", "activations", "attentions", "special")


@dataclass(eq=False)
class OutputSeq:
    """One run of a model over a prompt (and its continuation).

    Positions index the whole sequence: prompt tokens ``0 .. n_input_tokens - 1``, generated
    tokens after them.
    """

    token_ids: np.ndarray
    """(pos,) int64 token ids, prompt then generated tokens."""
    tokens: list[str]
    """pos strings, readable (no byte-level artefacts); special tokens as their text."""
    n_input_tokens: int
    """Number of prompt tokens (including a BOS the tokenizer added)."""
    model_type: str = "causal"
    """'causal', 'mlm' or 'enc-dec'."""
    model_name: str = ""
    hidden_states: np.ndarray | None = None
    """(layer + 1, pos, d_model) float32 residual stream; index 0 is the embedding output."""
    activations: np.ndarray | None = None
    """(layer, neuron, pos) float32 FFN neuron activations of ``activation_layers``."""
    activation_layers: list[int] = field(default_factory=list)
    """Which model layers the first axis of ``activations`` holds."""
    attentions: np.ndarray | None = None
    """(layer, head, pos, pos) float32 attention weights, when captured."""
    special: np.ndarray | None = None
    """(pos,) bool: special tokens (BOS, EOS, chat markers)."""
    attribution: dict[str, Any] = field(default_factory=dict)
    """method name -> attribution result, filled by ``generate(attribution=...)`` or on demand."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Model-type specific data (e.g. encoder-side arrays of an encoder-decoder)."""
    run_id: str = ""
    """Unique id of the run (a cache key for derived results)."""
    lm: LM | None = field(default=None, repr=False)
    """The model that produced this run (not saved); lens and attribution need it."""

    # ----- derived facts --------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def n_output_tokens(self) -> int:
        return self.n_tokens - self.n_input_tokens

    @property
    def n_layers(self) -> int:
        return 0 if self.hidden_states is None else self.hidden_states.shape[0] - 1

    @property
    def input_text(self) -> str:
        return "".join(self.tokens[: self.n_input_tokens])

    @property
    def output_text(self) -> str:
        return "".join(self.tokens[self.n_input_tokens :])

    def require_lm(self) -> LM:
        """The model, or an EccoError when this run was loaded from a file without one."""
        if self.lm is None:
            raise EccoError(
                "This OutputSeq has no model attached (it was loaded from a file). "
                "Attach one with seq.lm = ecco_core.from_pretrained(seq.model_name)."
            )
        return self.lm

    def require_causal(self, view: str) -> None:
        """Refuse a view that needs next-token predictions on a masked LM."""
        if self.model_type == "mlm":
            raise ModelTypeError(
                f"{view} needs a model that predicts the next token; {self.model_name} is a "
                "masked LM (encoder). Pick a causal model for this view."
            )

    # ----- ecco's methods (delegating) ------------------------------------------------------
    def layer_predictions(self, position: int = 1, topk: int = 10, layer: int | None = None, **kwargs):
        """Top-k tokens and probabilities per layer for the token at ``position``."""
        from . import lens

        return lens.layer_predictions(self, position=position, topk=topk, layer=layer, **kwargs)

    def rankings(self, **kwargs):
        """Rank per layer of the token that was actually chosen, per position."""
        from . import lens

        return lens.rankings(self, **kwargs)

    def rankings_watch(self, watch, position: int = -1, **kwargs):
        """Rank per layer of watched tokens (ids or strings) at one position."""
        from . import lens

        return lens.rankings_watch(self, watch=watch, position=position, **kwargs)

    def saliency(self, attr_method: str = "grad_x_input", style: str = "minimal", **kwargs):
        """Input saliency of every output token (ecco's name)."""
        from . import attribution

        return attribution.saliency(self, attr_method=attr_method, style=style, **kwargs)

    def primary_attributions(self, attr_method: str = "grad_x_input", style: str = "minimal", **kwargs):
        """Alias of ``saliency`` (ecco's newer name)."""
        return self.saliency(attr_method=attr_method, style=style, **kwargs)

    def run_nmf(self, n_components: int = 10, **kwargs):
        """Factorise the FFN activations with NMF (ecco's ``run_nmf``)."""
        from . import neurons

        return neurons.run_nmf(self, n_components=n_components, **kwargs)

    # ----- saving ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the run to one ``.npz`` file (arrays plus JSON metadata) to share it."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays = {k: getattr(self, k) for k in _ARRAYS if getattr(self, k) is not None}
        meta = {
            "tokens": self.tokens,
            "n_input_tokens": self.n_input_tokens,
            "model_type": self.model_type,
            "model_name": self.model_name,
            "activation_layers": list(self.activation_layers),
            "run_id": self.run_id,
            "format": 1,
        }
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path, lm: LM | None = None) -> OutputSeq:
        """Read a run written by ``save``; attach ``lm`` for lens and attribution views."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: data[k] for k in _ARRAYS if k in data}
        except (OSError, ValueError, KeyError) as error:
            raise EccoError(f"'{path}' is not a saved OutputSeq: {error}") from error
        return cls(**meta_fields(meta), **arrays, lm=lm)


def meta_fields(meta: dict) -> dict:
    keys = ("tokens", "n_input_tokens", "model_type", "model_name", "activation_layers", "run_id")
    return {k: meta[k] for k in keys if k in meta}
