"""Notebook display with no network: every result as self-contained HTML with inline JavaScript.

Jupyter (JupyterLab, classic, VS Code, Colab) shows an object through ``_repr_mimebundle_`` /
``_repr_html_``; results get theirs from ``results.base`` and the HTML builders registered here:

- Plotly figures: plotly.js is embedded in the first figure a kernel shows (once per notebook,
  never from a CDN); later figures draw with the ``window.Plotly`` it defines. Colab keeps each
  output in its own frame, so there every figure carries plotly.js.
- Saliency: the app's hover-driven highlighter (``explorables/highlighter.js``, the one painter)
  inlined in a ``<script>``; 'detailed' adds ecco's value bars of the hovered token.
- Factorizations: the factor explorer (the text painted per factor by ``highlight``, switched by
  sparkline chips).

A static painting stands in until the script runs, so a viewer that runs no JavaScript (an
untrusted notebook, GitHub's renderer) still shows the text tinted.
"""

from __future__ import annotations

import html
import json
import sys
import threading
import uuid
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.offline

from .figures.neurons import factor_color, factor_names
from .highlight import (
    EXPLORABLES,
    HIGHLIGHTER_CSS,
    HIGHLIGHTER_JS,
    factor_painting,
    highlight_html,
    highlighter_data,
    output_text_html,
    saliency_bars_html,
)
from .results import Drawable, Factorization, Saliency, register_html

FACTORS_JS = (EXPLORABLES / "factors.js").read_text(encoding="utf-8")
"""``function eccoFactors(root)``: switches the factor explorer's paintings."""

_EXPLORER_CSS = """
.ecco-nb { font-family: system-ui, sans-serif; color: #222; margin: 0.3rem 0; }
.ecco-nb .ecco-chip { display: inline-flex; align-items: center; gap: 4px; margin: 2px 4px 2px 0;
  padding: 1px 6px 1px 2px; border: 1px solid #ddd; border-radius: 4px; cursor: pointer;
  font-size: 0.8rem; background: white; }
.ecco-nb .ecco-chip.active { border-color: #333; box-shadow: 0 0 0 1px #333; }
.ecco-nb .ecco-caption { font-size: 0.8rem; color: #666; margin-top: 0.3rem; }
"""


class _PlotlyLoader:
    """Whether this kernel has shown plotly.js yet: the one piece of module state, so that a
    notebook carries the 4.8 MB library once."""

    def __init__(self) -> None:
        self.sent = False
        self.lock = threading.Lock()

    def script(self) -> str:
        """plotly.js in a ``<script>`` the first time (every time on Colab), else ''."""
        with self.lock:
            if self.sent and "google.colab" not in sys.modules:
                return ""
            self.sent = True
        library = plotly.offline.get_plotlyjs().replace("</script", "<\\/script")
        # module/exports/define shadowed: the bundle then defines window.Plotly even where a page
        # has CommonJS or RequireJS (classic Jupyter) around.
        return (
            "<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
            '<script type="text/javascript">(function(){var module, exports, define;\n'
            f"{library}\n}})();</script>"
        )


plotly_loader = _PlotlyLoader()


def reset_plotly() -> None:
    """Embed plotly.js again with the next figure (after clearing the output that carried it)."""
    plotly_loader.sent = False


def _json_for_script(value: object) -> str:
    """JSON that is safe inside ``<script>``: every '<' escaped."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def _new_id() -> str:
    return f"ecco-{uuid.uuid4().hex[:12]}"


def figure_html(fig: go.Figure) -> str:
    """A Plotly figure as HTML that draws with no network (plotly.js once per kernel)."""
    div_id = _new_id()
    height = fig.layout.height or 450
    spec = _json_for_script(json.loads(fig.to_json()))
    return (
        f"{plotly_loader.script()}"
        f'<div id="{div_id}" class="ecco-plot" style="width:100%;height:{int(height)}px"></div>'
        '<script type="text/javascript">(function(){'
        f'var div = document.getElementById("{div_id}"); var fig = {spec};'
        "if (window.Plotly) { window.Plotly.newPlot(div, fig.data, fig.layout, "
        "{responsive: true, displaylogo: false}); }"
        ' else { div.textContent = "plotly.js is not loaded in this page: run '
        'ecco_core.notebook.reset_plotly() and show the figure again."; }'
        "})();</script>"
    )


class FigureView:
    """A Plotly figure that shows itself in a notebook with no network (``figure``: the go.Figure)."""

    def __init__(self, figure: go.Figure) -> None:
        self.figure = figure

    def _repr_html_(self) -> str:
        return figure_html(self.figure)

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        return {
            "text/html": self._repr_html_(),
            "text/plain": f"<FigureView of {len(self.figure.data)} traces>",
        }


def default_html(result: Drawable) -> str:
    """A result's figure, drawn offline."""
    return figure_html(result.figure())


def _script(js: str, call: str) -> str:
    """One inline script: the painter's code and its call, scoped to this output."""
    return f'<script type="text/javascript">(function(){{\n{js}\n{call}\n}})();</script>'


