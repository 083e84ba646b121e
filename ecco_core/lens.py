"""The logit lens: what each layer would predict, and how a token climbs the ranks layer by layer.

Every layer's hidden state at a position is projected through the model's final norm (``lens=
"normed"``, the default) or straight through the unembedding (``lens="raw"``, ecco's way) in
one chunked matrix product. Only what the views need is kept from each chunk: the top-k ids
and log-probabilities, and the rank and log-probability of the token that followed. A rank is
the count of strictly larger logits plus one (no sort over the vocabulary). The summary is
cached on the OutputSeq per (run, lens), so rankings, layer predictions at every position and
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
import pandas as pd
import torch

from .errors import EccoError, InputError, PositionError, TokenError
from .output import OutputSeq

MAX_TOPK = 50
"""The top-k kept per (layer, position): views may ask for any k up to this."""
EAGER_TOPK = 10
"""Top-k kept on the first projection of a position; a view asking for more re-projects it."""
CHUNK_ROWS = 1024
"""(layer x position) rows projected together: one pass over the unembedding weight per chunk.
All rows of a 20-token run (31 layers x 20 positions) in one chunk take 0.17 s against 0.21 s in
chunks of 256 (the weight is read once, and the per-block reductions run on fewer, larger calls)."""
VOCAB_BLOCK = 2048
"""Vocabulary columns per matmul: memory stays at CHUNK_ROWS x VOCAB_BLOCK floats."""
MIN_BLOCKED_ROWS = 128
"""Fewer rows than this are projected in one matmul over the whole vocabulary (faster)."""
LENSES = ("normed", "raw")
_WATCH_CACHE = 2  # positions whose full logits stay cached for watched tokens


# ----- results --------------------------------------------------------------------------------
@dataclass
class LayerPredictions:
    """Top-k tokens each layer would predict for the token at ``position``."""

    position: int
    """The position of the token being predicted (the hidden state is at ``position - 1``)."""
    lens: str
    """'normed' (final norm applied) or 'raw' (ecco's lens)."""
    layers: np.ndarray
    """(layer,) int: hidden-state index of each row; 0 is the embeddings."""
    token_ids: np.ndarray
    """(layer, k) int64 ids of the top-k predictions, most likely first."""
    tokens: np.ndarray
    """(layer, k) str: readable text of ``token_ids``."""
    probs: np.ndarray
    """(layer, k) float32 probabilities of ``token_ids``."""
    target_ranks: np.ndarray
    """(layer,) int64 rank of the token actually at ``position`` (-1 for the unwritten next token)."""
    target_probs: np.ndarray
    """(layer,) float32 probability of that token (NaN for the unwritten next token)."""
    target_id: int
    """Id of the token at ``position``, or -1 at position ``n_tokens``."""
    target_token: str
    """Text of the token at ``position`` ('' at position ``n_tokens``)."""
    context_token: str
    """Text of the token at ``position - 1``, the last one the prediction sees."""

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, rank): layer, rank, token, token_id, prob, is_target."""
        n_layers, k = self.token_ids.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, k),
                "rank": np.tile(np.arange(1, k + 1), n_layers),
                "token": self.tokens.ravel(),
                "token_id": self.token_ids.ravel(),
                "prob": self.probs.ravel().astype(float),
                "is_target": (self.token_ids == self.target_id).ravel(),
            }
        )

    def to_dict(self) -> dict:
        """JSON-ready; ``predictions`` is ecco's printJson: per layer, a list of
        ``{'token', 'prob' (str), 'ranking', 'layer'}``."""
        predictions = [
            [
                {"token": str(tok), "prob": str(float(p)), "ranking": r + 1, "layer": int(layer)}
                for r, (tok, p) in enumerate(zip(row_tokens, row_probs))
            ]
            for layer, row_tokens, row_probs in zip(self.layers, self.tokens, self.probs)
        ]
        return {
            "position": self.position,
            "lens": self.lens,
            "target_token": self.target_token,
            "target_id": self.target_id,
            "target_ranks": self.target_ranks.tolist(),
            "target_probs": [None if np.isnan(p) else float(p) for p in self.target_probs],
            "predictions": predictions,
        }

    def figure(self, **kwargs):
        """Layers x top-k boxes shaded by probability (see ``figures.lens``)."""
        from .figures.lens import layer_predictions_figure

        return layer_predictions_figure(self, **kwargs)


@dataclass
class Rankings:
    """Rank, per layer, of the token that actually came next, at each position."""

    lens: str
    layers: np.ndarray
    """(layer,) int: hidden-state index of each row; 0 is the embeddings."""
    positions: np.ndarray
    """(pos,) int: positions of the ranked tokens (each predicted from ``position - 1``)."""
    token_ids: np.ndarray
    """(pos,) int64 ids of the ranked tokens."""
    tokens: np.ndarray
    """(pos,) str: the ranked tokens."""
    context_tokens: np.ndarray
    """(pos,) str: the token before each ranked token (the one the prediction is made at)."""
    ranks: np.ndarray
    """(layer, pos) int64: 1 means the layer's top prediction is the token."""
    probs: np.ndarray
    """(layer, pos) float32 probability of the token."""
    predicted_ids: np.ndarray
    """(layer, pos) int64: each layer's top prediction."""
    predicted_tokens: np.ndarray
    """(layer, pos) str: text of ``predicted_ids``."""
    n_input_tokens: int
    """Positions below this are prompt tokens."""

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, position): layer, position, token, context, rank, prob, predicted."""
        n_layers, n_pos = self.ranks.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, n_pos),
                "position": np.tile(self.positions, n_layers),
                "token": np.tile(self.tokens, n_layers),
                "context_token": np.tile(self.context_tokens, n_layers),
                "part": np.tile(np.where(self.positions < self.n_input_tokens, "prompt", "output"), n_layers),
                "rank": self.ranks.ravel(),
                "prob": self.probs.ravel().astype(float),
                "predicted_token": self.predicted_tokens.ravel(),
            }
        )

    def to_dict(self) -> dict:
        """JSON-ready, ecco's printJson keys (``input_tokens`` and ``output_tokens`` as repr)
        plus ``positions``, ``layers``, ``probs`` and ``lens``. ``token_found_mask`` is 0 where
        the layer's top prediction is the token."""
        return {
            "input_tokens": [repr(str(t)) for t in self.context_tokens],
            "output_tokens": [repr(str(t)) for t in self.tokens],
            "rankings": self.ranks.tolist(),
            "predicted_tokens": self.predicted_tokens.tolist(),
            "token_found_mask": (self.ranks != 1).astype(int).tolist(),
            "positions": self.positions.tolist(),
            "layers": self.layers.tolist(),
            "probs": self.probs.astype(float).tolist(),
            "lens": self.lens,
        }

    def figure(self, **kwargs):
        """Layers x positions heatmap of ranks on a log colour scale (see ``figures.lens``)."""
        from .figures.lens import rankings_figure

        return rankings_figure(self, **kwargs)


