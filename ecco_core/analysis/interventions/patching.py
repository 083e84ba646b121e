"""Compare two prompts: attribution patching (the gradient approximation, the whole grid from two
forwards and one backward) and exact activation patching (one batched forward per request).

Direction: activations of the *corrupted* run are patched into the *clean* run, and the effect
is ``metric(patched clean run) - metric(clean run)``. Attribution patching approximates it to
first order at the clean run: ``(a_corrupted - a_clean) . d metric / d a`` (Nanda 2023).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import InputError, TokenError
from ...model.lm import LanguageModel
from ...results.interventions import METRICS, Patching
from .. import checks
from .sites import SITES, SiteHook, check_site, hooked, recorder, require_causal

BATCH = 64
"""Patched copies of the clean prompt per forward (a request of more runs in chunks)."""


@dataclass(eq=False)
class PromptPair:
    """A clean and a corrupted prompt of the same length in tokens, and the metric to compare."""

    lm: LanguageModel
    clean_ids: torch.Tensor
    """(pos,) token ids of the clean prompt."""
    corrupted_ids: torch.Tensor
    """(pos,) token ids of the corrupted prompt."""
    answer_id: int
    foil_id: int | None
    metric: str
    """'logit_diff' (answer minus foil logit) or 'prob' (the answer's probability)."""
    memo: dict = field(default_factory=dict, repr=False)

    @property
    def n_tokens(self) -> int:
        return len(self.clean_ids)

    def tokens(self, ids: torch.Tensor) -> list[str]:
        return [self.lm.tokenizer.decode([int(i)]) for i in ids]

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        """(batch, vocab) last-position logits -> (batch,) metric values."""
        if self.metric == "prob":
            return torch.softmax(logits.double(), dim=-1)[:, self.answer_id]
        return logits[:, self.answer_id] - logits[:, self.foil_id]

    def corrupted_cache(self) -> dict[tuple[str, int], torch.Tensor]:
        """(site, layer) -> (pos, d) activations of the corrupted run, and its metric (made once)."""
        if "cache" not in self.memo:
            store: dict = {}
            hooks = _site_hooks(self.lm, store, grad=False)
            with hooked(self.lm, hooks), torch.inference_mode():
                logits = last_logits(self.lm, self.corrupted_ids[None])
            self.memo["cache"] = {key: value[0] for key, value in store.items()}
            self.memo["metric_corrupted"] = float(self.score(logits)[0])
        return self.memo["cache"]

    def attribution_patching(self) -> Patching:
        """The whole (site, layer, position) grid of first-order estimates (``attribution_patching``)."""
        return attribution_patching(self)

    def exact_patching(
        self, site: str = "resid", layer: int | None = None, position: int | None = None
    ) -> tuple[list[tuple[int, int]], np.ndarray]:
        """Exact effects of a row, a column or a cell (``exact_patching``)."""
        return exact_patching(self, site, layer, position)


def compare(
    lm: LanguageModel,
    clean: str,
    corrupted: str,
    answer: int | str,
    foil: int | str | None = None,
    metric: str = "logit_diff",
) -> PromptPair:
    """A clean/corrupted pair of prompts and the metric that compares them.

    Raises:
        InputError: prompts of different lengths in tokens, or an unknown metric.
        TokenError: an answer or foil that is not one token; no foil for 'logit_diff'.
    """
    require_causal(lm, "Prompt comparison")
    if metric not in METRICS:
        raise InputError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}.")
    clean_ids, corrupted_ids = lm.encode(clean), lm.encode(corrupted)
    if len(clean_ids) != len(corrupted_ids):
        show = lm.tokenizer.convert_ids_to_tokens
        raise InputError(
            f"The clean prompt is {len(clean_ids)} tokens {show(clean_ids.tolist())} and the corrupted "
            f"prompt {len(corrupted_ids)} tokens {show(corrupted_ids.tolist())}: patching needs the same "
            "number of tokens. Change a word for one of the same token length."
        )
    vocab = lm.model.get_input_embeddings().num_embeddings
    answer_id = checks.one_token_id(lm.tokenizer, answer, vocab)
    foil_id = None if foil is None or foil == "" else checks.one_token_id(lm.tokenizer, foil, vocab, "foil")
    if metric == "logit_diff" and foil_id is None:
        raise TokenError(
            "metric='logit_diff' needs a foil: the answer of the corrupted prompt, e.g. ' Rome'."
        )
    if foil_id == answer_id:
        raise TokenError(f"The answer and the foil are the same token ({answer!r}): pick two different ones.")
    return PromptPair(lm, clean_ids, corrupted_ids, answer_id, foil_id, metric)


def last_logits(lm: LanguageModel, ids: torch.Tensor) -> torch.Tensor:
    """(batch, vocab) the model's own logits at the last position of ``ids`` (batch, pos)."""
    out = lm.model(input_ids=ids.to(lm.device), use_cache=False, **lm._no_logits)
    return out.logits[:, -1]


def _site_layers(lm: LanguageModel, site: str) -> range:
    return range(lm.arch.n_layers + 1) if site == "resid" else range(lm.arch.n_layers)


def available_sites(lm: LanguageModel) -> list[str]:
    """The grid sites this model has (no 'mlp' where no FFN output projection was found)."""
    return [s for s in SITES if s != "mlp" or lm.arch.ffn_sites]


def _site_hooks(lm: LanguageModel, store: dict, grad: bool) -> list[SiteHook]:
    hooks = []
    for site in available_sites(lm):
        for layer in _site_layers(lm, site):
            leaf = grad and site == "resid" and layer == 0  # the graph starts at block 0's input
            hooks.append(SiteHook(site, layer, recorder(store, (site, layer), grad_leaf=leaf)))
    return hooks


