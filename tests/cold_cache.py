"""The embedded GGUF converted into an empty disk cache by a fresh process, then read by another.

The conversion takes ~20 s of mostly single-core work. ``conftest.py`` starts both processes (one
after the other) when the session collects the cold-cache test, at the lowest CPU priority, so
they run on the time the rest of the suite leaves idle (one core during most AppTests, both while
the browser tests wait); the test then checks their output. Run alone, the test starts them
itself. The session removes the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

TEST_NAME = "test_a_cold_cache_converts_once_and_every_process_gets_the_same_model"
CODE = (
    "import ecco_core; lm = ecco_core.from_pretrained(device='cpu'); "
    "print(type(lm.model).__name__, lm.source, lm.generate('2, 4, 6,', generate=3).output_text.strip())"
)


class ColdRun:
    """``CODE`` in two fresh processes, one after the other, on a new empty ``ECCO_CACHE_DIR``:
    the first converts the GGUF into the cache, the second reads what the first wrote."""

    def __init__(self, niceness: int = 0, n_processes: int = 2) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ecco-cold-cache-"))
        self.cache = self.folder / "cache"
        self.env = {**os.environ, "ECCO_CACHE_DIR": str(self.cache)}
        self._command = [
            sys.executable,
            "-c",
            (f"import os; os.nice({niceness}); " if niceness else "") + CODE,
        ]
        self._processes: list[subprocess.Popen] = []
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(n_processes,), daemon=True)
        self._thread.start()

    def _run(self, n_processes: int) -> None:
        for i in range(n_processes):
            # Files, not pipes: nobody reads a pipe while the suite runs, and a full one would stall it.
            files = self.folder / f"stdout{i}", self.folder / f"stderr{i}"
            with open(files[0], "w") as out, open(files[1], "w") as err, self._lock:
                if self._closed:
                    return
                process = subprocess.Popen(self._command, stdout=out, stderr=err, env=self.env)
                self._processes.append(process)
            if process.wait() != 0:
                return  # the next one would not find a complete cache

    def results(self, timeout: float = 1200) -> list[tuple[int, str, str]]:
        """(return code, stdout, stderr) of each process, once the last one has exited."""
        self._thread.join(timeout=timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the cold-cache processes did not finish within {timeout:.0f} s")
        return [
            (p.returncode, (self.folder / f"stdout{i}").read_text(), (self.folder / f"stderr{i}").read_text())
            for i, p in enumerate(self._processes)
        ]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            running = [p for p in self._processes if p.poll() is None]
        for process in running:
            process.kill()
            process.wait(timeout=30)
        self._thread.join(timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


_early: ColdRun | None = None


def start_early() -> None:
    """Start the conversion now, niced to the lowest priority (called once per session)."""
    global _early
    if _early is None:
        _early = ColdRun(niceness=19)


def take() -> ColdRun:
    """The early run if the session started one (handed over once), else a new one started now."""
    global _early
    run, _early = _early, None
    return run if run is not None else ColdRun()


def close_early() -> None:
    """End an early run nobody took (the test failed to start, or the session stopped first)."""
    global _early
    if _early is not None:
        _early.close()
        _early = None