@dataclass
class WatchRankings:
    """Rank, per layer, of chosen candidate tokens at one position."""

    position: int
    """The position being predicted (hidden state at ``position - 1``)."""
    lens: str
    layers: np.ndarray
    """(layer,) int: hidden-state index of each row; 0 is the embeddings."""
    watch_ids: np.ndarray
    """(cand,) int64 ids of the watched tokens."""
    watch_tokens: np.ndarray
    """(cand,) str: text of the watched tokens (leading spaces kept)."""
    ranks: np.ndarray
    """(layer, cand) int64 rank of each watched token; 1 is the layer's top prediction."""
    probs: np.ndarray
    """(layer, cand) float32 probability of each watched token."""
    predicted_tokens: np.ndarray
    """(layer,) str: each layer's top prediction at this position."""
    input_tokens: list[str]
    """The tokens the prediction sees: positions ``0 .. position - 1``."""

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, candidate): layer, token, token_id, rank, prob, predicted_token."""
        n_layers, n_cand = self.ranks.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(self.layers, n_cand),
                "position": self.position,
                "token": np.tile(self.watch_tokens, n_layers),
                "token_id": np.tile(self.watch_ids, n_layers),
                "rank": self.ranks.ravel(),
                "prob": self.probs.ravel().astype(float),
                "predicted_token": np.repeat(self.predicted_tokens, n_cand),
            }
        )

    def to_dict(self) -> dict:
        """JSON-ready, ecco's printJson keys (``output_tokens`` as repr) plus extras."""
        return {
            "input_tokens": list(self.input_tokens),
            "output_tokens": [repr(str(t)) for t in self.watch_tokens],
            "rankings": self.ranks.tolist(),
            "position": self.position,
            "layers": self.layers.tolist(),
            "watch_ids": self.watch_ids.tolist(),
            "probs": self.probs.astype(float).tolist(),
            "lens": self.lens,
        }

    def figure(self, kind: str = "heatmap", **kwargs):
        """``kind='heatmap'``: layers x candidates; ``kind='lines'``: rank by layer, rank 1 on top."""
        from .figures.lens import watch_heatmap_figure, watch_lines_figure

        if kind not in ("heatmap", "lines"):
            raise InputError(f"kind must be 'heatmap' or 'lines', not {kind!r}.")
        return (watch_heatmap_figure if kind == "heatmap" else watch_lines_figure)(self, **kwargs)


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
    key = f"lens::{lens}"
    cached = seq.extras.get(key)
    if cached is not None and cached[0] == seq.run_id:
        return cached[1]
    n_rows, n_pos = seq.hidden_states.shape[:2]
    summary = _LensSummary(
        top_ids=np.zeros((n_rows, n_pos, MAX_TOPK), dtype=np.int64),
        top_logprobs=np.zeros((n_rows, n_pos, MAX_TOPK), dtype=np.float32),
        target_ranks=np.full((n_rows, n_pos), -1, dtype=np.int64),
        target_logprobs=np.full((n_rows, n_pos), np.nan, dtype=np.float32),
        log_norms=np.full((n_rows, n_pos), np.nan, dtype=np.float32),
        kept=np.zeros(n_pos, dtype=np.int64),
        logits={},
    )
    seq.extras[key] = (seq.run_id, summary)
    return summary


