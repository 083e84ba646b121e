"""Charts that read on a projector at 1024 x 768 (issue 15): cell text only where it fits, thinned
tick labels, a range slider for long runs. Widths are the design's (``figures.base.PLOT_WIDTH``)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ecco_core.analysis import attention, neurons
from ecco_core.figures import base
from ecco_core.figures import neurons as figs


def test_cell_text_is_cut_to_the_cell_and_blank_where_nothing_fits():
    labels = [["Croatia", "Cyprus", "ab"]]
    # 360 px / 10 cells - 4 = 32 px; at 11 px a character is 6.82 px: 4 characters fit
    assert base.fitted_text(labels, 10) == [["Cro…", "Cyp…", "ab"]]
    # 360 / 6 - 4 = 56 px: 8 characters, every label whole
    assert base.fitted_text(labels, 6) == labels
    # 360 / 14 - 4 = 21.7 px: 3 characters
    assert base.fitted_text(labels, 14) == [["Cr…", "Cy…", "ab"]]
    # 360 / 15 - 4 = 20 px: two characters, so no text at all (the hover keeps it)
    assert base.fitted_text(labels, 15) == [["", "", ""]]


def test_a_number_that_does_not_fit_is_left_out_not_cut():
    ranks = [["5.5k", "133", "21", "49k", "0.25", "12%", "1e-05"]]
    # 14 cells: 3 characters fit; "5.5k" cut to "5.…" or "1e-05" to "1e…" would read as other numbers
    assert base.fitted_text(ranks, 14) == [["", "133", "21", "49k", "", "12%", ""]]
    assert base.fitted_text([["Poland", "x9"]], 14) == [["Po…", "x9"]]  # words are still cut


def test_tick_labels_are_thinned_so_they_never_crowd():
    for n in (5, 24, 42, 60, 340):
        ticks = base.thinned_ticks([f"{i}: tok" for i in range(n)])
        step = ticks["tickvals"][1] - ticks["tickvals"][0] if len(ticks["tickvals"]) > 1 else 1
        shown = min(n, base.WINDOW)  # columns on screen at once
        assert -(-shown // step) * base.TICK_PX <= base.PLOT_WIDTH, n
        assert ticks["ticktext"][0] == "0: tok"
    assert base.thinned_ticks([str(i) for i in range(42)])["tickvals"][:3] == [0, 2, 4]  # 360 // 16 = 22
    assert base.thinned_ticks([str(i) for i in range(60)])["tickvals"][:3] == [0, 3, 6]  # ceil(60 / 22)


def test_long_rankings_scroll_and_short_ones_do_not(tiny):
    seq = tiny.generate("The list: 1. ab 2. cd 3. ef 4. gh 5. ij 6. kl 7. mn 8. op 9. qr 10. st", generate=4)
    ranked = seq.rankings(include_prompt=True)
    n_pos = ranked.ranks.shape[1]
    assert n_pos > base.WINDOW
    fig = ranked.figure()
    assert fig.layout.xaxis.rangeslider.visible
    assert tuple(fig.layout.xaxis.range) == (n_pos - base.WINDOW - 0.5, n_pos - 0.5)
    assert all(t == "" for row in fig.data[0].text for t in row)  # 60 cells across: no room for text
    assert "customdata[3]" in fig.data[0].hovertemplate  # the rank still shows on hover
    short = tiny.generate("The list: 1.", generate=4).rankings()
    assert not short.figure().layout.xaxis.rangeslider.visible
    assert np.array(short.figure().data[0].text).shape == short.ranks.shape


def test_presenter_mode_enlarges_every_font_and_cell_text_still_fits():
    labels = [["Croatia", "Cyprus", "ab"] * 3]  # 9 cells: 36 px, 5 characters fit at 11 px
    fig = base.base_layout(go.Figure(go.Heatmap(z=[[0.1] * 9], text=base.fitted_text(labels, 9))), "t")
    fig.update_traces(texttemplate="%{text}", textfont={"size": 11})
    fig.update_xaxes(tickfont={"size": 11}, title={"text": "x", "font": {"size": 10}})
    fig.add_annotation(text="note", font={"size": 12})
    base.enlarged(fig, 1.3)
    assert fig.layout.font.size == 16.9  # 13 * 1.3: colour bars inherit it
    assert fig.layout.xaxis.tickfont.size == 14.3 and fig.layout.xaxis.title.font.size == 13.0
    # where the figure sets no size, the Streamlit theme's would win: each is set explicitly
    assert fig.layout.yaxis.tickfont.size == 15.6 and fig.layout.yaxis.title.font.size == 18.2  # 12, 14
    assert fig.layout.title.font.size == 20.8 and fig.layout.hoverlabel.font.size == 16.9  # 16, 13
    assert fig.layout.annotations[0].font.size == 15.6
    assert fig.data[0].textfont.size == 14.3
    # 36 px a cell / (0.62 * 14.3 px a character) = 4.06: 4 characters now, the last an ellipsis
    assert list(fig.data[0].text[0][:3]) == ["Cro…", "Cyp…", "ab"]
    for n in (24, 42, 60, 340):  # thinned tick labels are thinned again for the larger type
        wide = go.Figure(go.Heatmap(z=[[0.0] * n]))
        base.position_axis(wide, [f"{i}: tok" for i in range(n)])
        base.enlarged(wide, 1.3)
        axis = wide.layout.xaxis
        low, high = sorted(axis.range) if axis.range else (0, n - 1)
        visible = sum(low <= v <= high for v in axis.tickvals)
        assert visible * base.TICK_PX * 1.3 * base.PRESENTER_ROOM <= base.PLOT_WIDTH, n
        assert len(axis.ticktext) == len(axis.tickvals) and axis.ticktext[0] == "0: tok"
    grid = go.Figure(go.Heatmap(z=[[0.0] * 8]))
    grid.update_xaxes(tickvals=np.arange(8) * 3.0, ticktext=[f"head {h}" for h in range(8)])  # numpy
    assert len(base.enlarged(grid).layout.xaxis.tickvals) == 8  # not a position axis: left as it is
    lines = base.enlarged(make_subplots(rows=2, cols=1).add_scatter(y=[1], row=2, col=1), 1.5)
    assert lines.layout.font.size == 18.0 and lines.layout.xaxis2.tickfont.size == 18.0  # 12 * 1.5


def _window_reads(axis, n: int) -> None:
    """A long position axis opens on its last WINDOW positions with labels that cannot crowd."""
    assert axis.rangeslider.visible and tuple(axis.range) == (n - base.WINDOW - 0.5, n - 0.5)
    step = axis.tickvals[1] - axis.tickvals[0]
    assert -(-base.WINDOW // step) * base.TICK_PX <= base.PLOT_WIDTH and axis.tickangle == -90


def test_every_position_axis_of_a_long_run_has_a_readable_window(tiny):
    seq = tiny.generate(
        "The list: 1. ab 2. cd 3. ef 4. gh 5. ij 6. kl 7. mn 8. op 9. qr 10. st", generate=4, attention=True
    )
    n = seq.n_tokens
    assert n > base.WINDOW
    factors = neurons.run_nmf(seq, n_components=3)  # all positions
    heat = figs.factor_heatmap(factors)
    _window_reads(heat.layout.xaxis, n)
    assert heat.data[0].customdata[0][5] == f"5: {seq.tokens[5]}"  # the hover names the token
    lines = figs.factor_sparklines(factors)
    bottom = lines.layout[f"xaxis{factors.n_factors}"]
    _window_reads(bottom, n)
    assert not lines.layout.xaxis.rangeslider.visible  # one slider, under the last line
    assert all(tuple(lines.layout[f"xaxis{i or ''}"].range) == tuple(bottom.range) for i in range(3))
    trace = figs.neuron_trace_figure(neurons.neuron_activations(seq, layer=0, neuron=0))
    _window_reads(trace.layout.xaxis, n)
    amap = attention.attention(seq, method="mean", layer=1, head=0)
    fig = amap.figure()
    _window_reads(fig.layout.xaxis, n)  # keys
    assert tuple(fig.layout.yaxis.range) == (n - 0.5, n - base.WINDOW - 0.5)  # the last queries, first on top
    low, high = sorted(fig.layout.yaxis.range)
    on_screen = [v for v in fig.layout.yaxis.tickvals if low <= v <= high]  # the window's rows
    assert fig.layout.yaxis.tickangle == 0 and len(on_screen) <= base.PLOT_WIDTH // base.TICK_PX
    short = tiny.generate("The list: 1.", generate=4, attention=True)
    small = attention.attention(short, method="mean", layer=1, head=0).figure()
    assert not small.layout.xaxis.rangeslider.visible and small.layout.yaxis.autorange == "reversed"
