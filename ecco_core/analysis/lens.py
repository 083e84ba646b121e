"""The logit lens: what each layer would predict, and how a token climbs the ranks layer by layer.

Every layer's hidden state at a position is projected through the model's final norm (``lens=
"normed"``, the default) or straight through the unembedding (``lens="raw"``, ecco's way) in
one chunked matrix product. Only what the views need is kept from each chunk: the top-k ids
and log-probabilities, and the rank and log-probability of the token that followed. A rank is
the count of strictly larger logits plus one (no sort over the vocabulary). The summary is
cached in the run's ``derived`` cache per lens, so rankings, layer predictions at every position and
watched tokens share one projection.

Positions follow ecco: ``position`` names the token being predicted, so the prediction comes
from the hidden state at ``position - 1``. Position 0 has no prediction; position
``n_tokens`` (or -1) is the token after the text, which the model has not written yet. On an
encoder-decoder the hidden states are the decoder's (``seq.state_offset``): predictions start
at ``n_input_tokens + 1``, the first generated token (ecco's relative convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import EccoError, InputError, PositionError
from ..model.architecture import LinearReadOut, linear_read_out
from ..model.tokens import decode_each
from ..results.lens import LayerPredictions, Rankings, WatchRankings
from ..run import OutputSeq
from . import checks

MAX_TOPK = 50
"""The top-k kept per (layer, position): views may ask for any k up to this."""
EAGER_TOPK = 10
"""Top-k kept on the first projection of a position; a view asking for more re-projects it."""
CHUNK_ROWS = 1024
"""(layer x position) rows projected together: one pass over the unembedding weight per chunk,
so a typical run's rows share one read of the weight and the per-block reductions run on fewer,
larger calls (``make bench`` times it)."""
VOCAB_BLOCK = 2048
"""Vocabulary columns per matmul: memory stays at CHUNK_ROWS x VOCAB_BLOCK floats."""
MIN_BLOCKED_ROWS = 128
"""Fewer rows than this are projected in one matmul over the whole vocabulary (faster)."""
LENSES = ("normed", "raw")
_WATCH_CACHE = 2  # positions whose full logits stay cached for watched tokens


# ----- results --------------------------------------------------------------------------------


# ----- the cached projection summary ----------------------------------------------------------
@dataclass
class _LensSummary:
    """What the views need from the projection, filled lazily per hidden-state position."""

    top_ids: np.ndarray
    """(layer + 1, pos, MAX_TOPK) int64; the first ``kept[pos]`` columns are filled."""
    top_logprobs: np.ndarray
    """(layer + 1, pos, MAX_TOPK) float32."""
    target_ranks: np.ndarray
    """(layer + 1, pos) int64 rank of token ``pos + 1``; -1 at the last position."""
    target_logprobs: np.ndarray
    """(layer + 1, pos) float32 log-probability of token ``pos + 1``; NaN at the last position."""
    log_norms: np.ndarray
    """(layer + 1, pos) float32 log of the softmax normaliser (logsumexp of the logits)."""
    kept: np.ndarray
    """(pos,) int: top-k columns filled per hidden-state position (0: not projected yet)."""
    logits: dict
    """hidden position -> (layer + 1, vocab) float32 logits, the last few watched positions."""

    @property
    def done(self) -> np.ndarray:
        """(pos,) bool: hidden-state positions already projected."""
        return self.kept > 0


def _summary(seq: OutputSeq, lens: str) -> _LensSummary:
    """The run's projection summary for ``lens`` (made empty on first use, filled lazily)."""
    n_rows, n_pos = seq.hidden_states.shape[:2]
    return seq.cached(
        ("lens", lens),
        lambda: _LensSummary(
            top_ids=np.zeros((n_rows, n_pos, MAX_TOPK), dtype=np.int64),
            top_logprobs=np.zeros((n_rows, n_pos, MAX_TOPK), dtype=np.float32),
            target_ranks=np.full((n_rows, n_pos), -1, dtype=np.int64),
            target_logprobs=np.full((n_rows, n_pos), np.nan, dtype=np.float32),
            log_norms=np.full((n_rows, n_pos), np.nan, dtype=np.float32),
            kept=np.zeros(n_pos, dtype=np.int64),
            logits={},
        ),
    )


