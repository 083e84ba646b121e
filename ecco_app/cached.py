"""Cached calls: the shared model (``load_lm``, its preload) and one typed cached function per
derived result (the loader, fair turns and the budget are in ``ecco_app.serving``).

With ``ecco_app.store`` and ``ecco_app.serving``, the only modules with ``st.cache_resource``. A
derived result is kept per (session, run_id, view, parameters) in the byte-bounded
``ecco_app.store`` and never re-runs the model; parameters are keyword-only and JSON-serialisable.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Generator
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np
import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

import ecco_core
from ecco_app import serving, store
from ecco_app.serving import (  # noqa: F401 - re-exported: the app's one place for cached calls
    LOAD_TIMEOUT_S,
    FairTurns,
    ModelLoader,
    cache_write_note,
    missing_embedded_package,
    model_loader,
    plan_run,
    turns,
    work_bytes,
)
from ecco_core import results
from ecco_core.analysis import attention, attribution, checks, neurons, similarity
from ecco_core.analysis import lens as logit_lens
from ecco_core.errors import MemoryBudgetError
from ecco_core.model import budget
from ecco_core.model.weights import DEFAULT_MODEL
from ecco_core.results.progress import Progress

P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger("ecco_explorer")


def load_lm(
    name: str, device: str = "auto", dtype: str | None = None, on_progress: Callable | None = None
) -> ecco_core.LM:
    """One shared model per (name, device, dtype) for every session (waits ``LOAD_TIMEOUT_S``;
    ``on_progress(DownloadProgress)`` hears a hub download as it goes)."""
    return model_loader().load(name, device, dtype, on_progress=on_progress)


@st.cache_resource(show_spinner=False)
def preload_default_model() -> threading.Thread | None:
    """Once per server process: load ``DEFAULT_MODEL`` in the background, so the first Run finds it.

    A Run that comes first waits on the same future. Nothing starts under AppTest, which swaps
    in a mock Runtime and runs many sessions in one process, nor with ``ECCO_PRELOAD=0``.
    """
    served = Runtime.exists() and type(Runtime.instance()) is Runtime
    if not served or os.environ.get("ECCO_PRELOAD", "1") == "0":
        return None
    thread = threading.Thread(target=_preload, args=(DEFAULT_MODEL,), name="ecco-preload", daemon=True)
    thread.start()
    return thread


def _preload(name: str) -> None:
    try:
        model_loader().future(name).result()  # the same future as the sidebar's Run
    except Exception:  # the Run will load again and show the error to the person who asked
        log.warning("preloading %s failed", name, exc_info=True)


# ----- derived results, per session in the byte-bounded store ------------------------------------------


def _per_run(
    compute: Callable[Concatenate[ecco_core.OutputSeq, P], R],
) -> Callable[Concatenate[ecco_core.OutputSeq, P], R]:
    """Cache ``compute(seq, **params)`` by (session, seq.run_id, its name, params) in the store."""

    @functools.wraps(compute)
    def cached(seq: ecco_core.OutputSeq, *args: P.args, **params: P.kwargs) -> R:
        if args:
            raise TypeError(f"{compute.__name__}: pass the parameters by name")
        sid, shared = store.session_id(), store.shared_store()
        key = _derived_key(seq, compute.__name__, params)
        found = shared.get(sid, key)
        if found is not None:
            return found
        result = compute(seq, **params)
        shared.put(sid, key, result)
        shared.resize(sid, store.RUN)  # the run's own cache (lens projections) may have grown
        return result

    return cached


def _derived_key(seq: ecco_core.OutputSeq, name: str, params: dict) -> tuple:
    return ("derived", seq.run_id, name, json.dumps(params, sort_keys=True))


def _stepped(
    seq: ecco_core.OutputSeq, name: str, params: dict, make: Callable[[], Generator[Progress, None, R]]
) -> Generator[Progress, None, R]:
    """The steps of cached call ``name(seq, **params)``: its cached result at once if there is
    one, else ``make()``'s steps, whose result goes into the same cache entry."""
    sid, shared = store.session_id(), store.shared_store()
    key = _derived_key(seq, name, params)
    found = shared.get(sid, key)
    if found is not None:
        return found
    result = yield from make()
    shared.put(sid, key, result)
    shared.resize(sid, store.RUN)  # the run's own cache (lens projections) may have grown
    return result


# ----- logit lens ------------------------------------------------------------------------------------


@_per_run
def layer_predictions(
    seq: ecco_core.OutputSeq, *, position: int, topk: int, layers: list[int], lens: str
) -> results.LayerPredictions:
    """Top-k tokens per layer for the token at ``position``; ``lens`` is 'normed' or 'raw'."""
    return logit_lens.layer_predictions(seq, position=position, topk=topk, layer=layers, lens=lens)


