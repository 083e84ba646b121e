"""Runs in a fresh process: import torch, then time ``import ecco_core`` and loading the default
model from the disk cache (what a second notebook, CLI or app process pays); prints JSON."""

import json
import sys
import time

start = time.perf_counter()
import torch  # noqa: E402

torch_imported = time.perf_counter()
torch.set_num_threads(2)
import ecco_core  # noqa: E402

imported = time.perf_counter()
lm = ecco_core.from_pretrained(device=sys.argv[1] if len(sys.argv) > 1 else "cpu")
loaded = time.perf_counter()
print(
    json.dumps(
        {
            "torch_import_s": torch_imported - start,
            "import_s": imported - torch_imported,
            "load_s": loaded - imported,
            "source": lm.source,
            "model_class": type(lm.model).__name__,
        }
    )
)
