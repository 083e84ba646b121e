"""What every attribution method reads: the run's embeddings, the explained positions and the
target function, checked once per ``saliency`` call and shared by its methods."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...errors import InputError, ModelTypeError, TokenError
from ...run import OutputSeq
from .. import checks
from .targets import TARGETS, Target

if TYPE_CHECKING:
    from ...model.lm import LanguageModel, Progress

BASELINES = ("zero", "pad")
QUADRATURES = ("auto", "adaptive", "gauss", "graded", "left")
BACKEND_CHOICES = ("auto", "autograd")
"""'auto': the hand-written backward where it applies (and passed its self-check), else autograd."""


@dataclass(eq=False)
class AttributionContext:
    """Everything a method needs; built once per ``saliency`` call (and shared by its methods)."""

    lm: LanguageModel
    embeds: torch.Tensor
    """(pos, d_model) input embeddings of the sequence (detached, on the model's device)."""
    token_ids: torch.Tensor
    """(pos,) token ids on the model's device."""
    positions: torch.Tensor
    """(n_targets,) positions of the tokens to explain, increasing, each >= 1."""
    target_ids: torch.Tensor
    """(n_targets,) the token at each of those positions."""
    foil_ids: torch.Tensor | None = None
    """(n_targets,) the foil token for contrastive targets."""
    target: str = "prob"
    n_steps: int = 16
    baseline: str = "zero"
    quadrature: str = "auto"
    backend: str = "auto"
    """'auto' (the hand-written backward where it applies) or 'autograd'."""
    attentions: Callable[[], np.ndarray] | None = None
    """Returns (layer, head, pos, pos) attention weights (captured on demand)."""
    progress: Progress | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    n_encoder: int = 0
    """Encoder tokens at the front of ``embeds`` (0 unless the model is an encoder-decoder)."""

    @property
    def target_function(self) -> Target:
        """The target of every explained token."""
        return Target(self.target, self.target_ids, self.foil_ids)

    def objective(self, logits: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
        """(..., n, vocab) logits of targets ``rows`` -> (..., n) values of the target function."""
        return self.target_function.rows(rows).values(logits)


@dataclass
class MethodScores:
    """What one method returns (torch tensors on any device)."""

    values: torch.Tensor
    """(n_targets, pos) score of each token for each target; 0 at and after the target."""
    signed: torch.Tensor | None = None
    """(n_targets, pos) signed contributions (summed over embedding dims), where defined."""
    baseline_values: torch.Tensor | None = None
    """(n_targets,) target function at the IG baseline."""
    unit: str = "share of the total (sums to 1)"


def foil_id(lm: LanguageModel, foil: int | str) -> int:
    """The one token id of a foil given as an id or a string (``checks.one_token_id``)."""
    return checks.one_token_id(
        lm.tokenizer, foil, lm.model.get_input_embeddings().num_embeddings, role="foil"
    )


def _check_settings(target: str, foil, n_steps: int, baseline: str, rule: str) -> None:
    if target not in TARGETS:
        raise InputError(f"Unknown target {target!r}. Pick one of: {', '.join(TARGETS)}.")
    if target.startswith("contrast") and foil is None:
        raise TokenError(f"target={target!r} needs a foil: the token to contrast with, e.g. ' is'.")
    if foil is not None and not target.startswith("contrast"):
        raise InputError("A foil needs target='contrast' (logits) or target='contrast_prob'.")
    if not isinstance(n_steps, (int, np.integer)) or not 1 <= n_steps <= 512:
        raise InputError(f"n_steps must be a whole number in 1..512, not {n_steps!r}.")
    if baseline not in BASELINES:
        raise InputError(f"Unknown baseline {baseline!r}. Pick one of: {', '.join(BASELINES)}.")
    if rule not in QUADRATURES:
        raise InputError(f"Unknown quadrature {rule!r}. Pick one of: {', '.join(QUADRATURES)}.")


def build_context(
    seq: OutputSeq,
    positions: Sequence[int] | None = None,
    target: str = "prob",
    foil: int | str | None = None,
    n_steps: int = 16,
    baseline: str = "zero",
    quadrature: str = "auto",
    progress: Progress | None = None,
    backend: str = "auto",
) -> AttributionContext:
    """Check the settings and gather what the methods need from ``seq`` and its model."""
    lm = seq.require_lm()
    if seq.model_type not in ("causal", "enc-dec"):
        raise ModelTypeError(
            f"Input saliency explains next-token predictions; {seq.model_name} is a "
            f"{seq.model_type} model. Pick a causal or encoder-decoder model for this view."
        )
    _check_settings(target, foil, n_steps, baseline, quadrature)
    if backend not in BACKEND_CHOICES:
        raise InputError(f"Unknown backend {backend!r}. Pick one of: {', '.join(BACKEND_CHOICES)}.")
    explained = checks.explained_positions(seq, positions)
    device = lm.device
    ids = torch.as_tensor(seq.token_ids, dtype=torch.long, device=device)
    pos = torch.tensor(explained, dtype=torch.long, device=device)
    n_encoder = seq.n_input_tokens if seq.model_type == "enc-dec" else 0
    with torch.no_grad():
        if n_encoder:
            encoder_ids = torch.as_tensor(seq.extras["encoder"]["token_ids"], dtype=torch.long, device=device)
            embeds = encoder_decoder_embeds(lm.model, encoder_ids, ids[n_encoder:]).detach()  # (pos, d)
        else:
            embeds = lm.model.get_input_embeddings()(ids).detach()  # (pos, d_model)
    foil_ids = None if foil is None else torch.full_like(pos, foil_id(lm, foil))
    if foil_ids is not None:
        checks.foil_differs(seq, explained, int(foil_ids[0]), explicit=positions is not None)
    return AttributionContext(
        lm=lm,
        embeds=embeds,
        token_ids=ids,
        positions=pos,
        target_ids=ids[pos],
        foil_ids=foil_ids,
        target=target,
        n_steps=int(n_steps),
        baseline=baseline,
        quadrature=quadrature,
        backend=backend,
        attentions=lambda: seq_attentions(seq),
        progress=progress,
        n_encoder=n_encoder,
    )


def seq_attentions(seq: OutputSeq) -> np.ndarray:
    """(layer, head, pos, pos) the run's attention, or one capture forward with attention."""
    if seq.attentions is not None:
        return seq.attentions
    return seq.cached(("attention", "all layers"), lambda: _capture_attentions(seq))


def _capture_attentions(seq: OutputSeq) -> np.ndarray:
    lm = seq.require_lm()
    ids = torch.as_tensor(seq.token_ids, dtype=torch.long)
    captured = lm.capture(ids, seq.n_input_tokens, attention=True, activation_layers=[])
    if captured.attentions is None:
        raise ModelTypeError(f"{seq.model_name} does not expose attention weights.")
    return captured.attentions


def report(ctx: AttributionContext, fraction: float) -> None:
    if ctx.progress:
        ctx.progress("attribution", fraction)


def encoder_decoder_logits(model: torch.nn.Module, embeds: torch.Tensor, n_encoder: int) -> torch.Tensor:
    """(batch, dec_pos, vocab) decoder logits of an encoder-decoder over ``embeds`` (batch, pos, d):
    the first ``n_encoder`` rows are the encoder's input embeddings, the rest the decoder's."""
    return model(
        inputs_embeds=embeds[:, :n_encoder],
        decoder_inputs_embeds=embeds[:, n_encoder:],
        use_cache=False,
    ).logits


def encoder_decoder_embeds(model: torch.nn.Module, encoder_ids: torch.Tensor, decoder_ids: torch.Tensor):
    """(enc_pos + dec_pos, d_model) input embeddings exactly as each stack builds them (BART's
    ``embed_scale`` included: its embedding modules multiply inside their forward)."""
    stacks = (model.get_encoder(), model.get_decoder())
    tables = [getattr(stack, "embed_tokens", None) for stack in stacks]
    tables = [model.get_input_embeddings() if table is None else table for table in tables]
    return torch.cat([tables[0](encoder_ids), tables[1](decoder_ids)])
