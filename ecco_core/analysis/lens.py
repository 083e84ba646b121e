"""The logit lens: what each layer would predict, and how a token climbs the ranks layer by layer.

Every layer's hidden state at a position is projected through the model's final norm (``lens=
"normed"``, the default) or straight through the unembedding (``lens="raw"``, ecco's way: the last
layer still reads the model's own output); ``projection`` does it once per run and lens for
every view. ``lens="ecco"`` is the raw lens with ecco's layer numbers: no embedding row, layer 0
is the first block's output and the last layer is the model's own prediction (ecco's rankings
cell for cell).

Positions follow ecco: ``position`` names the token being predicted, so the prediction comes
from the hidden state at ``position - 1``. Position 0 has no prediction; position
``n_tokens`` (or -1) is the token after the text, which the model has not written yet. On an
encoder-decoder the hidden states are the decoder's (``seq.state_offset``): predictions start
at ``n_input_tokens + 1``, the first generated token (ecco's relative convention).
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Sequence

import numpy as np
import torch

from ..errors import EccoError, InputError, PositionError
from ..model.tokens import decode_each
from ..results.lens import LayerPredictions, Rankings, WatchRankings
from ..results.progress import Progress, drain
from ..run import OutputSeq
from . import checks, projection
from .projection import MAX_TOPK

LENSES = checks.views.LENSES


# ----- results --------------------------------------------------------------------------------


# ----- the cached projection summary ----------------------------------------------------------


# ----- checks ---------------------------------------------------------------------------------
def _check_seq(seq: OutputSeq, view: str, lens: str) -> None:
    checks.views.lens(lens)
    seq.require_causal(view)
    if seq.hidden_states is None:
        raise EccoError(f"{view} needs the hidden states, and this run has none. Run the model again.")
    seq.require_lm()


def _read(lens: str) -> str:
    """The projection a lens reads: 'ecco' is the raw read-out."""
    return "raw" if lens == "ecco" else lens


def _layers(seq: OutputSeq, layer: int | Sequence[int] | None, lens: str) -> tuple[np.ndarray, np.ndarray]:
    """(layer,) hidden-state indices to read and (layer,) the numbers the result shows.

    The 'ecco' lens numbers blocks from 0 (hidden state ``k + 1`` is ecco's layer ``k``); the
    others number hidden states (0 = the embeddings).
    """
    if lens != "ecco":
        chosen = checks.hidden_layers(seq, layer)
        return chosen, chosen
    n = seq.n_layers
    chosen = np.arange(n) if layer is None else np.atleast_1d(np.asarray(layer))
    if chosen.size == 0 or chosen.dtype.kind not in "iu" or chosen.min() < 0 or chosen.max() >= n:
        raise InputError(
            f"layer must be a whole number from 0 (the first block's output, ecco's numbering) to {n - 1}, "
            f"or a list of them; got {layer!r}."
        )
    return chosen.astype(int) + 1, chosen.astype(int)


# ----- the views ------------------------------------------------------------------------------
def layer_predictions(
    seq: OutputSeq,
    position: int = 1,
    topk: int = 10,
    layer: int | Sequence[int] | None = None,
    lens: str = "normed",
    **kwargs,
) -> LayerPredictions:
    """Top-k tokens each layer predicts for the token at ``position`` (ecco's ``layer_predictions``).

    Args:
        position: the token being predicted, 1 .. n_tokens; n_tokens (or -1) is the token after
            the text. The prediction is read from the hidden states at ``position - 1``.
        topk: tokens per layer, 1 .. 50.
        layer: None for every layer (0 is the embeddings), an int, or a list of ints.
        lens: 'normed' applies the model's final norm first; 'raw' is ecco's read-out; 'ecco' is
            the raw read-out with ecco's layer numbers (0 = the first block's output).

    Raises:
        PositionError: position 0 or outside the run. InputError: bad topk, layer or lens.
        ModelTypeError: a masked LM.
    """
    _check_seq(seq, "Layer predictions", lens)
    position, topk = checks.predicted_position(seq, position), checks.topk(topk, MAX_TOPK)
    layers, labels = _layers(seq, layer, lens)
    summary = projection.summary(seq, _read(lens))
    hidden_pos = position - 1 - seq.state_offset
    projection.fill(seq, summary, _read(lens), np.array([hidden_pos]), topk)
    ids = summary.top_ids[layers, hidden_pos, :topk]  # (layer, k)
    has_target = position < seq.n_tokens
    return LayerPredictions(
        position=position,
        lens=lens,
        layers=labels,
        token_ids=ids,
        tokens=decode_each(seq.require_lm().tokenizer, ids),
        probs=np.exp(summary.top_logprobs[layers, hidden_pos, :topk]),
        target_ranks=summary.target_ranks[layers, hidden_pos].copy(),
        target_probs=np.exp(summary.target_logprobs[layers, hidden_pos]),
        target_id=int(seq.token_ids[position]) if has_target else -1,
        target_token=seq.tokens[position] if has_target else "",
        context_token=seq.tokens[position - 1],
    )


def rankings(
    seq: OutputSeq,
    include_prompt: bool = False,
    layer: int | Sequence[int] | None = None,
    lens: str = "normed",
    **kwargs,
) -> Rankings:
    """Rank, per layer, of the token that came next (ecco's ``rankings``).

    Args:
        include_prompt: also rank prompt tokens 1 .. n_input_tokens - 1 (the next prompt token),
            not only the generated ones (no effect on an encoder-decoder: its prompt is the encoder's).
        layer: None for every layer (0 is the embeddings), an int, or a list of ints.
        lens: 'normed' applies the model's final norm first; 'raw' is ecco's read-out; 'ecco' is
            the raw read-out with ecco's layer numbers (0 = the first block's output).

    Raises:
        PositionError: no generated tokens and ``include_prompt`` off, or a one-token text.
    """
    # one block of every position: the projection batches them (blocks of 4 cost 40 % more)
    return drain(rankings_steps(seq, include_prompt, layer, lens, block=seq.n_tokens))


RANKING_BLOCK = 4
"""Positions projected per step of ``rankings_steps``: every layer of 4 states, about 0.6 s for
SmolLM2-135M on 2 cores at load 4.6 (340 positions took 52-56 s there; 8 a step: up to 3.2 s)."""


def rankings_steps(
    seq: OutputSeq,
    include_prompt: bool = False,
    layer: int | Sequence[int] | None = None,
    lens: str = "normed",
    block: int = RANKING_BLOCK,
) -> Generator[Progress, None, Rankings]:
    """``rankings`` a block of positions at a time, the last (generated) positions first.

    Yields a ``Progress`` after each block whose ``partial`` makes the Rankings of the positions
    projected so far (a function: a view calls it once per screen update, not per block);
    returns the whole Rankings (what ``rankings`` returns). The projections go into the run's
    lens cache, so a stopped generator's work is kept.
    """
    _check_seq(seq, "Rankings", lens)
    checks.views.lens(lens, include_prompt)
    layers, labels = _layers(seq, layer, lens)
    first = max(1 if include_prompt else seq.n_input_tokens, seq.first_predicted_position)
    if first >= seq.n_tokens:
        raise PositionError(_nothing_to_rank(seq, include_prompt))
    positions = np.arange(first, seq.n_tokens)
    summary = projection.summary(seq, _read(lens))
    done = 0
    for end in range(len(positions), 0, -max(1, block)):  # (pos,) blocks from the end
        part = positions[max(0, end - block) : end]
        projection.fill(seq, summary, _read(lens), part - 1 - seq.state_offset)
        done += len(part)
        if done < len(positions):
            shown = positions[len(positions) - done :]
            yield Progress(
                done,
                len(positions),
                f"{done} of {len(positions)} positions (from {int(shown[0])} to the end)",
                functools.partial(_ranked, seq, summary, shown, layers, labels, lens),
            )
    return _ranked(seq, summary, positions, layers, labels, lens)


def _ranked(
    seq, summary, positions: np.ndarray, layers: np.ndarray, labels: np.ndarray, lens: str
) -> Rankings:
    """The Rankings of ``positions`` (tokens) read from a filled projection summary."""
    states = positions - 1 - seq.state_offset  # (pos,) index of the predicting state
    predicted = summary.top_ids[layers][:, states, 0]  # (layer, pos)
    tokens = np.asarray(seq.tokens, dtype=object)
    return Rankings(
        lens=lens,
        layers=labels,
        positions=positions,
        token_ids=seq.token_ids[positions].copy(),
        tokens=tokens[positions].astype(str),
        context_tokens=tokens[positions - 1].astype(str),
        ranks=summary.target_ranks[layers][:, states],
        probs=np.exp(summary.target_logprobs[layers][:, states]),
        predicted_ids=predicted,
        predicted_tokens=decode_each(seq.require_lm().tokenizer, predicted),
        n_input_tokens=seq.n_input_tokens,
    )


def _nothing_to_rank(seq: OutputSeq, include_prompt: bool) -> str:
    if seq.model_type == "enc-dec":
        return "This run generated no tokens, so there is nothing to rank: generate some tokens."
    if include_prompt:
        return "The text is a single token: there is no next token to rank. Use a longer prompt."
    return (
        "This run generated no tokens, so there is nothing to rank: turn on prompt positions "
        "(include_prompt=True) or generate some tokens."
    )


def rankings_watch(
    seq: OutputSeq,
    watch: int | str | Sequence[int | str] = (),
    position: int = -1,
    layer: int | Sequence[int] | None = None,
    lens: str = "normed",
    **kwargs,
) -> WatchRankings:
    """Rank, per layer, of watched tokens at one position (ecco's ``rankings_watch``).

    Args:
        watch: token ids and/or strings; each string must be exactly one token (" are" with its
            leading space is not "are").
        position: the token being predicted, 1 .. n_tokens; -1 (default) is the token after the text.
        layer: None for every layer (0 is the embeddings), an int, or a list of ints.
        lens: 'normed' applies the model's final norm first; 'raw' is ecco's read-out; 'ecco' is
            the raw read-out with ecco's layer numbers (0 = the first block's output).

    Raises:
        TokenError: empty watch list, an unknown id, or a string that is not exactly one token.
        PositionError: position 0 or outside the run.
    """
    _check_seq(seq, "Watched-token rankings", lens)
    position = checks.predicted_position(seq, position)
    layers, labels = _layers(seq, layer, lens)
    lm = seq.require_lm()
    summary = projection.summary(seq, _read(lens))
    logits = projection.position_logits(
        seq, summary, _read(lens), position - 1 - seq.state_offset
    )  # (layer + 1, vocab)
    ids = checks.watch_token_ids(lm.tokenizer, watch, vocab_size=logits.shape[-1])
    ranks, target_logits = projection.ranks_of(logits, torch.as_tensor(ids)[None].expand(logits.shape[0], -1))
    logprobs = target_logits - torch.logsumexp(logits, -1, keepdim=True)  # (layer + 1, cand)
    return WatchRankings(
        position=position,
        lens=lens,
        layers=labels,
        watch_ids=ids,
        watch_tokens=decode_each(lm.tokenizer, ids),
        ranks=ranks.numpy()[layers],
        probs=logprobs.exp().numpy()[layers],
        predicted_tokens=decode_each(lm.tokenizer, logits.argmax(-1).numpy()[layers]),
        input_tokens=list(seq.tokens[:position]),
    )
