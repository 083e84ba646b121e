"""ecco's MinimalHighlighter as a Streamlit component: inline HTML/JS, no CDN, no build step.

Token text travels as JSON and is set with ``textContent`` (never ``innerHTML``), so a prompt
such as ``<img src=x onerror=alert(1)>`` shows as text. Hovering a generated token tints every
earlier token by its score; clicking pins it and reports the position back to Python. For the
attention methods the colour scale leaves out the first token, where attention sinks pile up.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st

from ecco_core.attribution import Saliency
from ecco_core.highlight import visible

_CSS = """
.ecco-sal { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.95rem;
  line-height: 2.0; white-space: pre-wrap; color: #222; padding: 0.4rem 0; }
.ecco-sal .tok { border-radius: 3px; padding: 1px 0; transition: background-color 80ms; }
.ecco-sal .out { cursor: pointer; border-bottom: 2px solid #c9b8dc; }
.ecco-sal .out.ready:hover, .ecco-sal .out.pinned { outline: 2px solid #c9a400; background: #fff3b0; }
.ecco-sal .marker { color: #8a6db1; font-size: 0.8rem; padding: 0 2px; }
.ecco-sal-info { font-family: system-ui, sans-serif; font-size: 0.85rem; color: #555; }
"""

_JS = """
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".ecco-sal");
  const info = parentElement.querySelector(".ecco-sal-info");
  root.replaceChildren();
  const rows = new Map(data.positions.map((p, i) => [p, data.values[i]]));
  const spans = [];
  let pinned = data.selected;
  function paint(pos) {
    const row = rows.get(pos);
    let top = 0;
    if (row) for (let j = data.scale_from; j < pos; j++) top = Math.max(top, Math.abs(row[j]));
    spans.forEach((span, j) => {
      span.classList.toggle("pinned", j === pinned);
      let color = "transparent";
      if (row && j < pos && top > 0 && row[j] !== 0) {
        const share = Math.min(Math.abs(row[j]) / top, 1);
        const alpha = (0.08 + 0.82 * share).toFixed(3);
        color = row[j] < 0 ? `rgba(228, 87, 46, ${alpha})` : `rgba(106, 61, 154, ${alpha})`;
      }
      if (j !== pos) span.style.backgroundColor = color;
      span.title = row && j < pos ? `${j}: ${row[j].toPrecision(3)} ${data.unit}` : `${j}`;
    });
    const token = data.shown[pos] === undefined ? "" : data.shown[pos].replace(/\\n/g, "");
    info.textContent = row
      ? `Explaining ${JSON.stringify(token)} (position ${pos}): darker = larger ${data.unit}.`
      : `No scores for position ${pos} yet: click it to compute them.`;
  }
  data.shown.forEach((text, pos) => {
    if (pos === data.n_input_tokens) {
      const marker = document.createElement("span");
      marker.className = "marker";
      marker.textContent = "▶";
      marker.title = "generated text starts here";
      root.appendChild(marker);
    }
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = text === "" ? "\\u200b" : text;
    if (data.explainable.includes(pos)) {
      span.classList.add("out");
      if (rows.get(pos)) span.classList.add("ready");
      span.addEventListener("mouseenter", () => paint(pos));
      span.addEventListener("mouseleave", () => paint(pinned));
      span.addEventListener("click", () => {
        pinned = pos;
        paint(pos);
        setTriggerValue("clicked", pos);
      });
    }
    spans.push(span);
    root.appendChild(span);
  });
  paint(pinned);
}
"""

_HTML = '<div class="ecco-sal"></div><div class="ecco-sal-info"></div>'

_component = st.components.v2.component("ecco_saliency_highlighter", html=_HTML, css=_CSS, js=_JS)


def highlighter_data(result: Saliency, selected: int, explainable: list[int]) -> dict:
    """The JSON the component draws: display tokens, explained rows, the pinned position."""
    values = np.nan_to_num(result.values.astype(float))
    return {
        "shown": [visible(tok) for tok in result.tokens],
        "n_input_tokens": int(result.n_input_tokens),
        "positions": [int(p) for p in result.positions],
        "values": [[round(float(v), 6) for v in row[: int(p)]] for row, p in zip(values, result.positions)],
        "explainable": [int(p) for p in explainable],
        "selected": int(selected),
        "unit": result.unit.split(" (")[0],
        # Attention piles onto the first token (an attention sink): scale colours without it.
        "scale_from": 1 if result.method.startswith("attention") else 0,
    }


def minimal_highlighter(
    result: Saliency,
    selected: int,
    explainable: list[int],
    key: str,
    on_click: Callable[[], None] | None = None,
):
    """Mount the highlighter; ``on_click`` runs when a generated token is clicked.

    Returns the component's result; ``.clicked`` is the clicked position (or None).
    """
    return _component(
        data=highlighter_data(result, selected, explainable),
        key=key,
        on_clicked_change=on_click or (lambda: None),
    )
