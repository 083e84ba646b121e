"""OutputSeq: the data of one run (a ``Capture``), its model, and an explicit cache for the
views' derived results; one ``Stack`` type for one stack's arrays; save and load."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from . import run_io
from .errors import EccoError, InputError, ModelTypeError, PositionError, RunFileError
from .model.capture import Capture
from .model.lm import LanguageModel
from .results.attribution import Saliency

log = logging.getLogger(__name__)

_ARRAYS = ("token_ids", "hidden_states", "activations", "attentions", "special")
SIDES = ("decoder", "encoder")
DERIVED_ENTRIES = 16
"""Derived results a run keeps (least recently used dropped first)."""


@dataclass(frozen=True)
class Stack:
    """One stack's arrays and the tokens along their position axis (``OutputSeq.stack``)."""

    name: str
    """'encoder' or 'decoder' on an encoder-decoder run; '' on causal and masked LMs."""
    token_ids: np.ndarray
    """(pos,) the token ids along the arrays' position axis."""
    tokens: list[str]
    """pos strings: the tokens along the arrays' position axis."""
    n_input_tokens: int
    """How many of ``tokens`` were not generated (the prompt; all the encoder's; the decoder's start)."""
    hidden_states: np.ndarray | None
    """(layer + 1, pos, d_model) residual stream, or None."""
    activations: np.ndarray | None
    """(layer, neuron, pos) FFN activations, or None."""
    activation_layers: list[int]
    attentions: np.ndarray | None
    """(layer, head, pos, pos) self-attention weights, or None."""
    attention_layers: list[int]
    special: np.ndarray | None
    """(pos,) bool special tokens, or None."""

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


class DerivedCache:
    """Results derived from one run (lens summaries, on-demand attention), kept apart from the
    run's own data and bounded; keyed by what produced them."""

    def __init__(self, max_entries: int = DERIVED_ENTRIES) -> None:
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self.max_entries = max_entries

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        """The cached value of ``key``, made (and kept) on a miss."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._entries[key] = make()
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return value

    def peek(self, key: tuple) -> Any:
        """The cached value of ``key``, or None (nothing is made)."""
        return self._entries.get(key)

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def keys(self) -> list[tuple]:
        return list(self._entries)


@dataclass(eq=False)
class OutputSeq(Capture):
    """One run of a model over a prompt (and its continuation): the capture's arrays (see
    ``Capture`` for the position conventions of each model type), the model that produced them,
    attributions computed with the run, and a cache for derived results."""

    attribution: dict[str, Any] = field(default_factory=dict)
    """method name -> attribution result, filled by ``generate(attribution=...)`` or on demand."""
    lm: LanguageModel | None = field(default=None, repr=False)
    """The model that produced this run (not saved); lens and attribution need it."""
    derived: DerivedCache = field(default_factory=DerivedCache, repr=False)
    """Derived results (never saved; recomputed from the data)."""

    def cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        """A derived result of this run (``key`` names what and how), made once per ``run_id``."""
        return self.derived.get((self.run_id, *key), make)

    @classmethod
    def from_capture(cls, capture: Capture, lm: LanguageModel | None = None) -> OutputSeq:
        """The run of a capture forward, attached to its model."""
        return cls(**{f.name: getattr(capture, f.name) for f in fields(Capture)}, lm=lm)

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
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
            raise PositionError(
                f"position must be a whole number, not {' '.join(repr(position).split())[:60]}."
            )
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

    def stack(self, side: str = "decoder") -> Stack:
        """One stack's arrays: the encoder's or the decoder's on an encoder-decoder, else the run's.

        Raises:
            InputError: an unknown side; ModelTypeError: 'encoder' on a model without one.
        """
        if not isinstance(side, str) or side not in SIDES:
            raise InputError(f"side must be one of {SIDES}, not {' '.join(repr(side).split())[:60]}.")
        enc_dec = self.model_type == "enc-dec"
        special = None if self.special is None else np.asarray(self.special, dtype=bool)
        if side == "encoder":
            if "encoder" not in self.extras:
                raise ModelTypeError(f"{self.model_name} has no separate encoder ({self.model_type} model).")
            data = self.extras["encoder"]
            tokens = list(data["tokens"])
            return Stack(
                name="encoder",
                token_ids=np.asarray(data["token_ids"]),
                tokens=tokens,
                n_input_tokens=len(tokens),
                hidden_states=data["hidden_states"],
                activations=data["activations"],
                activation_layers=list(data["activation_layers"]),
                attentions=data.get("attentions"),
                attention_layers=list(data.get("attention_layers", [])),
                special=None if special is None else special[: len(tokens)],
            )
        offset = self.state_offset
        tokens = self.tokens[offset:]
        return Stack(
            name=side if enc_dec else "",
            token_ids=self.token_ids[offset:],
            tokens=tokens,
            n_input_tokens=min(1, len(tokens)) if enc_dec else self.n_input_tokens,
            hidden_states=self.hidden_states,
            activations=self.activations,
            activation_layers=list(self.activation_layers),
            attentions=self.attentions,
            attention_layers=list(self.attention_layers),
            special=None if special is None else special[offset : offset + len(tokens)],  # (pos,)
        )

    def require_lm(self) -> LanguageModel:
        """The model, or an EccoError when this run was loaded from a file without one."""
        if self.lm is None:
            raise EccoError(
                "This OutputSeq has no model attached (it was loaded from a file). "
                "Attach one with seq.lm = ecco_core.load(seq.model_name)."
            )
        return self.lm

    def require_causal(self, view: str) -> None:
        """Refuse a view that needs next-token predictions on a masked LM."""
        if self.model_type == "mlm":
            raise ModelTypeError(
                f"{view} needs a model that predicts the next token; {self.model_name} is a "
                "masked LM (encoder). Pick a causal model for this view."
            )

    # ----- saving ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the run to one ``.npz`` file (arrays plus JSON metadata) to share it.

        Everything the run holds is kept: tokens, every captured array, ``extras`` and the
        attributions computed with it (``generate(attribution=...)`` or ``compute_attributions``).
        Not kept: the model (attach one with ``load(path, lm=...)``) and the derived-results cache
        (recomputed on demand); anything else that is not plain data is named in a WARNING and in
        the file's ``left_out``. The file is replaced atomically: a failed save (a full disk, a
        read-only folder) raises ``RunFileError`` and leaves the previous file whole.
        """
        path = run_io.run_path(path, save=True)
        arrays = {k: getattr(self, k) for k in _ARRAYS if getattr(self, k) is not None}
        left_out: list[str] = []
        extras_meta = _pack_extras(self.extras, arrays, left_out)
        attribution_meta = _pack_attributions(self.attribution, arrays, left_out)
        meta = {
            "attention_layers": list(self.attention_layers),
            "extras": extras_meta,
            "attribution": attribution_meta,
            "tokens": self.tokens,
            "n_input_tokens": self.n_input_tokens,
            "model_type": self.model_type,
            "model_name": self.model_name,
            "activation_layers": list(self.activation_layers),
            "run_id": self.run_id,
            "left_out": left_out,
            "format": 2,
        }
        if left_out:
            log.warning("OutputSeq.save(%s) leaves out what is not plain data: %s", path, ", ".join(left_out))
        run_io.write_atomically(path, {"meta": np.array(json.dumps(meta)), **arrays})
        return path

    @classmethod
    def load(
        cls, path: str | Path, lm: LanguageModel | None = None, max_bytes: int = run_io.MAX_RUN_BYTES
    ) -> OutputSeq:
        """Read a run written by ``save``; attach ``lm`` for lens and attribution views.

        The file is untrusted: nothing is unpickled, no array is allocated before its zip entry and
        ``.npy`` header are checked (at most ``max_bytes`` in all), and every value is checked
        against the sizes the file declares (and ``lm``'s vocabulary, layers and width, if given).

        Raises:
            RunFileError: a missing, empty, truncated, oversized or crafted file.
        """
        if lm is not None and not isinstance(lm, LanguageModel):
            raise InputError(
                f"lm must be None or a model from ecco_core.from_pretrained, not {type(lm).__name__}."
            )
        meta, arrays = run_io.read_archive(path, max_bytes)
        sizes = {}
        if lm is not None:
            sizes = {
                "vocab_size": lm.model.get_input_embeddings().num_embeddings,
                "n_layers": lm.arch.n_layers,
                "d_model": lm.model.get_input_embeddings().embedding_dim,
            }
        run_io.check_run(meta, arrays, path, **sizes)
        core = {k: arrays[k] for k in _ARRAYS if k in arrays}
        extras = _load_extras(arrays, meta.get("extras", {}))
        seq = cls(**meta_fields(meta), **core, extras=extras, lm=lm)
        seq.attribution = _unpack_attributions(meta.get("attribution", {}), arrays)
        return seq


