"""Every check of the public API's arguments in one place: positions, layers, tokens, settings.

Each raises a subclass of ``EccoError`` whose message names the argument, what was given and
what is allowed. ``values`` checks single values by type and range, ``calls`` the model side's
arguments (``from_pretrained``, ``generate``, ``LM(...)``), ``views`` each view's settings; this
module the ranges that depend on the run (positions, layers, tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...errors import EccoError, InputError, ModelTypeError, PositionError, TokenError
from ...run import OutputSeq
from . import calls as calls
from . import values as values
from . import views as views
from .values import whole_list

POSITIONS = ("all", "input", "output")
"""Which positions a factorisation reads: every one, the prompt's, or the generated ones."""


def predicted_position(seq: OutputSeq, position: int) -> int:
    """The position of the token to predict, first .. n_tokens (-1 means n_tokens)."""
    n, first = seq.n_tokens, seq.first_predicted_position
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise PositionError(
            f"position must be a whole number from {first} to {n}, not {values.shown(position)}."
        )
    position = int(position)
    if position == -1:
        return n
    if position == 0:
        raise PositionError(
            "Position 0 is the first token: nothing comes before it, so no layer predicts it. "
            f"Pick a position from {first} to {n} (position p shows the predictions made after token p - 1)."
        )
    if 0 < position < first:
        raise PositionError(
            f"Position {position} is part of the encoder's input (or the decoder start token): only "
            f"the decoder predicts tokens. Pick a position from {first} (the first generated token) to {n}."
        )
    if not first <= position <= n:
        where = f"{first} to {n - 1} for a token of the text" if first < n else f"{n}"
        raise PositionError(
            f"Position {position} is outside this run: pick {where}, or {n} (or -1) for the token after it."
        )
    return position


def hidden_layers(seq: OutputSeq, layer: int | Sequence[int] | None) -> np.ndarray:
    """(layer,) hidden-state indices: all for None, one for an int, the given ones for a list."""
    n = seq.n_layers
    if layer is None:
        return np.arange(n + 1)
    chosen = np.atleast_1d(np.asarray(layer))
    if chosen.size == 0 or chosen.dtype.kind not in "iu" or chosen.min() < 0 or chosen.max() > n:
        raise InputError(f"layer must be a whole number from 0 (the embeddings) to {n}, or a list of them.")
    return chosen.astype(int)


def topk(topk: int, most: int) -> int:
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or not 1 <= topk <= most:
        raise InputError(f"topk must be a whole number from 1 to {most}, not {values.shown(topk)}.")
    return int(topk)


def parse_watch_text(text: str, leading_space: bool = True) -> list[str | int]:
    """Candidate tokens from comma-separated text, as typed in the app.

    Each item is stripped; with ``leading_space`` a word gets one leading space (" are", the
    word inside a sentence). A quoted item ('are' or "are") is taken exactly as typed, and
    ``#123`` is the token id 123.

    >>> parse_watch_text("is, are, 'Are', #42")
    [' is', ' are', 'Are', 42]
    """
    if not isinstance(text, str):
        raise TokenError(f"The watched tokens must be text such as 'is, are', not {values.shown(text)}.")
    values.flag("leading_space", leading_space)
    items: list[str | int] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            items.append(item[1:-1])
        elif item.startswith("#") and item[1:].isdigit():
            items.append(int(item[1:]))
        else:
            items.append(" " + item if leading_space else item)
    return items


def watch_token_ids(tokenizer, watch: int | str | Sequence[int | str], vocab_size: int) -> np.ndarray:
    """(cand,) int64 ids of watched tokens given as ids or single-token strings (duplicates dropped).

    Raises:
        TokenError: nothing to watch, an id outside the vocabulary, an empty string, or a string
            that is several tokens (the message shows its pieces and a one-token variant).
    """
    if isinstance(watch, (str, int, np.integer)) and not isinstance(watch, bool):
        items = [watch]
    elif isinstance(watch, np.ndarray):
        items = list(watch.ravel())
    elif isinstance(watch, (list, tuple, range)) or watch is None:
        items = list(watch or [])
    else:
        raise TokenError(
            f"watch must be a token (a string or id) or a list of them, not {values.shown(watch)}."
        )
    if not items:
        raise TokenError('Nothing to watch: give one or more tokens, e.g. [" is", " are"].')
    ids: list[int] = []
    for item in items:
        token_id = one_token_id(tokenizer, item, vocab_size)
        if token_id not in ids:
            ids.append(token_id)
    return np.asarray(ids, dtype=np.int64)