def attribution_patching(pair: PromptPair) -> Patching:
    """The first-order estimate of patching each (site, layer, position) from the corrupted run.

    Two forwards (the corrupted one without gradients) and one backward.
    """
    lm = pair.lm
    cache = pair.corrupted_cache()
    store: dict = {}
    with hooked(lm, _site_hooks(lm, store, grad=True)), torch.enable_grad():
        value = pair.score(last_logits(lm, pair.clean_ids[None]))[0]
        keys = list(store)
        grads = torch.autograd.grad(value, [store[k] for k in keys], allow_unused=True)
    approx = {}
    for site in available_sites(lm):
        rows = []
        for layer in _site_layers(lm, site):
            i = keys.index((site, layer))
            grad = grads[i] if grads[i] is not None else torch.zeros_like(store[keys[i]])
            delta = cache[(site, layer)] - store[keys[i]].detach()[0]  # (pos, d)
            rows.append((delta.double() * grad[0].double()).sum(-1))  # (pos,)
        approx[site] = torch.stack(rows).cpu().numpy()  # (layer, pos)
    return Patching(
        approx=approx,
        exact={site: np.full_like(grid, np.nan) for site, grid in approx.items()},
        clean_tokens=pair.tokens(pair.clean_ids),
        corrupted_tokens=pair.tokens(pair.corrupted_ids),
        metric=pair.metric,
        answer=lm.tokenizer.decode([pair.answer_id]),
        foil=None if pair.foil_id is None else lm.tokenizer.decode([pair.foil_id]),
        metric_clean=float(value.detach()),
        metric_corrupted=pair.memo["metric_corrupted"],
    )


def _cells(pair: PromptPair, site: str, layer: int | None, position: int | None) -> list[tuple[int, int]]:
    layers = list(_site_layers(pair.lm, site))
    if layer is not None and layer not in layers:
        raise InputError(
            f"layer for site {site!r} must be a whole number from 0 to {layers[-1]}, not {layer!r}."
        )
    n = pair.n_tokens
    if position is not None and (isinstance(position, bool) or not 0 <= position < n):
        raise InputError(f"position must be a whole number from 0 to {n - 1}, not {position!r}.")
    rows = layers if layer is None else [layer]
    cols = range(n) if position is None else [position]
    if layer is None and position is None:
        raise InputError("Pick a layer (a row), a position (a column), or both (a cell) to patch exactly.")
    return [(r, c) for r in rows for c in cols]


def exact_patching(
    pair: PromptPair, site: str = "resid", layer: int | None = None, position: int | None = None
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Exact effect of patching single cells of ``site``: a row (``position`` only: every layer at
    one position), a column (``layer`` only) or one cell, as one batched forward.

    Returns:
        The (layer, position) cells and (cell,) ``metric(patched) - metric(clean)`` of each.
    """
    check_site(site)
    if site not in available_sites(pair.lm):
        raise InputError(f"This model has no {site!r} site (no FFN output projection was found).")
    cells = _cells(pair, site, layer, position)
    cache = pair.corrupted_cache()
    if "metric_clean" not in pair.memo:
        pair.memo["metric_clean"] = patched_metric(pair, [])
    base = pair.memo["metric_clean"]
    values = []
    for start in range(0, len(cells), BATCH):
        chunk = cells[start : start + BATCH]
        hooks = [
            SiteHook(
                site,
                lay,
                _cell_patch([b for b, c in enumerate(chunk) if c[0] == lay], chunk, cache[(site, lay)]),
            )
            for lay in sorted({c[0] for c in chunk})
        ]
        ids = pair.clean_ids[None].expand(len(chunk), -1)
        with hooked(pair.lm, hooks), torch.inference_mode():
            values.append(pair.score(last_logits(pair.lm, ids)).double().cpu())
    return cells, torch.cat(values).numpy() - base


def _cell_patch(rows: list[int], cells: list[tuple[int, int]], source: torch.Tensor):
    """Hook: batch row ``b`` gets the corrupted activation at its cell's position."""
    positions = [cells[b][1] for b in rows]

    def patch(tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        out[rows, positions] = source[positions].to(out.dtype)
        return out

    return patch


def patched_metric(pair: PromptPair, patches: Sequence[tuple[str, int, Sequence[int] | None]]) -> float:
    """The clean run's metric with every patch in ``patches`` applied at once: (site, layer,
    positions or None for all) from the corrupted run. ``[]`` is the clean run itself."""
    return float(pair.score(patched_logits(pair, patches))[0])


def patched_logits(
    pair: PromptPair, patches: Sequence[tuple[str, int, Sequence[int] | None]]
) -> torch.Tensor:
    """(1, vocab) last-position logits of the clean run with ``patches`` applied at once."""
    cache = pair.corrupted_cache() if patches else {}
    hooks = []
    for site, layer, positions in patches:
        check_site(site)
        where = slice(None) if positions is None else list(positions)
        hooks.append(SiteHook(site, layer, _span_patch(where, cache[(site, layer)])))
    with hooked(pair.lm, hooks), torch.inference_mode():
        return last_logits(pair.lm, pair.clean_ids[None]).double()


def _span_patch(where, source: torch.Tensor):
    def patch(tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        out[:, where] = source[where].to(out.dtype)
        return out

    return patch


def with_exact(
    result: Patching, pair: PromptPair, site: str, layer: int | None, position: int | None
) -> Patching:
    """``result`` with the exact values of a row, a column or a cell of ``site`` filled in."""
    cells, values = exact_patching(pair, site, layer, position)
    return result.with_exact(site, cells, values)
