"""Masked-token predictions per layer: what a masked LM would fill in at a position, layer by layer.

The masked-LM counterpart of the logit lens: each layer's state at the position itself (not the
one before it) goes through the model's MLM head (BERT: dense + activation + LayerNorm + decoder).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ModelTypeError, PositionError
from ..results.masked import MaskedPredictions
from ..run import OutputSeq
from . import checks


def mask_positions(seq: OutputSeq) -> list[int]:
    """Positions of the tokenizer's mask token in the run."""
    lm = seq.require_lm()
    mask_id = getattr(lm.tokenizer, "mask_token_id", None)
    return [] if mask_id is None else [int(p) for p in np.flatnonzero(seq.token_ids == mask_id)]


def require_mlm_head(seq: OutputSeq) -> None:
    """Refuse (ModelTypeError) unless the run is a masked LM that has a prediction head."""
    if seq.model_type != "mlm":
        raise ModelTypeError(
            f"Masked-token predictions are for masked LMs; {seq.model_name} is {seq.model_type}: "
            "use layer predictions instead."
        )
    lm = seq.require_lm()
    if lm.arch.unembedding is None:
        raise ModelTypeError(
            f"{seq.model_name} has no masked-LM head (it was saved as a sentence encoder), so it "
            "cannot fill in masked tokens; its hidden states, activations, attention and similarity "
            "views work. Use a model with an MLM head (e.g. bert-base-uncased) for predictions."
        )


def masked_predictions(seq: OutputSeq, position: int | None = None, topk: int = 10) -> MaskedPredictions:
    """Top-``topk`` tokens at ``position`` (default: the first mask token) after every layer.

    Raises:
        ModelTypeError: not a masked LM, or no MLM head.
        PositionError: no mask token and no position, or a position outside the run.
    """
    require_mlm_head(seq)
    lm = seq.require_lm()
    checks.views.masked(position, topk, lm.model.get_input_embeddings().num_embeddings)
    if position is None:
        masks = mask_positions(seq)
        if not masks:
            mask = getattr(lm.tokenizer, "mask_token", None) or "the mask token"
            raise PositionError(
                f"The text has no {mask}: put {mask} where the model should guess, or pick a position."
            )
        position = masks[0]
    if not -seq.n_tokens <= position < seq.n_tokens:
        raise PositionError(f"Position {position} is outside the run: pick 0..{seq.n_tokens - 1}.")
    position %= seq.n_tokens
    states = torch.from_numpy(seq.hidden_states[:, position])  # (layer + 1, d_model)
    with lm.lock, torch.inference_mode():
        probs = torch.softmax(lm.unembed(states).float(), dim=-1)  # (layer + 1, vocab)
        top = probs.topk(max(1, min(int(topk), probs.shape[-1])), dim=-1)
    ids = top.indices.cpu().numpy().astype(np.int64)  # (layer + 1, k)
    return MaskedPredictions(
        token_ids=ids,
        tokens=[[lm.tokenizer.decode([int(i)]) for i in row] for row in ids],
        probs=top.values.cpu().numpy().astype(np.float32),
        position=int(position),
        token=seq.tokens[position],
    )