def one_token_id(tokenizer, item: int | str, vocab_size: int, role: str = "watch") -> int:
    """The id of one token given as an id or a string (``role`` 'watch' or 'foil' words the errors).

    Raises:
        TokenError: an id outside the vocabulary, an empty or unknown string, or a string that is
            several tokens (the message shows its pieces and a one-token variant).
    """
    what = "The foil" if role == "foil" else "Token"
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        if not 0 <= int(item) < vocab_size:
            raise TokenError(f"{what} id {item} is not in the vocabulary (0 .. {vocab_size - 1}).")
        return int(item)
    if not isinstance(item, str):
        raise TokenError(f"{what}s must be strings or token ids, not {values.shown(item)}.")
    if item == "":
        if role == "foil":
            raise TokenError("The foil is empty: type the token the model did not choose, e.g. ' is'.")
        raise TokenError('An empty string is not a token: type a word such as " are".')
    ids = tokenizer.encode(item, add_special_tokens=False)
    if len(ids) == 1:
        unk = getattr(tokenizer, "unk_token_id", None)
        if ids[0] == unk and item != tokenizer.unk_token:
            raise TokenError(f"{item!r} is not in the vocabulary of this model.")
        return int(ids[0])
    if not ids:
        raise TokenError(f"{item!r} gives no token with this tokenizer.")
    pieces = [tokenizer.decode([i]) for i in ids]
    if role == "foil":
        head = f"The foil {item!r} is {len(ids)} tokens {pieces}; a foil must be one token."
    else:
        joined = " + ".join(map(repr, pieces))
        head = f"{item!r} is {len(ids)} tokens for this model ({joined}); watch one token at a time."
    raise TokenError(head + _one_token_hint(tokenizer, item))


def _one_token_hint(tokenizer, item: str) -> str:
    """A variant of ``item`` that is one token: with or without the leading space."""
    variant = item.strip() if item[:1].isspace() else " " + item
    if variant and len(tokenizer.encode(variant, add_special_tokens=False)) == 1:
        where = "without the leading space" if item[:1].isspace() else "with a leading space"
        return f" {variant!r} ({where}) is one token: words inside a sentence usually start with a space."
    return " Try its first piece, or a shorter word."


def require_activations(seq: OutputSeq, side: str = "decoder") -> np.ndarray:
    """(layer, neuron, pos) activations of ``side``, or an EccoError saying how to capture them."""
    acts = seq.stack(side).activations
    if acts is None or acts.size == 0:
        note = seq.lm.arch.neuron_note if seq.lm is not None else ""
        if note:
            raise ModelTypeError(f"Neuron views are not available: {note}. Every other view works.")
        where = f" of the {side}" if seq.model_type == "enc-dec" else ""
        raise EccoError(
            f"This run has no FFN neuron activations{where}. Run the model again without "
            "activation_layers=[] (the default captures every layer)."
        )
    return acts


def activation_layer_indices(
    seq: OutputSeq, from_layer: int | None = None, to_layer: int | None = None, side: str = "decoder"
) -> list[int]:
    """Indices into ``side``'s activations of the model layers ``from_layer <= layer < to_layer``.

    Layers are model layer numbers (as in ``seq.activation_layers``); ``to_layer`` is exclusive, as
    in ecco. None means from the first / to past the last captured layer.
    """
    require_activations(seq, side)
    view = seq.stack(side)
    layers = view.activation_layers
    n_model = view.hidden_states.shape[0] - 1 if view.hidden_states is not None else layers[-1] + 1
    views.layer_bounds(from_layer, to_layer, max(n_model, layers[-1] + 1))
    low = layers[0] if from_layer is None else int(from_layer)
    high = layers[-1] + 1 if to_layer is None else int(to_layer)
    chosen = [i for i, layer in enumerate(layers) if low <= layer < high]
    if not chosen:
        raise InputError(
            f"No captured layer lies in from_layer={from_layer} .. to_layer={to_layer} (exclusive). "
            f"This run captured layers {layers[0]}..{layers[-1]}."
        )
    return chosen


