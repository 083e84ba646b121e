"""The saliency page's drawing: its captions (true to what is drawn), the signed view, and the
fragment that draws the tokens explained so far and explains the rest a chunk at a time."""

from __future__ import annotations

import logging
from dataclasses import replace

import streamlit as st

import ecco_core
from ecco_app import progressive, widgets
from ecco_app.components import ticker
from ecco_app.components.saliency import minimal_highlighter
from ecco_core.analysis.attribution import LABELS
from ecco_core.highlight import saliency_bars_html
from ecco_core.results import Saliency

TARGETS = {
    "prob": "Probability of the token (ecco)",
    "logit": "Logit of the token",
    "contrast": "Logit difference vs a foil",
    "contrast_prob": "Probability difference vs a foil",
}
BACKENDS = {"hand-written": "the hand-written backward", "autograd": "PyTorch autograd"}
SIGNED_METHODS = ("grad_x_input", "integrated_gradients")
"""Methods with a sign (the sum over embedding dims); erasure's drops are signed by themselves."""


def token_text(seq: ecco_core.OutputSeq, p: int) -> str:
    return repr(seq.tokens[p]) if 0 <= p < seq.n_tokens else f"position {p}"


def caption(seq: ecco_core.OutputSeq, result: Saliency, position: int, signed: bool) -> str:
    """What the colours mean, true to what is drawn."""
    what = f"**{LABELS[result.method]}**"
    if result.target.startswith("contrast"):
        kind = "logit" if result.target == "contrast" else "probability"
        what += f" · why {token_text(seq, position)} rather than {result.foil!r} (the {kind} difference)"
    if signed:
        what += " · signed values: purple raised the target, orange lowered it"
    elif result.target.startswith("contrast") and result.method != "erasure":
        what += " · values are each token's share of the attribution's size (the row sums to 1)"
    elif result.method == "erasure":
        what += f" · values are the {result.unit}; orange: removing the token raised the target"
    elif result.method == "gradient":
        what += (
            " · values are each token's share of the gradient's size (a norm has no sign; the row sums to 1)"
        )
    elif result.unit.startswith("share"):
        what += " · values are each token's share of the attribution's size (the row sums to 1)"
    else:
        what += f" · values are the {result.unit}"
    if result.backend:
        what += f" · gradients by {BACKENDS.get(result.backend, result.backend)}"
    if result.completeness_error is not None:
        what += completeness(result, position)
    return what


def completeness(result: Saliency, position: int) -> str:
    """Integrated gradients: this token's completeness error against the page's target."""
    errors = result.completeness_error
    worst = float(errors.max())
    at = list(result.positions).index(position) if position in result.positions else 0
    gap = (result.target_values - result.baseline_values)[at]
    row = result.signed[at].sum()
    mine = float(errors[at])
    if mine <= progressive.IG_TARGET:
        verdict = f"✅ within {progressive.IG_TARGET:.0%}"
    else:
        verdict = f"⚠️ above {progressive.IG_TARGET:.0%}: read these values as approximate"
    over = int((errors > progressive.IG_TARGET).sum())
    steps = f"{result.n_steps} steps"
    if result.evaluations is not None:
        steps = f"{int(result.evaluations[at])} of at most {result.n_steps} gradient evaluations"
    return (
        f" · completeness error {100 * mine:.1f}% {verdict}; {over} of {len(errors)} explained "
        f"tokens above it, worst {100 * worst:.1f}% ({steps}; this token's signed "
        f"attributions sum to {row:.4g}; f(x) − f(baseline) = {gap:.4g})"
    )


def drawn(result: Saliency, signed: bool) -> Saliency:
    if not signed or result.signed is None:
        return result
    return replace(result, values=result.signed, unit="signed contribution (sum over embedding dims)")


def explain_progressively(
    seq: ecco_core.OutputSeq,
    job: progressive.Job,
    result: Saliency,
    position: int,
    explainable: list[int],
    picker_key: str,
    shown_as: str,
) -> None:
    """Draw what is computed; then compute the next chunk of the other tokens and draw again.

    Each fragment run draws, computes one chunk and ends with the ticker, which asks the browser
    for the next run (``components.ticker``): the chain ends when nothing is left, on Stop, or when
    the page is left. No timer and no server-side rerun.
    """

    def follow_click() -> None:
        """A click in the highlighter picks that token in the select box."""
        clicked = (st.session_state.get("saliency_view") or {}).get("clicked")
        if clicked in explainable:
            st.session_state[picker_key] = clicked

    def body() -> None:
        current = job.result if job.result is not None else result  # else: the last good result
        if st.session_state.get(picker_key, position) != position:
            st.rerun()  # a click in the highlighter picked another token: the whole page follows
        signed = shown_as == "signed" and current.signed is not None
        st.caption(caption(seq, current, position, signed))
        shown = drawn(current, signed)
        todo = progressive.remaining(job, explainable, position) if job.result is not None else []
        status_line(job, len(explainable), todo)
        minimal, detailed, heatmap = st.tabs(["Minimal", "Detailed", "Heatmap"])
        with minimal:
            minimal_highlighter(shown, position, explainable, key="saliency_view", on_click=follow_click)
        with detailed:
            if position in shown.positions:
                row = shown.row(position)
                st.markdown(
                    saliency_bars_html(shown.tokens, row, position, seq.n_input_tokens, shown.unit),
                    unsafe_allow_html=True,
                )
        with heatmap:
            widgets.chart(shown.figure(), width="stretch", key="saliency_heatmap")
        widgets.download_buttons(shown, f"saliency-{shown.method}", key="saliency", what="saliency")
        computed = False
        if todo and not job.stopped:
            try:
                progressive.add(job, seq, todo[: job.chunk])
                computed = True
            except Exception as error:  # keep what is drawn; say why the rest stopped
                job.stopped = True
                logging.getLogger("ecco_explorer").exception("saliency of the other tokens failed")
                st.error(f"Computing the other tokens stopped ({type(error).__name__}: {error}).")
        ticker.tick("saliency_tick", active=computed)  # a chunk was added: the next run draws it

    st.fragment(body)()


def status_line(job: progressive.Job, total: int, todo: list[int]) -> None:
    """How many tokens are explained, with Stop (or Continue once stopped)."""
    status, button = st.columns([4, 1])
    done = total - len(todo)
    if todo and not job.stopped:
        status.progress(done / total, text=f"Explained {done} of {total} tokens…")
        button.button("Stop", key="saliency_stop", on_click=lambda: setattr(job, "stopped", True))
    elif todo:
        status.caption(f"Stopped: {done} of {total} tokens explained; the rest show no scores.")
        button.button("Continue", key="saliency_continue", on_click=lambda: setattr(job, "stopped", False))
