"""A ticker that asks for the next fragment run from the browser, once per draw.

Long computations run a step per fragment run and draw after each step. The next run used to come
from a fragment timer (``st.fragment(run_every=...)``) and from ``st.rerun(scope="fragment")``
chains on the server. That app went blank in Chromium now and then, with the frontend error
"Bad delta path index 2 (should be between [0, 1])": a rerun that the server started itself, or
that a timer started, raced a click (Stop, a page switch) and drew into a tree the browser no
longer had. Here the browser asks for the next run, like a click inside the fragment. It asks only
while the ticker is on the page and only once per draw, so a page switch, a reload or Stop ends
the chain, and there is no timer or server-side rerun left to race.
"""

from __future__ import annotations

import streamlit as st

_JS = """
export default function ({ data, parentElement, setTriggerValue }) {
  const host = parentElement;
  clearTimeout(host.__eccoTimer);
  if (data.active && host.__eccoAsked !== data.n) {
    host.__eccoTimer = setTimeout(() => {
      host.__eccoAsked = data.n;
      setTriggerValue("tick", data.n);
    }, data.delay_ms);
  }
  return () => clearTimeout(host.__eccoTimer);
}
"""
_CSS = ":host, span { display: none; }"
_component = st.components.v2.component("ecco_ticker", html="<span></span>", css=_CSS, js=_JS)
DELAY_MS = 30
"""How long the browser waits after a draw before it asks for the next run (paint first)."""
COUNTER = "ticker_draws"  # session key: a number per draw, so each draw asks once


def tick(key: str, active: bool) -> None:
    """Draw the ticker; while ``active``, the browser reruns the enclosing fragment after this draw.

    Call it last in a fragment's body, with ``active`` true when the run changed what the next run
    would draw (a step was computed) or work remains. Under AppTest no browser asks, so a page that
    must finish there computes to the end in its full run.
    """
    n = st.session_state.get(COUNTER, 0) + 1
    st.session_state[COUNTER] = n
    _component(
        data={"n": n, "active": bool(active), "delay_ms": DELAY_MS},
        key=key,
        on_tick_change=lambda: None,
    )
