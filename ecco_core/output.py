"""OutputSeq: the data of one run, plus thin methods that delegate to the analysis modules."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import EccoError, ModelTypeError, PositionError

if TYPE_CHECKING:
    from .lm import LM

_ARRAYS = ("token_ids", "hidden_states", "activations", "attentions", "special")


@dataclass(eq=False)
class OutputSeq:
    """One run of a model over a prompt (and its continuation).

    Positions index the whole sequence: prompt tokens ``0 .. n_input_tokens - 1``, generated
    tokens after them.

    Position conventions per ``model_type``:

    - 'causal': every array's position axis is the whole sequence. The hidden state at
      position ``p - 1`` predicts the token at ``p``, so predictions exist for ``p >= 1``.
    - 'mlm': like 'causal' (the prompt is the whole sequence, nothing is generated); there is
      no next-token prediction (``require_causal`` refuses lens views), masked-token
      predictions read a position's own state (``ecco_core.masked``).
    - 'enc-dec' (ecco's convention): ``token_ids`` / ``tokens`` are the encoder input (the
      prompt, ``0 .. n_input_tokens - 1``) followed by the decoder's tokens (the decoder start
      token at ``n_input_tokens``, then the generated ones). ``hidden_states``, ``activations``
      and ``attentions`` are the *decoder's*: their position axis starts at ``n_input_tokens``
      (``state_offset``), so position ``p`` is array index ``p - state_offset``. The decoder
      state at array index ``j`` predicts the token at position ``state_offset + j + 1``;
      predictions exist for ``p >= n_input_tokens + 1``. Use ``prediction_index(p)``. The
      encoder's arrays and the cross-attention live in ``extras`` (see ``side``).
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
    """Model-type specific data. Encoder-decoders: ``extras["encoder"]`` holds ``token_ids``
    (enc_pos,), ``tokens``, ``hidden_states`` (layer + 1, enc_pos, d_model), ``activations``
    (layer, neuron, enc_pos), ``activation_layers``, ``attentions`` (layer, head, enc_pos,
    enc_pos) or None, ``attention_layers``; ``extras["decoder"]`` holds ``token_ids``
    (dec_pos,), ``tokens``, ``cross_attentions`` (layer, head, dec_pos, enc_pos) or None and
    ``cross_attention_layers``. Attribution over encoder inputs reads ``extras["encoder"]["token_ids"]``."""
    run_id: str = ""
    """Unique id of the run (a cache key for derived results)."""
    lm: LM | None = field(default=None, repr=False)
    """The model that produced this run (not saved); lens and attribution need it."""
    attention_layers: list[int] = field(default_factory=list)
    """Which model layers the first axis of ``attentions`` holds (``attention_layers=`` asks for a subset)."""

    def __post_init__(self) -> None:
        if self.attentions is not None and not self.attention_layers:
            self.attention_layers = list(range(self.attentions.shape[0]))

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

    @property
    def state_offset(self) -> int:
        """Position of index 0 of the arrays' position axis: ``n_input_tokens`` on an
        encoder-decoder (decoder-side arrays), else 0."""
        return self.n_input_tokens if self.model_type == "enc-dec" else 0

    @property
    def state_tokens(self) -> list[str]:
        """The tokens along the arrays' position axis (the decoder's on an encoder-decoder)."""
        return self.tokens[self.state_offset :]

    @property
    def first_predicted_position(self) -> int:
        """The first position whose token has a prediction (1; ``n_input_tokens + 1`` for enc-dec)."""
        return self.state_offset + 1

    def prediction_index(self, position: int) -> int:
        """Index on the arrays' position axis of the state that predicts the token at ``position``.

        Negative positions count from the end. Raises PositionError where no prediction exists.
        """
        n = self.n_tokens
        p = position + n if position < 0 else position
        if not self.first_predicted_position <= p < n:
            first = self.first_predicted_position
            where = " (the first generated token; earlier ones are the encoder's input)" * (
                self.model_type == "enc-dec"
            )
            raise PositionError(
                f"Position {position} has no prediction: pick a position from {first}{where} to {n - 1}."
            )
        return p - 1 - self.state_offset

    def side(self, name: str = "decoder") -> dict[str, Any]:
        """One stack's arrays as a dict (token_ids, tokens, hidden_states, activations,
        activation_layers, attentions, attention_layers): 'encoder' reads ``extras`` of an
        encoder-decoder; 'decoder' (or any name on other models) the main fields."""
        if name == "encoder":
            if "encoder" not in self.extras:
                raise ModelTypeError(f"{self.model_name} has no separate encoder ({self.model_type} model).")
            return self.extras["encoder"]
        offset = self.state_offset
        return {
            "token_ids": self.token_ids[offset:],
            "tokens": self.tokens[offset:],
            "hidden_states": self.hidden_states,
            "activations": self.activations,
            "activation_layers": self.activation_layers,
            "attentions": self.attentions,
            "attention_layers": self.attention_layers,
        }

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

    def masked_predictions(self, position: int | None = None, topk: int = 10):
        """Masked LMs: top-k tokens at ``position`` (default: the first mask token) per layer."""
        from . import masked

        return masked.masked_predictions(self, position=position, topk=topk)

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
        extras_meta = {}
        for side, values in self.extras.items():
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                if isinstance(value, np.ndarray):
                    arrays[f"extras__{side}__{key}"] = value
                elif isinstance(value, (list, str, int, float)):
                    extras_meta.setdefault(side, {})[key] = value
        meta = {
            "attention_layers": list(self.attention_layers),
            "extras": extras_meta,
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
                extras = _load_extras(data, meta.get("extras", {}))
        except (OSError, ValueError, KeyError) as error:
            raise EccoError(f"'{path}' is not a saved OutputSeq: {error}") from error
        return cls(**meta_fields(meta), **arrays, extras=extras, lm=lm)


def _load_extras(data, extras_meta: dict) -> dict:
    """Rebuild ``extras`` from ``extras__<side>__<key>`` arrays and the JSON part."""
    extras: dict[str, dict] = {side: dict(values) for side, values in extras_meta.items()}
    for name in data.files:
        if name.startswith("extras__"):
            _, side, key = name.split("__", 2)
            extras.setdefault(side, {})[key] = data[name]
    for side in ("encoder", "decoder"):  # arrays that were None come back as None
        for key in ("activations", "attentions", "cross_attentions"):
            if side in extras and key not in extras[side] and f"{key[:-1]}_layers" in extras[side]:
                extras[side][key] = None
    return extras


def meta_fields(meta: dict) -> dict:
    keys = (
        "tokens",
        "n_input_tokens",
        "model_type",
        "model_name",
        "activation_layers",
        "run_id",
        "attention_layers",
    )
    return {k: meta[k] for k in keys if k in meta}