@_per_run
def rankings(
    seq: ecco_core.OutputSeq, *, include_prompt: bool, layers: list[int], lens: str
) -> results.Rankings:
    """Rank per layer of each written token (and the prompt's, with ``include_prompt``)."""
    return logit_lens.rankings(seq, include_prompt=include_prompt, layer=layers, lens=lens)


def rankings_steps(
    seq: ecco_core.OutputSeq, *, include_prompt: bool, layers: list[int], lens: str
) -> Generator[Progress, None, results.Rankings]:
    """``rankings`` a block of positions at a time (``ecco_app.stepwise``)."""
    params = {"include_prompt": include_prompt, "layers": layers, "lens": lens}
    return _stepped(
        seq,
        "rankings",
        params,
        lambda: logit_lens.rankings_steps(seq, include_prompt=include_prompt, layer=layers, lens=lens),
    )


@_per_run
def watch_rankings(
    seq: ecco_core.OutputSeq, *, watch: list[int | str], position: int, lens: str
) -> results.WatchRankings:
    """Rank per layer of the watched tokens (ids or texts) at ``position``."""
    return logit_lens.rankings_watch(seq, watch=watch, position=position, lens=lens)


# ----- attribution -----------------------------------------------------------------------------------


MOST_TARGETS_PER_TURN = 4
"""Explained tokens per turn on the model at most: a chunk of a long saliency is short, so a
request that arrives meanwhile waits for one chunk only."""
GRADIENT_METHODS = ("gradient", "grad_x_input", "integrated_gradients")


@_per_run
def saliency(
    seq: ecco_core.OutputSeq,
    *,
    method: str,
    target: str,
    foil: str | None,
    n_steps: int,
    baseline: str,
    quadrature: str,
    positions: list[int] | None,
) -> results.Saliency:
    """Input saliency of the generated tokens (or of ``positions`` only) by ``method``, computed
    in chunks of explained tokens: each chunk fits the memory budget and takes one fair turn on
    the model, so other visitors' requests run between chunks."""
    lm = seq.require_lm()
    explained = checks.explained_positions(seq, positions)
    shape = budget.model_shape(lm)
    size = budget.targets_per_chunk(shape, seq.n_tokens, work_bytes(lm), most=MOST_TARGETS_PER_TURN)
    gradients = attribution.method_name(method) in GRADIENT_METHODS
    if gradients and budget.gradient_target_bytes(shape, seq.n_tokens) > work_bytes(lm):
        raise MemoryBudgetError(
            f"Explaining one token of this {seq.n_tokens}-token run needs about "
            f"{budget.gradient_target_bytes(shape, seq.n_tokens) / budget.MB:.0f} MB, more than the "
            f"{work_bytes(lm) / budget.MB:.0f} MB this server allows one computation: saliency works "
            f"on runs of up to {budget.longest_explainable(shape, work_bytes(lm))} tokens here."
        )
    chunks = [explained[i : i + size] for i in range(0, len(explained), size)] or [explained]
    parts = []
    for chunk in chunks:
        with model_turn(lm, f"saliency {len(chunk)}"):
            parts.append(
                attribution.saliency(
                    seq,
                    attr_method=method,
                    target=target,
                    foil=foil,
                    n_steps=n_steps,
                    baseline=baseline,
                    quadrature=quadrature,
                    positions=chunk,
                )
            )
    store.return_memory()  # the backward's buffers: back to the OS, not kept by the allocator
    return merge_saliency(parts)


def model_turn(lm: ecco_core.LM, what: str):
    """One fair turn on ``lm`` for a page's own use of the model (interventions), its place in
    the queue said while it waits; long work should take one per chunk instead (``saliency``)."""
    return turns(lm).turn(what, on_wait=waiting_notice)


def waiting_notice(ahead: int) -> None:
    """A page's computation waiting for its turn on the model says so (a toast: the page's own
    elements stay as they are); silent outside a script run (the benchmark, threads in tests)."""
    if get_script_run_ctx() is not None:
        st.toast(serving.waiting_text(ahead), icon="⏳")