@dataclass
class _Head:
    """The read-out of some rows as one matrix: logits = pre @ weight.T + bias."""

    pre: torch.Tensor
    """(rows, d_model) final-normed (or raw) and scaled states, in the model's dtype."""
    read_out: LinearReadOut


def _head(seq: OutputSeq, hidden: torch.Tensor, lens: str) -> _Head | None:
    """The states through the read-out's norm and scale, ready for one matmul per vocabulary
    block (None: a read-out that is not one matrix, which goes through ``lm.unembed``)."""
    read_out = linear_read_out(seq.require_lm().arch, lens == "normed")
    if read_out is None:
        return None
    with torch.inference_mode():
        return _Head(pre=read_out.prepare(hidden), read_out=read_out)


def _blocks(seq: OutputSeq, hidden: torch.Tensor, lens: str, rows: slice):
    """Yield (vocab offset, (rows, block) float32 logits) over the vocabulary for ``hidden[rows]``."""
    head = _head(seq, hidden[rows], lens)
    with torch.inference_mode():
        if head is None:
            yield 0, seq.require_lm().unembed(hidden[rows], normed=lens == "normed").float()
            return
        vocab = head.read_out.weight.shape[0]
        block = VOCAB_BLOCK if head.pre.shape[0] >= MIN_BLOCKED_ROWS else vocab  # few rows: one matmul
        for start in range(0, vocab, block):
            stop = min(start + block, vocab)
            bias = None if head.read_out.bias is None else head.read_out.bias[start:stop]
            yield start, torch.nn.functional.linear(head.pre, head.read_out.weight[start:stop], bias).float()


def _target_logits(seq: OutputSeq, hidden: torch.Tensor, lens: str, rows: slice, ids: torch.Tensor):
    """(rows,) float32 logits of ``ids`` (one per row) from their weight rows alone, or None."""
    head = _head(seq, hidden[rows], lens)
    if head is None:
        return None
    with torch.inference_mode():
        chosen = head.read_out.weight[ids.to(head.read_out.weight.device)]  # (rows, d_model)
        logits = (head.pre * chosen).sum(-1)
        if head.read_out.bias is not None:
            logits = logits + head.read_out.bias[ids.to(head.read_out.bias.device)]
        return logits.float()


def _reduce(blocks, targets: torch.Tensor, target_logits: torch.Tensor | None, k: int):
    """Top-k, target rank and logit, and log-normaliser over the vocabulary, block by block.

    A rank is the count of strictly larger logits (the target itself left out) plus one; only
    (rows, k) candidates and per-row counters survive a block, so memory stays at one block.

    Returns:
        (rows, k) int64 ids, (rows, k) float32 logits (most likely first), (rows,) int64 ranks,
        (rows,) float32 target logits and (rows,) float32 log-normalisers.
    """
    norms = []
    counts = torch.zeros(targets.shape[0], dtype=torch.int64)
    target_col = targets[:, None]  # (rows, 1)
    values = ids = None  # (rows, k) the running top k, most likely first
    for start, logits in blocks:  # logits: (rows, block)
        width = logits.shape[1]
        if values is None:
            values = torch.full((logits.shape[0], k), -torch.inf, device=logits.device)
            ids = torch.zeros(logits.shape[0], k, dtype=torch.int64, device=logits.device)
        if target_logits is None:  # one full-vocabulary block: read the target straight off it
            target_logits = logits.gather(1, target_col.to(logits.device))[:, 0]
        threshold = target_logits.to(logits.device)[:, None]
        counts += (logits > threshold).sum(-1, dtype=torch.int32).cpu()
        inside = (target_col >= start) & (target_col < start + width)  # (rows, 1) target in this block
        if inside.any():
            rows = inside[:, 0].nonzero()[:, 0]
            own = logits[rows.to(logits.device), (targets[rows] - start).to(logits.device)]
            counts[rows] -= (own > threshold[rows.to(logits.device), 0]).cpu().long()  # not above itself
        peak = logits.amax(-1, keepdim=True)  # (rows, 1)
        changed = (peak[:, 0] > values[:, -1]).nonzero()[:, 0]  # rows whose top k this block changes
        if changed.numel():
            new_values, new_ids = torch.topk(logits[changed], min(k, width), dim=-1)
            merged = torch.cat([values[changed], new_values], 1)
            merged_ids = torch.cat([ids[changed], new_ids + start], 1)
            values[changed], order = torch.topk(merged, k, dim=-1)
            ids[changed] = merged_ids.gather(1, order)
        norms.append(peak[:, 0] + logits.sub_(peak).exp_().sum(-1).log_())  # the block is spent here
    log_norm = torch.logsumexp(torch.stack(norms, 1), 1)  # (rows,)
    return ids.cpu(), values.cpu(), counts + 1, target_logits.cpu(), log_norm.cpu()


