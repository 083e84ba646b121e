"""Token ids to readable strings: no byte-level artefacts (Ġ, Ċ), special tokens kept as such."""

from __future__ import annotations

import numpy as np


def special_mask(tokenizer, ids: np.ndarray) -> np.ndarray:
    """(pos,) bool: True where the token is a special token (BOS, EOS, chat markers)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return np.array([int(i) in special for i in ids], dtype=bool)


def readable_tokens(tokenizer, ids: np.ndarray) -> list[str]:
    """One display string per token id.

    Byte-level BPE splits some characters (emoji, CJK) over several tokens; a token that does
    not decode on its own is decoded together with its neighbours, the whole character shown on
    the first token of the group and the others shown as empty strings.
    """
    ids = [int(i) for i in ids]
    texts = [tokenizer.decode([i]) for i in ids]
    out = list(texts)
    start = 0
    while start < len(ids):
        if "\ufffd" not in texts[start]:
            start += 1
            continue
        end = start + 1
        while end < len(ids) and end - start < 8 and "\ufffd" in tokenizer.decode(ids[start:end]):
            end += 1
        joined = tokenizer.decode(ids[start:end])
        if "\ufffd" in joined:  # not a split character: keep the raw piece
            start += 1
            continue
        out[start] = joined
        out[start + 1 : end] = [""] * (end - start - 1)
        start = end
    return out