def _pack_extras(extras: dict, arrays: dict, left_out: list[str]) -> dict:
    """``extras`` arrays into ``arrays`` (``extras__<side>__<key>``), the rest as JSON."""
    extras_meta: dict[str, dict] = {}
    for side, values in extras.items():
        if not isinstance(values, dict):
            left_out.append(f"extras[{side!r}]")
            continue
        for key, value in values.items():
            if isinstance(value, np.ndarray):
                arrays[f"extras__{side}__{key}"] = value
            elif value is None:
                continue
            elif _is_json(value):
                extras_meta.setdefault(side, {})[key] = value
            else:
                left_out.append(f"extras[{side!r}][{key!r}]")
    return extras_meta


def _pack_attributions(attribution: dict, arrays: dict, left_out: list[str]) -> dict:
    """Saliency results into ``arrays`` (``attribution__<method>__<field>``) and JSON fields."""
    packed: dict[str, dict] = {}
    for method, result in attribution.items():
        if not isinstance(result, Saliency):
            left_out.append(f"attribution[{method!r}] (a {type(result).__name__})")
            continue
        fields_meta = {}
        for f in fields(Saliency):
            value = getattr(result, f.name)
            if isinstance(value, np.ndarray):
                arrays[f"attribution__{method}__{f.name}"] = value
            elif _is_json(value):
                fields_meta[f.name] = value
        packed[method] = fields_meta
    return packed


def _unpack_attributions(packed: dict, arrays: dict) -> dict[str, Any]:
    out = {}
    for method, fields_meta in packed.items():
        prefix = f"attribution__{method}__"
        values = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        known = {f.name for f in fields(Saliency)}
        try:
            out[method] = Saliency(**{k: v for k, v in {**fields_meta, **values}.items() if k in known})
        except TypeError as error:
            raise RunFileError(f"The saved {method!r} attribution is incomplete: {error}.") from error
    return out


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _load_extras(data: dict[str, np.ndarray], extras_meta: dict) -> dict:
    """Rebuild ``extras`` from ``extras__<side>__<key>`` arrays and the JSON part."""
    extras: dict[str, dict] = {side: dict(values) for side, values in extras_meta.items()}
    for name, array in data.items():
        if name.startswith("extras__"):
            _, side, key = name.split("__", 2)
            extras.setdefault(side, {})[key] = array
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
