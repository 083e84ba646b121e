"""Model resolution without a network: fail fast with NoNetworkError, never retry for a minute."""

from __future__ import annotations

import pytest

from ecco_core.errors import NoNetworkError
from ecco_core.model import weights as models


def test_hub_is_unreachable_at_once_when_offline_is_set(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.hub_reachable() is False


def test_unreachable_hub_reads_only_the_local_cache(monkeypatch):
    """The hub probe says no network: transformers is asked for local files only, and the
    missing model is reported as a network problem, not as an unknown model."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda: False)
    seen = {}
    from transformers import AutoConfig

    original = AutoConfig.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        return original(path, **kwargs)

    monkeypatch.setattr(AutoConfig, "from_pretrained", spy)
    with pytest.raises(NoNetworkError, match="not reachable"):
        models.load_weights("someone/some-model-that-is-not-cached")
    assert seen.get("local_files_only") is True