def _fill(
    seq: OutputSeq, summary: _LensSummary, lens: str, positions: np.ndarray, k: int = EAGER_TOPK
) -> None:
    """Project the hidden states at ``positions`` (hidden-state indices) not yet in the summary
    with at least ``k`` top tokens kept."""
    missing = np.unique(positions[summary.kept[positions] < k])
    if missing.size == 0:
        return
    k = max(k, EAGER_TOPK)
    n_layers, _, d_model = seq.hidden_states.shape
    hidden = torch.from_numpy(seq.hidden_states[:, missing]).reshape(-1, d_model)  # (layer * pos, d)
    # the next token is the target, a dummy id 0 at the last position (its rank is set to -1)
    next_ids = np.append(seq.token_ids[seq.state_offset + 1 :], 0)[missing]
    targets = torch.from_numpy(np.tile(next_ids, n_layers))  # (rows,)
    outputs = []
    for start in range(0, hidden.shape[0], CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, hidden.shape[0]))
        own = _target_logits(seq, hidden, lens, rows, targets[rows])
        outputs.append(_reduce(_blocks(seq, hidden, lens, rows), targets[rows], own, k))
    ids, logits, ranks, target, log_norm = (torch.cat(parts) for parts in zip(*outputs))
    shape = (n_layers, missing.size)
    summary.top_ids[:, missing, :k] = ids.numpy().reshape(*shape, k)
    summary.top_logprobs[:, missing, :k] = (logits - log_norm[:, None]).numpy().reshape(*shape, k)
    summary.target_ranks[:, missing] = ranks.numpy().reshape(shape)
    summary.target_logprobs[:, missing] = (target - log_norm).numpy().reshape(shape)
    summary.log_norms[:, missing] = log_norm.numpy().reshape(shape)
    last = seq.hidden_states.shape[1] - 1  # the last state predicts a token not in the text
    summary.target_ranks[:, last] = -1
    summary.target_logprobs[:, last] = np.nan
    summary.kept[missing] = k


