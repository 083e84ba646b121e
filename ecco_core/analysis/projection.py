"""The logit lens's projection: every (layer, position) state through the read-out in one
chunked matrix product, reduced block by block to what the views need.

Only the top-k ids and log-probabilities, and the rank and log-probability of the token that
followed, survive a vocabulary block. A rank is the count of strictly larger logits plus one
(no sort over the vocabulary). The summary is cached in the run's ``derived`` cache per lens, so
rankings, layer predictions at every position and watched tokens share one projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.architecture import LinearReadOut, linear_read_out
from ..run import OutputSeq

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


_WATCH_CACHE = 2  # positions whose full logits stay cached for watched tokens


@dataclass
class LensSummary:
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


def summary(seq: OutputSeq, lens: str) -> LensSummary:
    """The run's projection summary for ``lens`` (made empty on first use, filled lazily)."""
    n_rows, n_pos = seq.hidden_states.shape[:2]
    return seq.cached(
        ("lens", lens),
        lambda: LensSummary(
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


def _as_read(seq: OutputSeq, states: torch.Tensor, lens: str) -> torch.Tensor:
    """(layer + 1, ..., d_model) states as the lens reads them. The raw lens reads the last layer
    through the final norm: the model's own output, and the last hidden state transformers (and so
    ecco) hands out; every other layer stays raw."""
    lm = seq.require_lm()
    norm = lm.arch.final_norm
    if lens != "raw" or norm is None:
        return states
    states = states.clone()
    with torch.inference_mode():
        last = states[-1].to(lm.device, lm.dtype)
        states[-1] = norm(last).to(states.device, states.dtype)
    return states


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
            logits = torch.nn.functional.linear(head.pre, head.read_out.weight[start:stop], bias)
            yield start, head.read_out.finish(logits).float()


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
        return head.read_out.finish(logits).float()


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


def fill(seq: OutputSeq, summary: LensSummary, lens: str, positions: np.ndarray, k: int = EAGER_TOPK) -> None:
    """Project the hidden states at ``positions`` (hidden-state indices) not yet in the summary
    with at least ``k`` top tokens kept."""
    missing = np.unique(positions[summary.kept[positions] < k])
    if missing.size == 0:
        return
    k = max(k, EAGER_TOPK)
    n_layers, _, d_model = seq.hidden_states.shape
    states = torch.from_numpy(seq.hidden_states[:, missing])  # (layer + 1, pos, d), a copy
    hidden = _as_read(seq, states, lens).reshape(-1, d_model)  # (layer * pos, d)
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


def ranks_of(logits: torch.Tensor, target_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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


def position_logits(seq: OutputSeq, summary: LensSummary, lens: str, hidden_pos: int) -> torch.Tensor:
    """(layer + 1, vocab) float32 logits of every layer at one hidden position (small LRU)."""
    if hidden_pos in summary.logits:
        return summary.logits[hidden_pos]
    hidden = _as_read(seq, torch.from_numpy(seq.hidden_states[:, hidden_pos]), lens)  # (layer + 1, d_model)
    blocks = list(_blocks(seq, hidden, lens, slice(None)))
    logits = torch.cat([block.cpu() for _, block in blocks], dim=1)  # (layer + 1, vocab)
    while len(summary.logits) >= _WATCH_CACHE:
        summary.logits.pop(next(iter(summary.logits)))
    summary.logits[hidden_pos] = logits
    return logits