def merge_saliency(parts: list[results.Saliency]) -> results.Saliency:
    """One result from chunks over disjoint, increasing positions (rows stacked in order)."""
    if len(parts) == 1:
        return parts[0]

    def stacked(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    first = parts[0]
    return dataclasses.replace(
        first,
        positions=stacked("positions"),
        values=stacked("values"),
        target_values=stacked("target_values"),
        signed=stacked("signed"),
        baseline_values=stacked("baseline_values"),
        evaluations=stacked("evaluations"),
    )


# ----- neurons and similarity ------------------------------------------------------------------------


@_per_run
def factors(
    seq: ecco_core.OutputSeq,
    *,
    n_components: int,
    from_layer: int,
    to_layer: int,
    positions: str,
    method: str,
    skip_first: bool,
    side: str,
) -> results.Factorization:
    """NMF or PCA factors of the FFN activations of layers ``from_layer .. to_layer - 1``."""
    _factors_room(seq, from_layer, to_layer, side)
    return neurons.run_nmf(
        seq,
        n_components=n_components,
        from_layer=from_layer,
        to_layer=to_layer,
        positions=positions,
        method=method,
        skip_first=skip_first,
        side=side,
    )


def _factors_room(seq: ecco_core.OutputSeq, from_layer: int, to_layer: int, side: str) -> None:
    """Raise MemoryBudgetError when factorising these layers would not fit one computation."""
    lm = seq.require_lm()
    stack = seq.stack(side)
    chosen = [layer for layer in stack.activation_layers if from_layer <= layer < to_layer]
    shape, room = budget.model_shape(lm), work_bytes(lm)
    need = budget.factorisation_bytes(shape, stack.n_tokens, len(chosen))
    if need > room:
        most = max(1, room // max(budget.factorisation_bytes(shape, stack.n_tokens, 1), 1))
        raise MemoryBudgetError(
            f"Factorising {len(chosen)} layers' neurons over {stack.n_tokens} tokens needs about "
            f"{need / budget.MB:.0f} MB, more than the {room / budget.MB:.0f} MB this server allows one "
            f"computation: pick at most {most} layers with the Layers slider."
        )


def factors_steps(seq: ecco_core.OutputSeq, **params) -> Generator[Progress, None, results.Factorization]:
    """``factors`` (same keywords) a few NMF sweeps at a time (``ecco_app.stepwise``)."""

    def make():
        _factors_room(seq, params["from_layer"], params["to_layer"], params["side"])
        return neurons.nmf_steps(seq, **params)

    return _stepped(seq, "factors", params, make)


@_per_run
def top_neurons(
    seq: ecco_core.OutputSeq,
    *,
    position: int,
    k: int,
    from_layer: int,
    to_layer: int,
    relative: bool,
    side: str,
) -> results.TopNeurons:
    """The ``k`` most active FFN neurons at ``position`` in layers ``from_layer .. to_layer - 1``."""
    return neurons.top_neurons(
        seq, position=position, k=k, from_layer=from_layer, to_layer=to_layer, relative=relative, side=side
    )


@_per_run
def neuron_activations(
    seq: ecco_core.OutputSeq, *, layer: int, neuron: int, side: str
) -> results.NeuronTrace:
    """One FFN neuron's activation at every position of ``side``."""
    return neurons.neuron_activations(seq, layer=layer, neuron=neuron, side=side)


@_per_run
def layer_similarity(
    seq: ecco_core.OutputSeq,
    *,
    method: str,
    source: str,
    dims: int,
    skip_first: bool,
    normalize: bool,
    side: str,
) -> results.LayerSimilarity:
    """Every pair of layers compared by ``method`` (cka, cca, svcca, pwcca) on ``source`` vectors."""
    _similarity_room(seq, method, source, side)
    return similarity.layer_similarity(
        seq, method=method, source=source, dims=dims, skip_first=skip_first, normalize=normalize, side=side
    )


def _similarity_room(seq: ecco_core.OutputSeq, method: str, source: str, side: str) -> None:
    """Raise MemoryBudgetError when comparing every pair of layers would not fit one computation."""
    lm = seq.require_lm()
    stack = seq.stack(side)
    hidden = stack.hidden_states
    n_layers = (
        (0 if hidden is None else hidden.shape[0]) if source == "hidden" else len(stack.activation_layers)
    )
    shape, room = budget.model_shape(lm), work_bytes(lm)
    need = budget.similarity_bytes(shape, stack.n_tokens, method, source, n_layers)
    if need > room:
        most = budget.longest_within(
            lambda n: budget.similarity_bytes(shape, n, method, source, n_layers), room
        )
        raise MemoryBudgetError(
            f"Comparing {n_layers} layers over {stack.n_tokens} tokens by {method.upper()} needs about "
            f"{need / budget.MB:.0f} MB, more than the {room / budget.MB:.0f} MB this server allows one "
            f"computation: it works on runs of up to {most} tokens here (try another method or source)."
        )


def layer_similarity_steps(
    seq: ecco_core.OutputSeq, **params
) -> Generator[Progress, None, results.LayerSimilarity]:
    """``layer_similarity`` (same keywords) a layer at a time (``ecco_app.stepwise``)."""

    def make():
        _similarity_room(seq, params["method"], params["source"], params["side"])
        return similarity.similarity_steps(seq, **params)

    return _stepped(seq, "layer_similarity", params, make)


# ----- attention -------------------------------------------------------------------------------------


@_per_run
def attention_grid(seq: ecco_core.OutputSeq, *, layers: list[int], side: str) -> results.HeadGrid:
    """Every head of ``layers`` as a thumbnail, with per-head statistics."""
    return attention.attention_grid(seq, layers=layers, side=side)


@_per_run
def attention_map(
    seq: ecco_core.OutputSeq, *, method: str, layer: int, head: int, side: str
) -> results.AttentionMap:
    """One attention map: one head, the mean of heads or the rollout up to ``layer``."""
    return attention.attention(seq, method=method, layer=layer, head=head, side=side)
