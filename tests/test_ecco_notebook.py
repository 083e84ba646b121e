"""An ecco notebook, with only its import line changed, executed in a real Jupyter kernel (nbclient):
every view displays as self-contained HTML (inline scripts, no script loaded from a URL), the
explorables carry the one highlighter's code, and plotly.js is embedded once per notebook."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.tiny import char_tokenizer, tiny_model

REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)

# ecco's tutorials (Primary Attributions, Evolution of Selected Token, Output Token Scores,
# Comparing Token Rankings, Neuron Factors, CCA Similarity), as written against ecco.
ECCO_CELLS = [
    "import ecco_core as ecco\nlm = ecco.from_pretrained(MODEL, activations=True, verbose=False)",
    "output = lm.generate(TEXT, generate=4, do_sample=False, attribution=ATTRIBUTION)",
    "output.primary_attributions(attr_method=METHOD)",
    'output.primary_attributions(attr_method=METHOD, style="detailed")',
    "output.saliency()",
    "output.rankings()",
    "output.layer_predictions(position=POSITION, layer=LAST_LAYER, topk=5)",
    "output.rankings_watch(watch=WATCH, position=POSITION)",
    "nmf = output.run_nmf(n_components=3, from_layer=0, to_layer=2)\nnmf.explore()",
    "nmf.plot()",
    "output",
    "data = output.rankings(printJson=True)\ndata['rankings'].shape",
    "from ecco_core import analysis\nacts = output.activations['decoder'][0]\nanalysis.cka(acts[0], acts[1])",
    'inputs = lm.tokenizer([TEXT], return_tensors="pt")\nlm(inputs).tokens[0][:3]',
]
DISPLAYED = {2: "eccoHighlighter", 3: "eccoHighlighter", 4: "eccoHighlighter", 8: "eccoFactors"}
FIGURES = (5, 6, 7, 9)


NETWORK_OFF = """import socket
_connect = socket.socket.connect
def _local_only(self, address, *args):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(address, tuple) and host not in ("127.0.0.1", "localhost", "::1"):
        raise OSError(f"the network is off in this notebook ({host})")
    return _connect(self, address, *args)
socket.socket.connect = _local_only
"""


def _run(setup: str, tmp_path) -> list[list[dict]]:
    """Execute the ecco cells after ``setup`` with Python's network cut; each ecco cell's outputs."""
    nb = nbformat.v4.new_notebook()
    cells = [NETWORK_OFF + setup, *ECCO_CELLS]
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    os.environ.update({"HF_HUB_OFFLINE": "1", "PYTHONPATH": path})  # the kernel inherits them
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    return [cell.outputs for cell in nb.cells[1:]]


def _html(outputs: list[dict]) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in outputs)


def _check(outputs: list[list[dict]]) -> None:
    errors = [o for cell in outputs for o in cell if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")
    for index, marker in DISPLAYED.items():
        html = _html(outputs[index])
        assert marker in html and "<script" in html, f"cell {index} shows no explorable"
    for index in FIGURES:
        assert "Plotly.newPlot" in _html(outputs[index]), f"cell {index} shows no figure"
    assert "ecco-text" in _html(outputs[10])  # the OutputSeq shows its text
    pages = "".join(_html(cell) for cell in outputs)
    assert not REMOTE_SCRIPT.search(pages), "a script is loaded from the network"
    assert pages.count("plotly.js v") == 1  # the library once, in the first figure
    assert "plotly.js v" in _html(outputs[FIGURES[0]])
    plain = outputs[11][0]["data"]["text/plain"]
    assert plain.startswith("(") and plain.count(",") == 1  # (layers, positions)
    assert 0.0 <= float(outputs[12][0]["data"]["text/plain"]) <= 1.0


def test_ecco_notebook_in_a_kernel_tiny(tmp_path):
    folder = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    setup = (
        f"MODEL = {str(folder)!r}; TEXT = 'hello wor'; ATTRIBUTION = ['ig', 'grad_x_input']; METHOD = 'ig'\n"
        "POSITION = 10; LAST_LAYER = 2; WATCH = [5, 9]"
    )
    outputs = _run(setup, tmp_path)
    _check(outputs)
    assert outputs[13][0]["data"]["text/plain"] == "['h', 'e', 'l']"


@pytest.mark.embedded
def test_ecco_notebook_in_a_kernel_embedded(tmp_path):
    setup = (
        "MODEL = None\n"
        "TEXT = 'The countries of the European Union are:\\n1. Austria\\n2. Belgium\\n3. Bulgaria\\n4.'\n"
        "ATTRIBUTION = ['grad_x_input']; METHOD = 'grad_x_input'; POSITION = 23; LAST_LAYER = 29\n"
        "WATCH = [' Croatia', ' Cyprus']"
    )
    outputs = _run(setup, tmp_path)
    _check(outputs)
    assert outputs[13][0]["data"]["text/plain"] == "['The', 'Ġcountries', 'Ġof']"