def saliency_html(
    result: Saliency,
    style: str | None = None,
    selected: int | None = None,
    explainable: Sequence[int] | None = None,
) -> str:
    """ecco's saliency explorable: hover a generated token to tint the tokens before it.

    Args:
        result: the saliency rows to show.
        style: 'minimal' (the tinted text) or 'detailed' (also each earlier token's value and bar);
            default ``result.style``.
        selected: the position painted first (default: the first explained one).
        explainable: positions that react to hover (default: every explained one).
    """
    style = style or result.style
    positions = [int(p) for p in result.positions]
    if not positions:
        static = highlight_html(result.tokens, None, result.n_input_tokens)
        return f'<div class="ecco-nb">{static}<div class="ecco-caption">No token is explained.</div></div>'
    selected = positions[0] if selected is None else int(selected)
    explainable = positions if explainable is None else [int(p) for p in explainable]
    root = _new_id()
    row = result.row(selected) if selected in positions else np.zeros(len(result.tokens))
    static = highlight_html(result.tokens, row, result.n_input_tokens)  # until the script runs
    details = ""
    if style == "detailed":
        blocks = [
            f'<div class="ecco-detail" data-pos="{p}" style="display:{"" if p == selected else "none"}">'
            f"{saliency_bars_html(result.tokens, result.row(p), p, result.n_input_tokens, result.unit)}</div>"
            for p in positions
        ]
        details = f'<div class="ecco-details">{"".join(blocks)}</div>'
    data = highlighter_data(result, selected, explainable)
    on_paint = (  # 'detailed': show the hovered token's bars
        "onPaint: function (pos) { root.querySelectorAll('.ecco-detail').forEach(function (d) {"
        " d.style.display = Number(d.dataset.pos) === pos ? '' : 'none'; }); },"
        if style == "detailed"
        else ""
    )
    call = (
        f'var root = document.getElementById("{root}");'
        "eccoHighlighter({data: JSON.parse(root.querySelector('.ecco-data').textContent),"
        f" parentElement: root, setTriggerValue: function () {{}}, {on_paint}}});"
    )
    caption = f"{result.method} · {result.unit} · hover a generated token"
    return (
        f'<div id="{root}" class="ecco-nb ecco-saliency" data-style="{style}">'
        f"<style>{HIGHLIGHTER_CSS}{_EXPLORER_CSS}</style>"
        f'<div class="ecco-sal">{static}</div><div class="ecco-sal-info"></div>{details}'
        f'<div class="ecco-caption">{html.escape(caption)}</div>'
        f'<script type="application/json" class="ecco-data">{_json_for_script(data)}</script>'
        f"{_script(HIGHLIGHTER_JS, call)}</div>"
    )


def _sparkline(values: np.ndarray, color: str, width: int = 90, height: int = 18) -> str:
    """An inline SVG line of ``values`` (pos,)."""
    values = np.asarray(values, dtype=float)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    span = high - low or 1.0
    x = np.linspace(0, width, len(values)) if len(values) > 1 else np.array([0.0])
    y = height - 1 - (values - low) / span * (height - 2)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/></svg>'
    )


def factor_explorer_html(result: Factorization) -> str:
    """ecco's factor explorer: the text tinted by its strongest factor; hover a factor's sparkline
    chip to paint the text by that factor alone, click to pin it."""
    names = factor_names(result.n_factors, result.method)
    colors = [factor_color(f) for f in range(result.n_factors)]
    full = result.full_components()  # (factor, pos)
    paintings = [("all", factor_painting(result, None, colors, names))]
    paintings += [(str(f), factor_painting(result, f, colors, names)) for f in range(result.n_factors)]
    painted = "".join(
        f'<div class="ecco-painting" data-key="{key}" style="display:{"" if key == "all" else "none"}">'
        f"{body}</div>"
        for key, body in paintings
    )
    chips = ['<span class="ecco-chip active" data-key="all">strongest factor</span>']
    chips += [
        f'<span class="ecco-chip" data-key="{f}" title="{html.escape(names[f])}">'
        f"{_sparkline(full[f], colors[f])}"
        f'<span style="color:{colors[f]};font-weight:600">{html.escape(names[f])}</span></span>'
        for f in range(result.n_factors)
    ]
    root = _new_id()
    caption = f"{result.method.upper()} of layers {list(result.layers)}: {result.clipping_note()}"
    return (
        f'<div id="{root}" class="ecco-nb ecco-factors"><style>{_EXPLORER_CSS}</style>'
        f'{painted}<div class="ecco-chips">{"".join(chips)}</div>'
        f'<div class="ecco-caption">{html.escape(caption)}</div>'
        f"{_script(FACTORS_JS, f'eccoFactors(document.getElementById({json.dumps(root)}));')}</div>"
    )


def run_html(tokens: Sequence[str], n_input_tokens: int, special: np.ndarray | None = None) -> str:
    """A run's text: prompt plain, generated tokens tinted (the app's output view)."""
    return f'<div class="ecco-nb">{output_text_html(tokens, n_input_tokens, special)}</div>'


register_html(Drawable, default_html)
register_html(Saliency, saliency_html)
register_html(Factorization, factor_explorer_html)