@dataclass
class _Head:
    """The unembedding as one matrix: logits = pre(hidden) @ weight.T + bias."""

    pre: torch.Tensor
    """(rows, d_model) final-normed (or raw) and scaled states, in the model's dtype."""
    weight: torch.Tensor
    """(vocab, d_model) the unembedding weight."""
    bias: torch.Tensor | None
    """(vocab,) linear bias plus the model's logit bias, or None."""


def _head(seq: OutputSeq, hidden: torch.Tensor, lens: str) -> _Head | None:
    """The states through the final norm, ready for one matmul per vocabulary block (None: a head
    that is not a plain linear layer, which goes through ``lm.unembed`` instead)."""
    lm = seq.require_lm()
    arch = lm.arch
    layer = arch.unembedding
    if not isinstance(layer, torch.nn.Linear) or (lens == "normed" and arch.mlm_head is not None):
        return None
    with torch.inference_mode():
        pre = hidden.to(lm.device, lm.dtype)  # (rows, d_model)
        if lens == "normed" and arch.final_norm is not None:
            pre = arch.final_norm(pre)
        if arch.logit_scale != 1.0:
            pre = pre * arch.logit_scale
        bias = layer.bias
        if arch.logit_bias is not None:
            extra = arch.logit_bias.reshape(-1).to(layer.weight.dtype)
            bias = extra if bias is None else bias + extra
    return _Head(pre=pre, weight=layer.weight, bias=bias)


