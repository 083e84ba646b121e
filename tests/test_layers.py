"""The house's floor plan: results draw without torch, no hidden imports across layers, short modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "ecco_core"


def test_a_saved_result_draws_without_torch(tmp_path):
    """Results and figures import neither torch nor transformers: a pickled result draws anywhere."""
    code = (
        "import pickle, sys\n"
        "import numpy as np\n"
        "from ecco_core.results import Rankings\n"
        "a = np.array\n"
        "r = Rankings('normed', np.arange(2), a([1]), a([5]), a(['a']), a(['b']), a([[3], [1]]),\n"
        "             a([[0.1], [0.9]], np.float32), a([[5], [5]]), a([['a'], ['a']]), 1)\n"
        "fig = pickle.loads(pickle.dumps(r)).figure()\n"
        "assert type(fig).__name__ == 'Figure'\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def _local_engine_imports(path: Path, root: Path = ROOT) -> list[str]:
    """``import``s of ecco_core modules inside functions (a layer breach hides there)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and (
                inner.level > 0 or (inner.module or "").startswith("ecco")
            ):
                found.append(f"{path.relative_to(root)}:{inner.lineno}")
    return found


def test_no_function_local_imports_inside_the_engine():
    hidden = [hit for path in sorted(ENGINE.rglob("*.py")) for hit in _local_engine_imports(path)]
    assert hidden == []


def test_the_checker_finds_a_local_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n\n\ndef f():\n    from .lens import rankings\n    import json\n    return rankings\n"
    )
    assert _local_engine_imports(sample, tmp_path) == ["sample.py:5"]


def test_every_engine_module_is_under_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in ENGINE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) >= 400
    }
    assert long == {}