def stack_positions(
    seq: OutputSeq, positions: str = "all", skip_first: bool = False, side: str = "decoder"
) -> np.ndarray:
    """(position,) indices of ``side``'s positions 'all', 'input' (prompt) or 'output' (generated)."""
    if positions not in POSITIONS:
        raise InputError(f"positions must be one of {POSITIONS}, not {positions!r}.")
    view = seq.stack(side)
    start = 1 if skip_first else 0
    low, high = {"all": (0, view.n_tokens), "input": (0, view.n_input_tokens)}.get(
        positions, (view.n_input_tokens, view.n_tokens)
    )
    chosen = np.arange(max(low, start), high)
    if len(chosen) == 0:
        what = "generated tokens" if positions == "output" else "positions"
        where = f" on the {side} side" if view.name else ""
        raise PositionError(
            f"There are no {what}{where} to factorise (positions={positions!r}"
            f"{', first token left out' if skip_first else ''}). Generate some tokens or pick 'all'."
        )
    return chosen


def stack_position(seq: OutputSeq, position: int, side: str = "decoder") -> int:
    """``position`` (negative from the end) as an index into ``side``'s tokens, or a PositionError."""
    view = seq.stack(side)
    position = int(position)
    if position < 0:
        position += view.n_tokens
    if not 0 <= position < view.n_tokens:
        where = f" (an index into the {side}'s {view.n_tokens} tokens)" if view.name else ""
        raise PositionError(f"position must be in 0..{view.n_tokens - 1}{where} (or negative from the end).")
    return position


def captured_layer_index(layers: list[int], layer: int) -> int:
    """Index of ``layer`` in the captured ``layers``; negative values count from the last captured."""
    if layer < 0 and -len(layers) <= layer:
        return len(layers) + layer
    if layer not in layers:
        raise InputError(
            f"Layer {layer} has no captured attention: this run holds layers {layer_ranges(layers)}. "
            "Capture it with attention_layers=None (all) or include it."
        )
    return layers.index(layer)


def layer_ranges(layers: list[int]) -> str:
    return ", ".join(str(x) for x in layers) if len(layers) < 8 else f"{layers[0]}..{layers[-1]}"


def explained_positions(seq: OutputSeq, positions: Sequence[int] | None) -> list[int]:
    """Sorted positions whose token a saliency explains (default: the generated ones).

    Raises:
        PositionError: not a list of whole numbers, empty, outside the run, or nothing to explain.
    """
    lowest = seq.first_predicted_position  # 1; the first decoder token after the start on enc-dec
    if positions is None:
        first = seq.n_input_tokens if seq.n_output_tokens else 1
        out = list(range(max(first, lowest), seq.n_tokens))
        if not out:
            raise PositionError(
                f"This run has nothing to explain: its {seq.n_tokens} token(s) leave no token with "
                "earlier tokens before it. Generate some tokens or use a longer text."
            )
        return out
    given = whole_list("positions", positions, error=PositionError, what="positions (whole numbers)")
    out = sorted({p + (seq.n_tokens if p < 0 else 0) for p in given})
    for p in out:
        if not lowest <= p < seq.n_tokens:
            why = (
                "the decoder predicts from its start token on"
                if lowest > 1
                else "position 0 has no earlier tokens"
            )
            raise PositionError(
                f"Position {p} cannot be explained: pick {lowest}..{seq.n_tokens - 1} ({why})."
            )
    return out


def foil_differs(seq: OutputSeq, positions: list[int], foil_id: int, explicit: bool) -> None:
    """Refuse a foil equal to the explained token (a contrast of a token with itself is 0).

    With explicit ``positions`` every one must differ from the foil; with the default positions
    (every generated token) at least one must.
    """
    same = [p for p in positions if int(seq.token_ids[p]) == foil_id]
    if same and (explicit or len(same) == len(positions)):
        where = ", ".join(map(str, same[:8]))
        raise TokenError(
            f"The foil {seq.tokens[same[0]]!r} is the explained token itself at position(s) {where}: "
            "the contrast of a token with itself is 0. Pick another foil (the token the model did "
            "not choose) or other positions."
        )
