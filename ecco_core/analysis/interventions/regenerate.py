"""Regenerate under an intervention: the run's own continuation beside a greedy one with the
intervention applied, each token's probability under both models (same prefixes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ...errors import GenerationSettingsError
from ...model.tokens import display_tokens
from ...results.interventions import Regeneration
from ...run import OutputSeq
from .edits import Intervention, describe, intervened, prompt_means
from .sites import require_causal

MAX_NEW = 200


def _greedy(lm, prompt: torch.Tensor, n: int) -> tuple[list[int], np.ndarray]:
    """n greedy tokens after ``prompt`` (pos,) and each one's probability (float64 softmax)."""
    out = lm.model.generate(
        prompt[None].to(lm.device),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=lm.device),
        max_new_tokens=n,
        do_sample=False,
        temperature=None,
        top_k=None,
        top_p=None,
        pad_token_id=lm._pad_id(),
        output_logits=True,
        return_dict_in_generate=True,
    )
    ids = out.sequences[0, len(prompt) :].cpu().tolist()
    logits = torch.cat(out.logits)  # (n, vocab)
    p = torch.softmax(logits.double(), -1)[torch.arange(len(ids)), torch.tensor(ids)]
    return ids, p.cpu().numpy()


def _teacher_forced(lm, prompt: torch.Tensor, continuations: list[list[int]]) -> torch.Tensor:
    """(row, n) probability of each continuation's tokens after ``prompt``, right-padded rows."""
    n_prompt, longest = len(prompt), max(map(len, continuations))
    pad = lm._pad_id() or 0
    rows = [
        torch.cat([prompt, torch.tensor(c + [pad] * (longest - len(c)), dtype=torch.long)])
        for c in continuations
    ]
    ids = torch.stack(rows).to(lm.device)  # (row, pos)
    if lm._no_logits:  # only the positions that predict the continuations: half the unembedding
        logits = lm.model(input_ids=ids, use_cache=False, logits_to_keep=longest + 1).logits[:, :-1]
    else:
        logits = lm.model(input_ids=ids, use_cache=False).logits[:, n_prompt - 1 : -1]  # (row, n, vocab)
    probs = torch.softmax(logits.double(), -1)
    return probs.gather(-1, ids[:, n_prompt:, None])[..., 0].cpu()  # (row, n)


def _original(seq: OutputSeq, prompt: torch.Tensor, n: int) -> tuple[list[int], np.ndarray]:
    """The run's first ``n`` generated tokens and their probabilities from its stored final
    states; a fresh greedy continuation where the run has fewer."""
    lm, start = seq.require_lm(), seq.n_input_tokens
    ids = [int(i) for i in seq.token_ids[start : start + n]]
    if len(ids) < n or seq.hidden_states is None:
        return _greedy(lm, prompt, n)
    states = torch.as_tensor(seq.hidden_states[-1, start - 1 : start - 1 + n])  # (n, d_model)
    probs = torch.softmax(lm.unembed(states).double(), -1)  # (n, vocab)
    return ids, probs[torch.arange(n), torch.tensor(ids)].cpu().numpy()


def regenerate(seq: OutputSeq, interventions: Sequence[Intervention], generate: int = 20) -> Regeneration:
    """The run's continuation (its first ``generate`` tokens; greedy when the run has fewer) and a
    greedy continuation under ``interventions``, token by token with probabilities.

    Costs one generate under the intervention and one forward of two rows (the new continuation
    under the unchanged model, the original one under the intervention); the original tokens'
    own probabilities come from the run's stored final states (one unembedding of n rows).
    """
    lm = seq.require_lm()
    require_causal(lm, "Intervene and regenerate")
    if isinstance(generate, bool) or not isinstance(generate, int) or not 1 <= generate <= MAX_NEW:
        raise GenerationSettingsError(
            f"generate must be a whole number from 1 to {MAX_NEW}, not {generate!r}."
        )
    prompt = torch.as_tensor(seq.token_ids[: seq.n_input_tokens], dtype=torch.long)
    lm._check_length(len(prompt), generate)
    items = list(interventions)
    with lm.lock, torch.inference_mode():
        original, original_p = _original(seq, prompt, generate)
        means = prompt_means(lm, prompt, items)
        with intervened(lm, items, prompt, means=means):
            new, new_p = _greedy(lm, prompt, generate)
        with intervened(lm, items, prompt, rows=[1], means=means):
            probs = _teacher_forced(lm, prompt, [new, original])
    n_orig, n_new = len(original), len(new)
    return Regeneration(
        prompt_tokens=display_tokens(lm.tokenizer, prompt.numpy()),
        original_tokens=display_tokens(lm.tokenizer, np.asarray(original, dtype=np.int64)),
        original_p=original_p,
        original_p_intervened=probs[1, :n_orig].numpy(),
        intervened_tokens=display_tokens(lm.tokenizer, np.asarray(new, dtype=np.int64)),
        intervened_p=new_p,
        intervened_p_original=probs[0, :n_new].numpy(),
        description=describe(items),
        original_ids=original,
        intervened_ids=new,
    )
