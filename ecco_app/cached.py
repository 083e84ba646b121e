"""Cached calls: the shared model loader, its preload, and one typed cached function per derived result.

The only module with ``st.cache_resource`` / ``st.cache_data``. A derived result is cached per
(run_id, view, parameters) in one bounded cache and never re-runs the model; parameters are
keyword-only and JSON-serialisable, results must pickle (plain data).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import streamlit as st
from streamlit.runtime import Runtime

import ecco_core
from ecco_core import results
from ecco_core.analysis import attention, attribution, neurons, similarity
from ecco_core.analysis import lens as logit_lens
from ecco_core.model.weights import DEFAULT_MODEL

P = ParamSpec("P")
R = TypeVar("R")


@st.cache_resource(max_entries=3, show_spinner=False)
def load_lm(name: str, device: str = "auto", dtype: str | None = None) -> ecco_core.LM:
    """One shared model per (name, device, dtype) for every session."""
    return ecco_core.from_pretrained(name, device=device, dtype=dtype)


@st.cache_resource(show_spinner=False)
def preload_default_model() -> threading.Thread | None:
    """Once per server process: load ``DEFAULT_MODEL`` in a daemon thread, so the first Run finds it.

    A Run that comes first waits on the same ``load_lm`` entry (Streamlit computes a cached value
    once and lets other callers wait for it). Nothing starts under AppTest, which swaps in a mock
    Runtime and runs many sessions in one process, nor with ``ECCO_PRELOAD=0``.
    """
    served = Runtime.exists() and type(Runtime.instance()) is Runtime
    if not served or os.environ.get("ECCO_PRELOAD", "1") == "0":
        return None
    thread = threading.Thread(target=_preload, args=(DEFAULT_MODEL,), name="ecco-preload", daemon=True)
    thread.start()
    return thread


def _preload(name: str) -> None:
    try:
        load_lm(name)  # the same call (and cache key) as the sidebar's Run
    except Exception:  # the Run will load again and show the error to the person who asked
        logging.getLogger("ecco_explorer").warning("preloading %s failed", name, exc_info=True)


@st.cache_data(max_entries=256, ttl=3600, max_size="256MB", show_spinner=False)
def _derived(run_id: str, view: str, params_json: str, _seq: ecco_core.OutputSeq, _compute: Callable) -> Any:
    return _compute(_seq, **json.loads(params_json))


def _per_run(
    compute: Callable[Concatenate[ecco_core.OutputSeq, P], R],
) -> Callable[Concatenate[ecco_core.OutputSeq, P], R]:
    """Cache ``compute(seq, **params)`` by (seq.run_id, its name, params) in the one bounded cache."""

    @functools.wraps(compute)
    def cached(seq: ecco_core.OutputSeq, *args: P.args, **params: P.kwargs) -> R:
        if args:
            raise TypeError(f"{compute.__name__}: pass the parameters by name")
        return _derived(seq.run_id, compute.__name__, json.dumps(params, sort_keys=True), seq, compute)

    return cached


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


@_per_run
def watch_rankings(
    seq: ecco_core.OutputSeq, *, watch: list[int | str], position: int, lens: str
) -> results.WatchRankings:
    """Rank per layer of the watched tokens (ids or texts) at ``position``."""
    return logit_lens.rankings_watch(seq, watch=watch, position=position, lens=lens)


# ----- attribution -----------------------------------------------------------------------------------


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
    """Input saliency of the generated tokens (or of ``positions`` only) by ``method``."""
    return attribution.saliency(
        seq,
        attr_method=method,
        target=target,
        foil=foil,
        n_steps=n_steps,
        baseline=baseline,
        quadrature=quadrature,
        positions=positions,
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
    return similarity.layer_similarity(
        seq, method=method, source=source, dims=dims, skip_first=skip_first, normalize=normalize, side=side
    )


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
