"""ecco's ``OutputSeq``: ecco's attributes and layouts over one engine run, and ecco's views.

The engine's run (``output.run``, a ``facade.OutputSeq``) holds the data with this project's
layouts; the names below give ecco's: ``tokens`` and ``token_ids`` are (batch, position),
``activations`` a dict of (batch, layer, neuron, position) arrays, ``output_text`` the prompt and
the continuation, ``attribution`` lists per generated token. The views number layers ecco's way
(``lens="ecco"``: layer 0 is the first block's output) and return results that show themselves in
a notebook; ``printJson=True`` returns ecco's dict instead (which shows the same view).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..analysis import attribution as saliency_methods
from ..analysis import lens
from ..errors import EccoError, InputError, UnsupportedIdiomError
from ..facade import OutputSeq
from ..notebook import run_html
from ..results import LayerPredictions, Rankings, Saliency, WatchRankings
from ..results.base import summary_line
from . import ecco_json
from .methods import ecco_method
from .nmf import EccoNMF

if TYPE_CHECKING:
    from .lm import EccoLM


def _options(view: str, kwargs: dict, allowed: tuple[str, ...] = ("printJson", "lens")) -> dict:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InputError(f"{view}() got unexpected arguments {unknown}; it takes {', '.join(allowed)}.")
    return kwargs


class EccoOutputSeq:
    """One run with ecco's attributes and views. Any other name reads the engine run (``run``)."""

    def __init__(self, run: OutputSeq, lm: EccoLM, generated: bool) -> None:
        self.run = run
        self.lm = lm
        self.generated = generated
        self.tokenizer = lm.tokenizer
        self.config = lm.model_config
        self.model_type = run.model_type
        self.n_input_tokens = run.n_input_tokens
        self.collect_activations_layer_nums = lm.collect_activations_layer_nums
        self.device = lm.device
        self.model_outputs = None
        """ecco kept the model's raw return object; the engine keeps its arrays (``run``) instead."""
        self._results: dict[str, Saliency] = {}
        self._raw_tokens = list(lm.tokenizer.convert_ids_to_tokens([int(i) for i in run.token_ids]))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "run":
            raise AttributeError(name)
        return getattr(self.run, name)

    # ----- ecco's data ------------------------------------------------------------------------
    @property
    def token_ids(self) -> torch.Tensor:
        """(1, position) int64 token ids (ecco's batch of one)."""
        return torch.as_tensor(self.run.token_ids, dtype=torch.long)[None]

    @property
    def tokens(self) -> list[list[str]]:
        """(1, position) raw tokens as the tokenizer writes them ('Ġkeys')."""
        return [list(self._raw_tokens)]

    @property
    def output_text(self) -> str:
        """The prompt and the continuation, decoded."""
        return self.tokenizer.decode([int(i) for i in self.run.token_ids])

    def _hidden(self, side: str = "decoder") -> np.ndarray | None:
        if not self.lm.hidden_states:
            return None
        return self.run.stack(side).hidden_states

    @property
    def hidden_states(self) -> torch.Tensor | None:
        """(layer + 1, position, d_model); index 0 is the embeddings (the decoder's on enc-dec)."""
        hidden = self._hidden()
        return None if hidden is None else torch.from_numpy(hidden)

    @property
    def decoder_hidden_states(self) -> torch.Tensor | None:
        """(layer, 1, position, d_model) each block's output, no embedding row (ecco's layers)."""
        hidden = self._hidden()
        return None if hidden is None else torch.from_numpy(hidden[1:, None])

    @property
    def encoder_hidden_states(self) -> torch.Tensor | None:
        """(layer, 1, position, d_model) the encoder's blocks on an encoder-decoder, else None."""
        hidden = self._hidden("encoder") if self.model_type == "enc-dec" else None
        return None if hidden is None else torch.from_numpy(hidden[1:, None])

    @property
    def embedding_states(self) -> torch.Tensor | None:
        """(1, position, d_model) the input embeddings (the encoder's on an encoder-decoder)."""
        hidden = self._hidden("encoder" if self.model_type == "enc-dec" else "decoder")
        return None if hidden is None else torch.from_numpy(hidden[0][None])

    def _get_hidden_states(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return self.encoder_hidden_states, self.decoder_hidden_states

    def _get_encoder_hidden_states(self) -> torch.Tensor | None:
        encoder = self.encoder_hidden_states
        return encoder if encoder is not None else self.decoder_hidden_states

    @property
    def activations(self) -> dict[str, np.ndarray]:
        """{'encoder': ..., 'decoder': ...} of (1, layer, neuron, position) FFN activations; {} unless
        ``from_pretrained(..., activations=True)``. As in ecco, a generated run's decoder positions
        stop before the last token (the model never read it); masked LMs' stack is 'encoder'."""
        if not self.lm.collect_activations_flag:
            return {}
        sides = {"causal": [("decoder", "decoder")], "mlm": [("encoder", "decoder")]}.get(
            self.model_type, [("encoder", "encoder"), ("decoder", "decoder")]
        )
        out = {}
        for key, side in sides:
            acts = self.run.stack(side).activations  # (layer, neuron, pos)
            if acts is None:
                continue
            if side == "decoder" and self.generated:
                acts = acts[..., :-1]
            out[key] = acts[None]
        return out

    @property
    def attention_values(self) -> torch.Tensor | None:
        """(layer, 1, head, position, position) attention weights, if ``attention=True``."""
        attn = self.run.attentions if self.lm.attention else None
        return None if attn is None else torch.from_numpy(attn[:, None])

    @property
    def lm_head(self) -> torch.nn.Module:
        """The model's unembedding (a hidden state in, raw logits out)."""
        return self.lm.model.get_output_embeddings()

    @property
    def attribution(self) -> dict[str, list[np.ndarray]]:
        """method (as requested, 'ig', ...) -> one array per generated token of its scores over
        the tokens before it (L2 norm over the embedding, normalised to sum 1)."""
        return {
            name: [result.values[i, : int(p)].copy() for i, p in enumerate(result.positions)]
            for name, result in self._results.items()
        }

    def compute_attributions(self, methods: dict[str, tuple[str, dict]]) -> None:
        """Compute ``methods`` (requested name -> (engine method, settings)); one gradient pass is
        shared by the methods with default settings."""
        plain = [engine for engine, settings in methods.values() if not settings]
        if plain:
            saliency_methods.compute_attributions(self.run, plain)
        for name, (engine, settings) in methods.items():
            self._results[name] = (
                saliency_methods.saliency(self.run, engine, **settings)
                if settings
                else self.run.attribution[engine]
            )

    def _saliency(self, attr_method: str) -> Saliency:
        if attr_method not in self._results:
            self.compute_attributions({attr_method: ecco_method(attr_method)})
        return self._results[attr_method]

    # ----- ecco's views -----------------------------------------------------------------------
    def primary_attributions(
        self, attr_method: str = "grad_x_input", style: str = "minimal", ignore_tokens=(), **kwargs
    ) -> Saliency | ecco_json.EccoData:
        """ecco's saliency explorable of each generated token (computed now if ``generate`` was not
        asked for it). ``ignore_tokens`` (positions) get 0; ``printJson=True`` returns ecco's dict."""
        options = _options("primary_attributions", kwargs, ("printJson",))
        if style not in ("minimal", "detailed"):
            raise InputError(f"style must be 'minimal' or 'detailed', not {style!r}.")
        result = self._saliency(attr_method)
        values = result.values.copy()  # (explained, pos)
        ignore = [int(i) for i in ignore_tokens]
        if any(not 0 <= i < values.shape[1] for i in ignore):
            raise InputError(f"ignore_tokens must be positions 0..{values.shape[1] - 1}, not {ignore}.")
        values[:, ignore] = 0
        shown = dataclasses.replace(result, values=values, style=style)
        if options.get("printJson"):
            return ecco_json.saliency_json(shown, self._raw_tokens, self.tokenizer, self.config)
        return shown

    def saliency(self, attr_method: str = "grad_x_input", style: str = "minimal", **kwargs):
        """ecco's older name of ``primary_attributions``."""
        return self.primary_attributions(attr_method, style, **kwargs)

    def _lens_run(self, view: str) -> OutputSeq:
        if not self.lm.hidden_states:
            raise EccoError(
                f"{view} needs hidden states: load with from_pretrained(..., hidden_states=True)."
            )
        return self.run

    def layer_predictions(self, position: int = 1, topk: int = 10, layer: int | None = None, **kwargs):
        """ecco's top-k tokens per layer for the token at ``position`` (layer 0 = the first
        block's output; ``layer`` picks one). ``printJson=True`` returns ecco's list."""
        options = _options("layer_predictions", kwargs)
        run = self._lens_run("layer_predictions")
        result: LayerPredictions = lens.layer_predictions(
            run, position=position, topk=topk, layer=layer, lens=options.get("lens", "ecco")
        )
        return ecco_json.layer_predictions_json(result) if options.get("printJson") else result

    def rankings(self, **kwargs):
        """ecco's rank, per layer, of each generated token. ``printJson=True``: ecco's dict."""
        options = _options("rankings", kwargs)
        result: Rankings = lens.rankings(self._lens_run("rankings"), lens=options.get("lens", "ecco"))
        return (
            ecco_json.rankings_json(result, self._raw_tokens, self.config)
            if options.get("printJson")
            else result
        )

    def rankings_watch(self, watch=None, position: int = -1, **kwargs):
        """ecco's rank, per layer, of the ``watch`` tokens (ids, or one-token strings) where the
        token at ``position`` is predicted; -1 is the last token (ecco's meaning)."""
        options = _options("rankings_watch", kwargs)
        if watch is None or (not isinstance(watch, (int, str)) and len(watch) == 0):
            raise InputError(
                "rankings_watch needs watch=[token ids], e.g. lm.tokenizer(' is are')['input_ids']."
            )
        position = len(self._raw_tokens) - 1 if position == -1 else position
        result: WatchRankings = lens.rankings_watch(
            self._lens_run("rankings_watch"), watch=watch, position=position, lens=options.get("lens", "ecco")
        )
        return (
            ecco_json.watch_json(result, self._raw_tokens, self.config)
            if options.get("printJson")
            else result
        )

    def run_nmf(self, **kwargs) -> EccoNMF:
        """ecco's NMF of the FFN activations (``n_components``, ``from_layer``, ``to_layer``)."""
        return EccoNMF(self, **kwargs)

    def attention(self, *args, **kwargs):
        raise UnsupportedIdiomError(
            "output.attention() is not supported: use ecco_core.attention.attention(output.run, "
            "method='head' | 'mean' | 'rollout', layer=...) (load with attention=True)."
        )

    def position(self, *args, **kwargs):
        raise UnsupportedIdiomError(
            "output.position(p) is not supported: use output.primary_attributions() and hover token p."
        )

    def __call__(self, *args, **kwargs):
        raise UnsupportedIdiomError("output(...) is not supported: use output.primary_attributions().")

    def explorable(self, printJson: bool = False):
        """The run's text (ecco's output explorable); ``printJson=True``: ecco's token dicts."""
        if not printJson:
            return self
        tokens = [
            {"token": raw, "token_id": int(i), "type": "input" if p < self.n_input_tokens else "output"}
            for p, (raw, i) in enumerate(zip(self._raw_tokens, self.run.token_ids))
        ]
        return ecco_json.EccoData({"tokens": tokens}, self)

    # ----- display ----------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"<LMOutput '{self.output_text}' # of lm outputs: {self.run.n_output_tokens}>"

    def __repr__(self) -> str:
        return f"<EccoOutputSeq {self.run.model_name} {summary_line(self.run)[1:]}"

    def _repr_html_(self) -> str:
        return run_html(self.run.tokens, self.n_input_tokens, self.run.special)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self._repr_html_(), "text/plain": str(self)}
