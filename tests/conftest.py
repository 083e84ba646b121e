"""Shared fixtures: tiny random models (no download) and the real embedded model."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: it reads this once

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.tiny import FAMILIES, tiny_lm  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

EU_PROMPT = "The countries of the European Union are:\n1. Austria\n2. Belgium\n3. Bulgaria\n4."


def pytest_collection_finish(session):
    """Start the cold-cache conversion in the background when its test will run (tests/cold_cache.py)."""
    from tests import cold_cache

    if not session.config.option.collectonly and any(i.name == cold_cache.TEST_NAME for i in session.items):
        cold_cache.start_early()


def pytest_sessionfinish(session):
    from tests import cold_cache

    cold_cache.close_early()


@pytest.fixture(scope="session")
def tiny():
    """A tiny random Llama-style LM (3 layers, d_model 32, character tokenizer)."""
    return tiny_lm("llama")


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def tiny_family(request):
    """One tiny random LM per supported family."""
    return tiny_lm(request.param)


@pytest.fixture(scope="session")
def smol():
    """The real embedded SmolLM2-135M-Instruct (loads from the disk cache after the first run)."""
    import ecco_core

    return ecco_core.from_pretrained(device="cpu")


@pytest.fixture(scope="session")
def eu_seq(smol):
    """20 greedy tokens after the EU prompt on the embedded model, with attention."""
    return smol.generate(EU_PROMPT, generate=20, attention=True)
