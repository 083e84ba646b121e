"""Token ids to readable strings: no byte-level artefacts (Ġ, Ċ), special tokens kept as such."""

from __future__ import annotations

import re

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
        if "\ufffd" in joined:  # a character cut off (e.g. at the end): show its bytes, e.g. '\\xf0\\x9f'
            out[start] = raw_bytes_text(tokenizer, ids[start]) or texts[start]
            start += 1
            continue
        out[start] = joined
        out[start + 1 : end] = [""] * (end - start - 1)
        start = end
    return out


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the character that stands for each byte -> the byte."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(kept)
    for byte in range(256):
        if byte not in kept:
            kept.append(byte)
            chars.append(256 + len(chars) - 188)  # 188 bytes stand for themselves
    return {chr(c): b for b, c in zip(kept, chars)}


_BYTE_LEVEL = _byte_level_alphabet()


def raw_bytes_text(tokenizer, token_id: int) -> str | None:
    """A token that is part of a UTF-8 character, as its bytes (``' \\xf0\\x9f'``), or None.

    Works for byte-level BPE pieces (GPT-2, Llama 3, SmolLM) and byte-fallback pieces (``<0xF0>``).
    """
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if not isinstance(piece, str) or not piece:
        return None
    match = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
    if match:
        data = bytes([int(match[1], 16)])
    elif all(ch in _BYTE_LEVEL for ch in piece):
        data = bytes(_BYTE_LEVEL[ch] for ch in piece)
    else:
        return None
    return data.decode("utf-8", errors="backslashreplace")


_TIGHT_PUNCTUATION = set(".,!?;:%)]}'\"")


def display_tokens(tokenizer, ids: np.ndarray) -> list[str]:
    """Readable tokens; WordPiece pieces (BERT), which carry no spaces, get the word boundaries back.

    A piece that starts a word gets a leading space (except the first token and closing
    punctuation); a continuation piece loses its '##' prefix, so ``"".join(tokens)`` reads as text.
    """
    tokens = readable_tokens(tokenizer, ids)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if type(getattr(backend, "model", None)).__name__ != "WordPiece":
        return tokens
    prefix = getattr(backend.model, "continuing_subword_prefix", None) or "##"
    spaced = []
    for i, token in enumerate(tokens):
        if token.startswith(prefix) and len(token) > len(prefix):
            spaced.append(token[len(prefix) :])
        elif i == 0 or not token or set(token) <= _TIGHT_PUNCTUATION:
            spaced.append(token)
        else:
            spaced.append(" " + token)
    return spaced


def decode_each(tokenizer, ids: np.ndarray) -> np.ndarray:
    """Readable text of every id in ``ids`` (any shape), decoding each distinct id once."""
    unique, inverse = np.unique(ids, return_inverse=True)
    texts = tokenizer.batch_decode([[int(i)] for i in unique])
    return np.asarray(texts, dtype=object)[inverse].reshape(ids.shape).astype(str)