def _ranks_of(logits: torch.Tensor, target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank (count of strictly larger logits + 1) and logit of targets.

    Args:
        logits: (rows, vocab).
        target_ids: (rows, n) ids.

    Returns:
        (rows, n) int64 ranks and (rows, n) float32 target logits.
    """
    target_logits = logits.gather(1, target_ids)  # (rows, n)
    columns = [target_logits[:, j : j + 1] for j in range(target_ids.shape[1])]
    ranks = torch.stack([(logits > t).sum(-1, dtype=torch.int32) for t in columns], dim=1)  # (rows, n)
    return ranks.long() + 1, target_logits


def _position_logits(seq: OutputSeq, summary: _LensSummary, lens: str, hidden_pos: int) -> torch.Tensor:
    """(layer + 1, vocab) float32 logits of every layer at one hidden position (small LRU)."""
    if hidden_pos in summary.logits:
        return summary.logits[hidden_pos]
    hidden = torch.from_numpy(seq.hidden_states[:, hidden_pos])  # (layer + 1, d_model)
    blocks = list(_blocks(seq, hidden, lens, slice(None)))
    logits = torch.cat([block.cpu() for _, block in blocks], dim=1)  # (layer + 1, vocab)
    while len(summary.logits) >= _WATCH_CACHE:
        summary.logits.pop(next(iter(summary.logits)))
    summary.logits[hidden_pos] = logits
    return logits


# ----- checks ---------------------------------------------------------------------------------
def _check_seq(seq: OutputSeq, view: str, lens: str) -> None:
    seq.require_causal(view)
    if seq.hidden_states is None:
        raise EccoError(f"{view} needs the hidden states, and this run has none. Run the model again.")
    if lens not in LENSES:
        raise InputError(f"lens must be 'normed' (final norm applied) or 'raw' (ecco's lens), not {lens!r}.")
    seq.require_lm()


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
        lens: 'normed' applies the model's final norm first; 'raw' is ecco's lens.

    Raises:
        PositionError: position 0 or outside the run. InputError: bad topk, layer or lens.
        ModelTypeError: a masked LM.
    """
    _check_seq(seq, "Layer predictions", lens)
    position, topk, layers = (
        checks.predicted_position(seq, position),
        checks.topk(topk, MAX_TOPK),
        checks.hidden_layers(seq, layer),
    )
    summary = _summary(seq, lens)
    hidden_pos = position - 1 - seq.state_offset
    _fill(seq, summary, lens, np.array([hidden_pos]), topk)
    ids = summary.top_ids[layers, hidden_pos, :topk]  # (layer, k)
    has_target = position < seq.n_tokens
    return LayerPredictions(
        position=position,
        lens=lens,
        layers=layers,
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
        lens: 'normed' applies the model's final norm first; 'raw' is ecco's lens.

    Raises:
        PositionError: no generated tokens and ``include_prompt`` off, or a one-token text.
    """
    _check_seq(seq, "Rankings", lens)
    layers = checks.hidden_layers(seq, layer)
    first = max(1 if include_prompt else seq.n_input_tokens, seq.first_predicted_position)
    if first >= seq.n_tokens:
        raise PositionError(_nothing_to_rank(seq, include_prompt))
    positions = np.arange(first, seq.n_tokens)
    states = positions - 1 - seq.state_offset  # (pos,) index of the predicting state
    summary = _summary(seq, lens)
    _fill(seq, summary, lens, states)
    predicted = summary.top_ids[layers][:, states, 0]  # (layer, pos)
    tokens = np.asarray(seq.tokens, dtype=object)
    return Rankings(
        lens=lens,
        layers=layers,
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
        lens: 'normed' applies the model's final norm first; 'raw' is ecco's lens.

    Raises:
        TokenError: empty watch list, an unknown id, or a string that is not exactly one token.
        PositionError: position 0 or outside the run.
    """
    _check_seq(seq, "Watched-token rankings", lens)
    position, layers = checks.predicted_position(seq, position), checks.hidden_layers(seq, layer)
    lm = seq.require_lm()
    summary = _summary(seq, lens)
    logits = _position_logits(seq, summary, lens, position - 1 - seq.state_offset)  # (layer + 1, vocab)
    ids = checks.watch_token_ids(lm.tokenizer, watch, vocab_size=logits.shape[-1])
    ranks, target_logits = _ranks_of(logits, torch.as_tensor(ids)[None].expand(logits.shape[0], -1))
    logprobs = target_logits - torch.logsumexp(logits, -1, keepdim=True)  # (layer + 1, cand)
    return WatchRankings(
        position=position,
        lens=lens,
        layers=layers,
        watch_ids=ids,
        watch_tokens=decode_each(lm.tokenizer, ids),
        ranks=ranks.numpy()[layers],
        probs=logprobs.exp().numpy()[layers],
        predicted_tokens=decode_each(lm.tokenizer, logits.argmax(-1).numpy()[layers]),
        input_tokens=list(seq.tokens[:position]),
    )