def _blocks(seq: OutputSeq, hidden: torch.Tensor, lens: str, rows: slice):
    """Yield (vocab offset, (rows, block) float32 logits) over the vocabulary for ``hidden[rows]``."""
    head = _head(seq, hidden[rows], lens)
    with torch.inference_mode():
        if head is None:
            yield 0, seq.require_lm().unembed(hidden[rows], normed=lens == "normed").float()
            return
        vocab = head.weight.shape[0]
        block = VOCAB_BLOCK if head.pre.shape[0] >= MIN_BLOCKED_ROWS else vocab  # few rows: one matmul
        for start in range(0, vocab, block):
            stop = min(start + block, vocab)
            bias = None if head.bias is None else head.bias[start:stop]
            yield start, torch.nn.functional.linear(head.pre, head.weight[start:stop], bias).float()


def _target_logits(seq: OutputSeq, hidden: torch.Tensor, lens: str, rows: slice, ids: torch.Tensor):
    """(rows,) float32 logits of ``ids`` (one per row) from their weight rows alone, or None."""
    head = _head(seq, hidden[rows], lens)
    if head is None:
        return None
    with torch.inference_mode():
        chosen = head.weight[ids.to(head.weight.device)]  # (rows, d_model)
        logits = (head.pre * chosen).sum(-1)
        if head.bias is not None:
            logits = logits + head.bias[ids.to(head.bias.device)]
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


def _check_position(seq: OutputSeq, position: int) -> int:
    """The position of the token to predict, first .. n_tokens (-1 means n_tokens)."""
    n, first = seq.n_tokens, seq.first_predicted_position
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise PositionError(f"position must be a whole number from {first} to {n}, not {position!r}.")
    position = int(position)
    if position == -1:
        return n
    if position == 0:
        raise PositionError(
            "Position 0 is the first token: nothing comes before it, so no layer predicts it. "
            f"Pick a position from {first} to {n} (position p shows the predictions made after token p - 1)."
        )
    if 0 < position < first:
        raise PositionError(
            f"Position {position} is part of the encoder's input (or the decoder start token): only "
            f"the decoder predicts tokens. Pick a position from {first} (the first generated token) to {n}."
        )
    if not first <= position <= n:
        where = f"{first} to {n - 1} for a token of the text" if first < n else f"{n}"
        raise PositionError(
            f"Position {position} is outside this run: pick {where}, or {n} (or -1) for the token after it."
        )
    return position


def _check_layers(seq: OutputSeq, layer: int | Sequence[int] | None) -> np.ndarray:
    """(layer,) hidden-state indices: all for None, one for an int, the given ones for a list."""
    n = seq.n_layers
    if layer is None:
        return np.arange(n + 1)
    chosen = np.atleast_1d(np.asarray(layer))
    if chosen.size == 0 or chosen.dtype.kind not in "iu" or chosen.min() < 0 or chosen.max() > n:
        raise InputError(f"layer must be a whole number from 0 (the embeddings) to {n}, or a list of them.")
    return chosen.astype(int)


def _check_topk(topk: int) -> int:
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= MAX_TOPK:
        raise InputError(f"topk must be a whole number from 1 to {MAX_TOPK}, not {topk!r}.")
    return int(topk)


def _decode(tokenizer, ids: np.ndarray) -> np.ndarray:
    """Readable text of every id in ``ids`` (any shape), decoding each distinct id once."""
    unique, inverse = np.unique(ids, return_inverse=True)
    texts = tokenizer.batch_decode([[int(i)] for i in unique])
    return np.asarray(texts, dtype=object)[inverse].reshape(ids.shape).astype(str)


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
    position, topk, layers = _check_position(seq, position), _check_topk(topk), _check_layers(seq, layer)
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
        tokens=_decode(seq.require_lm().tokenizer, ids),
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
    layers = _check_layers(seq, layer)
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
        predicted_tokens=_decode(seq.require_lm().tokenizer, predicted),
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
    position, layers = _check_position(seq, position), _check_layers(seq, layer)
    lm = seq.require_lm()
    summary = _summary(seq, lens)
    logits = _position_logits(seq, summary, lens, position - 1 - seq.state_offset)  # (layer + 1, vocab)
    ids = watch_token_ids(lm.tokenizer, watch, vocab_size=logits.shape[-1])
    ranks, target_logits = _ranks_of(logits, torch.as_tensor(ids)[None].expand(logits.shape[0], -1))
    logprobs = target_logits - torch.logsumexp(logits, -1, keepdim=True)  # (layer + 1, cand)
    return WatchRankings(
        position=position,
        lens=lens,
        layers=layers,
        watch_ids=ids,
        watch_tokens=_decode(lm.tokenizer, ids),
        ranks=ranks.numpy()[layers],
        probs=logprobs.exp().numpy()[layers],
        predicted_tokens=_decode(lm.tokenizer, logits.argmax(-1).numpy()[layers]),
        input_tokens=list(seq.tokens[:position]),
    )


