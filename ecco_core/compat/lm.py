"""ecco's ``from_pretrained`` and ``LM``: the flags, ``lm(tokenizer_output)`` and ``lm.generate``.

``EccoLM`` wraps the engine's ``facade.LM`` (one cached model per name, device and dtype) and
returns ``EccoOutputSeq`` runs, whose attributes have ecco's layouts. ``from_pretrained`` decides by
spelling: ecco's flags (or a bare name, as every ecco notebook writes it) give ecco's objects;
``device=`` / ``dtype=`` alone give the engine's ``LM`` and ``OutputSeq`` (see README, "Migrating
from ecco").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsupportedIdiomError
from ..facade import LM
from ..facade import from_pretrained as load
from .config import ecco_config
from .methods import ecco_method
from .output import EccoOutputSeq

ECCO_FLAGS = (
    "model_config",
    "activations",
    "attention",
    "hidden_states",
    "activations_layer_nums",
    "verbose",
    "gpu",
)


def _flag(name: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise InputError(f"from_pretrained: {name} must be True or False, not {value!r}.")
    return None if value is None else bool(value)


def _layer_nums(value: Any, n_layers: int) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(f"activations_layer_nums must be a list of layer numbers, not {value!r}.")
    nums = [int(v) for v in value]
    bad = [v for v in nums if not 0 <= v < n_layers]
    if bad:
        raise InputError(
            f"activations_layer_nums {bad} do not exist: the model has layers 0..{n_layers - 1}."
        )
    return nums


def from_pretrained(
    hf_model_id: str | None = None,
    model_config: dict | None = None,
    activations: bool | None = None,
    attention: bool | None = None,
    hidden_states: bool | None = None,
    activations_layer_nums: Sequence[int] | None = None,
    verbose: bool | None = None,
    gpu: bool | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> EccoLM | LM:
    """Load a model, the way ecco's notebooks (ecco's flags) or this engine (``device=``) ask.

    ecco's spelling, ``from_pretrained(name, activations=True, attention=False, hidden_states=True,
    activations_layer_nums=None, verbose=True, gpu=True, model_config=None)``, or a bare name,
    returns an ``EccoLM`` whose runs have ecco's layouts (``output.tokens[0]`` is the first row).
    ``device=`` and/or ``dtype=`` without ecco's flags return the engine's ``LM`` (the modern API;
    ``ecco_core.load`` is the same without the choice). ecco's flags with ``device=`` are ecco's
    objects on that device.

    Args:
        hf_model_id: a hub id, local folder, ``.gguf`` file, or None for the embedded SmolLM2.
        model_config: ecco's dict (embedding, type, activations, token_prefix,
            partial_token_prefix), checked against the model (``compat.config``).
        activations: record FFN activations into ``output.activations`` (ecco's default False).
        attention: record attention into ``output.attention_values``.
        hidden_states: False leaves ``output.hidden_states`` empty (the lens views then refuse).
        activations_layer_nums: the layers whose activations to keep (None: all).
        verbose: accepted; nothing is printed while generating (a run shows itself when displayed).
        gpu: False forces the CPU; True (ecco's default) uses CUDA when present.
        device, dtype: the engine's choice of device ('auto', 'cpu', 'cuda:1') and dtype.

    Raises:
        InputError: a flag of the wrong type, or ``gpu=False`` with a CUDA ``device``.
        ModelNotFoundError, NoNetworkError, NotALanguageModelError, UnsupportedArchitectureError.
    """
    flags = dict(
        zip(
            ECCO_FLAGS,
            (model_config, activations, attention, hidden_states, activations_layer_nums, verbose, gpu),
        )
    )
    given = {k: v for k, v in flags.items() if v is not None}
    if not given and (device is not None or dtype is not None):
        return load(hf_model_id, device if device is not None else "auto", dtype)
    gpu = _flag("gpu", gpu)
    if gpu is False and device is not None and torch.device(device).type == "cuda":
        raise InputError(f"gpu=False asks for the CPU but device={device!r} for a GPU: pass one of them.")
    lm = load(hf_model_id, device if device is not None else ("cpu" if gpu is False else "auto"), dtype)
    return EccoLM(
        lm,
        config=ecco_config(lm, model_config),
        activations=bool(_flag("activations", activations)),
        attention=bool(_flag("attention", attention)),
        hidden_states=_flag("hidden_states", hidden_states) is not False,
        activations_layer_nums=_layer_nums(activations_layer_nums, lm.arch.n_layers),
        verbose=_flag("verbose", verbose) is not False,
    )


class EccoLM:
    """ecco's ``LM``: ``lm.model``, ``lm.tokenizer``, ``lm(inputs)``, ``lm.generate(text, ...)``.

    ``lm.engine`` is the engine's ``LM`` underneath (``ecco_core.load``'s object).
    """

    def __init__(
        self,
        engine: LM,
        config: dict,
        activations: bool = False,
        attention: bool = False,
        hidden_states: bool = True,
        activations_layer_nums: list[int] | None = None,
        verbose: bool = True,
    ) -> None:
        self.engine = engine
        self.model_config = config
        self.collect_activations_flag = activations
        self.collect_activations_layer_nums = activations_layer_nums
        self.attention = attention
        self.hidden_states = hidden_states
        self.verbose = verbose

    def __repr__(self) -> str:
        flags = f"activations={self.collect_activations_flag}, attention={self.attention}"
        return f"EccoLM({self.engine!r}, {flags})"

    @property
    def model(self) -> torch.nn.Module:
        return self.engine.model

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def model_name(self) -> str:
        return self.engine.name

    @property
    def model_type(self) -> str:
        return self.engine.model_type

    @property
    def device(self) -> str:
        """'cuda' or 'cpu', as ecco reported it."""
        return self.engine.device.type

    def to(self, target: Any) -> Any:
        """ecco's ``lm.to(tensor)``: a tensor or tokenizer output moved to the model's device. A
        device ('cpu', 'cuda') instead moves the model there (a second cached copy) and returns
        this LM."""
        if isinstance(target, (str, torch.device)):
            self.engine = load(self.engine.name, target, self.engine.dtype)
            return self
        if hasattr(target, "to"):
            return target.to(self.engine.device)
        raise InputError(
            f"lm.to takes a tensor, a tokenizer output or a device, not {type(target).__name__}."
        )

    def _run_options(self) -> dict:
        keep = self.collect_activations_layer_nums
        return {
            "attention": self.attention,
            "activation_layers": keep if self.collect_activations_flag else None,
        }

    def __call__(self, input_tokens: Any) -> EccoOutputSeq:
        """One forward over a tokenizer output (``lm.tokenizer([text], return_tensors="pt")``),
        token ids or a text; no generation.

        Raises:
            InputError: no ``input_ids``; UnsupportedIdiomError: a batch of several texts, or padding.
        """
        ids = _one_row(input_tokens)
        run = self.engine(ids, **self._run_options())
        return EccoOutputSeq(run, self, generated=False)

    def generate(
        self,
        input_str: str,
        max_length: int | None = 8,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        do_sample: bool | None = False,
        attribution: Sequence[str] | None = None,
        generate: int | None = None,
        beam_size: int = 1,
        **generate_kwargs: Any,
    ) -> EccoOutputSeq:
        """ecco's ``generate``: ``generate`` new tokens (or up to ``max_length`` tokens in all),
        then ``attribution`` methods by ecco's names ('ig' with ecco's settings: 50 Gauss-Legendre
        steps from a zero embedding; 'grad_x_input', 'saliency' = gradient, and this engine's
        'erasure', 'attention', 'attention_rollout').

        Raises:
            GenerationSettingsError, InputError, UnsupportedIdiomError (beam search, other
            ``model.generate`` keywords, attribution methods ecco_core does not provide).
        """
        if beam_size != 1:
            raise UnsupportedIdiomError(
                f"beam_size={beam_size}: beam search is not supported; ecco_core generates greedily "
                "(do_sample=False) or by sampling (do_sample=True, temperature, top_k, top_p)."
            )
        if generate_kwargs:
            raise UnsupportedIdiomError(
                f"generate() got {sorted(generate_kwargs)}: ecco_core passes no other keywords to "
                "model.generate. Use generate=, max_length=, do_sample=, temperature=, top_k=, top_p=."
            )
        methods = list(attribution or ())
        settings = [ecco_method(name) for name in methods]  # refuse an unknown name before generating
        n_input = len(self.engine.encode(input_str))
        if generate is None:
            if max_length is None or max_length <= n_input:
                raise InputError(
                    f"max_length={max_length} is not above the prompt's {n_input} tokens: pass "
                    "generate=N (new tokens) or a larger max_length (prompt plus new tokens)."
                )
            generate = max_length - n_input
        run = self.engine.generate(
            input_str,
            generate=generate,
            do_sample=bool(do_sample),
            temperature=1.0 if temperature is None else temperature,
            top_k=top_k,
            top_p=top_p,
            **self._run_options(),
        )
        output = EccoOutputSeq(run, self, generated=True)
        output.compute_attributions(dict(zip(methods, settings)))
        return output


def _one_row(input_tokens: Any) -> torch.Tensor | str:
    """(pos,) ids of a one-text tokenizer output, ids or a text."""
    if isinstance(input_tokens, str):
        return input_tokens
    if isinstance(input_tokens, Mapping) or hasattr(input_tokens, "keys"):
        if "input_ids" not in input_tokens:
            raise InputError(
                "lm(...) needs the tokenizer's output with 'input_ids': "
                "lm(lm.tokenizer([text], return_tensors='pt'))."
            )
        ids, mask = input_tokens["input_ids"], input_tokens.get("attention_mask")
    else:
        ids, mask = input_tokens, None
    ids = torch.as_tensor(np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids))
    if ids.dim() == 2 and ids.shape[0] != 1:
        raise UnsupportedIdiomError(
            f"lm(...) got a batch of {ids.shape[0]} texts; one OutputSeq holds one text. Run them one "
            "at a time: [lm(lm.tokenizer([text], return_tensors='pt')) for text in texts]."
        )
    if mask is not None and not bool(torch.as_tensor(np.asarray(mask)).bool().all()):
        raise UnsupportedIdiomError(
            "lm(...) got padded input (attention_mask has zeros); pass one unpadded text: "
            "lm(lm.tokenizer([text], return_tensors='pt'))."
        )
    return ids.reshape(-1)