def parse_watch_text(text: str, leading_space: bool = True) -> list[str | int]:
    """Candidate tokens from comma-separated text, as typed in the app.

    Each item is stripped; with ``leading_space`` a word gets one leading space (" are", the
    word inside a sentence). A quoted item ('are' or "are") is taken exactly as typed, and
    ``#123`` is the token id 123.

    >>> parse_watch_text("is, are, 'Are', #42")
    [' is', ' are', 'Are', 42]
    """
    items: list[str | int] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            items.append(item[1:-1])
        elif item.startswith("#") and item[1:].isdigit():
            items.append(int(item[1:]))
        else:
            items.append(" " + item if leading_space else item)
    return items


def watch_token_ids(tokenizer, watch: int | str | Sequence[int | str], vocab_size: int) -> np.ndarray:
    """(cand,) int64 ids of watched tokens given as ids or single-token strings (duplicates dropped).

    Raises:
        TokenError: nothing to watch, an id outside the vocabulary, an empty string, or a string
            that is several tokens (the message shows its pieces and a one-token variant).
    """
    items = [watch] if isinstance(watch, (str, int, np.integer)) else list(watch or [])
    if not items:
        raise TokenError('Nothing to watch: give one or more tokens, e.g. [" is", " are"].')
    ids: list[int] = []
    for item in items:
        token_id = _one_token_id(tokenizer, item, vocab_size)
        if token_id not in ids:
            ids.append(token_id)
    return np.asarray(ids, dtype=np.int64)


def _one_token_id(tokenizer, item: int | str, vocab_size: int) -> int:
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        if not 0 <= int(item) < vocab_size:
            raise TokenError(f"Token id {item} is not in the vocabulary (0 .. {vocab_size - 1}).")
        return int(item)
    if not isinstance(item, str):
        raise TokenError(f"Watch tokens must be strings or token ids, not {item!r}.")
    if item == "":
        raise TokenError('An empty string is not a token: type a word such as " are".')
    ids = tokenizer.encode(item, add_special_tokens=False)
    if len(ids) == 1:
        unk = getattr(tokenizer, "unk_token_id", None)
        if ids[0] == unk and item != tokenizer.unk_token:
            raise TokenError(f"{item!r} is not in the vocabulary of this model.")
        return int(ids[0])
    if not ids:
        raise TokenError(f"{item!r} gives no token with this tokenizer.")
    pieces = " + ".join(repr(tokenizer.decode([i])) for i in ids)
    raise TokenError(
        f"{item!r} is {len(ids)} tokens for this model ({pieces}); watch one token at a time."
        + _one_token_hint(tokenizer, item)
    )


def _one_token_hint(tokenizer, item: str) -> str:
    """A variant of ``item`` that is one token: with or without the leading space."""
    variant = item.strip() if item[:1].isspace() else " " + item
    if variant and len(tokenizer.encode(variant, add_special_tokens=False)) == 1:
        where = "without the leading space" if item[:1].isspace() else "with a leading space"
        return f" {variant!r} ({where}) is one token: words inside a sentence usually start with a space."
    return " Try its first piece, or a shorter word."
