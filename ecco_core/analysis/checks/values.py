"""Type and range checks of single values: whole numbers, real numbers, flags, choices, lists.

Each takes the argument's ``name`` and raises ``error`` (an ``EccoError`` subclass, ``InputError``
unless told) with a message that names the argument, shows what was given (and its type, when
the type is the problem) and says what is allowed. They return the value in its plain Python
form (``int``, ``float``, ``bool``, ``list[int]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...errors import EccoError, InputError

SHOWN_CHARACTERS = 60
"""How much of a wrong value's repr a message shows."""


def shown(value: object) -> str:
    """``value``'s repr, cut to ``SHOWN_CHARACTERS``, with its type where the repr hides it."""
    text = " ".join(repr(value).split())  # one line, whatever the repr
    if len(text) > SHOWN_CHARACTERS:
        text = text[: SHOWN_CHARACTERS - 3] + "..."
    if value is None:
        return text
    kind = type(value).__name__
    return f"{text} ({'an' if kind[:1] in 'aeiou' else 'a'} {kind})"


def is_whole(value: object) -> bool:
    """An int (or numpy integer), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: object) -> bool:
    """An int or float (or numpy number), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low} to {high}"
    if low is not None:
        return f"of at least {low}"
    if high is not None:
        return f"of at most {high}"
    return ""


def whole(
    name: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    error: type[EccoError] = InputError,
    allowed: str | None = None,
) -> int:
    """``value`` as an int within ``low .. high`` (inclusive; None: unbounded)."""
    allowed = allowed or f"a whole number {_range_text(low, high)}".rstrip()
    if not is_whole(value):
        raise error(f"{name} must be {allowed}, not {shown(value)}.")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise error(f"{name} must be {allowed}, not {number}.")
    return number


def optional_whole(
    name: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    error: type[EccoError] = InputError,
    allowed: str | None = None,
) -> int | None:
    """None, or ``whole(...)``."""
    if value is None:
        return None
    allowed = allowed or f"None or a whole number {_range_text(low, high)}".rstrip()
    return whole(name, value, low, high, error, allowed)


def real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    error: type[EccoError] = InputError,
    allowed: str | None = None,
) -> float:
    """``value`` as a finite float with ``low (<|<=) value <= high``."""
    if allowed is None:
        left = "above" if low_open else "at least"
        parts = ([f"{left} {low}"] if low is not None else []) + (
            [f"at most {high}"] if high is not None else []
        )
        allowed = "a finite number" + (" " + " and ".join(parts) if parts else "")
    if not is_real(value):
        raise error(f"{name} must be {allowed}, not {shown(value)}.")
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    if not math.isfinite(number) or too_low or (high is not None and number > high):
        raise error(f"{name} must be {allowed}, not {number}.")
    return number


def flag(name: str, value: object, error: type[EccoError] = InputError) -> bool:
    """``value`` as a bool (True / False only: 0, 1 and strings are refused)."""
    if not isinstance(value, (bool, np.bool_)):
        raise error(f"{name} must be True or False, not {shown(value)}.")
    return bool(value)


def choice(name: str, value: object, options: Sequence[str], error: type[EccoError] = InputError) -> str:
    """``value``, one of the strings ``options``."""
    if not isinstance(value, str) or value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise error(f"{name} must be one of {listed}, not {shown(value)}.")
    return value


def whole_list(
    name: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    error: type[EccoError] = InputError,
    allow_empty: bool = False,
    what: str = "whole numbers",
) -> list[int]:
    """``value`` (a list, tuple, range or 1-D integer array) as a list of ints within ``low .. high``."""
    where = f" {_range_text(low, high)}" if low is not None or high is not None else ""
    allowed = f"a list of {what}{where}"
    if isinstance(value, (str, bytes, dict, set)) or is_whole(value) or not _is_sequence(value):
        example = f", e.g. [{int(value)}]" if is_whole(value) else ""
        raise error(f"{name} must be {allowed}{example}, not {shown(value)}.")
    items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
    if not items and not allow_empty:
        raise error(f"{name} is empty: give {allowed}.")
    bad = [item for item in items if not is_whole(item)]
    if bad:
        raise error(f"{name} must be {allowed}; {shown(bad[0])} is not a whole number.")
    numbers = [int(item) for item in items]
    outside = [n for n in numbers if (low is not None and n < low) or (high is not None and n > high)]
    if outside:
        raise error(f"{name} must be {allowed}; {outside[0]} is outside.")
    return numbers


def optional_whole_list(name: str, value: object, low: int | None = None, high: int | None = None, **kwargs):
    """None, or ``whole_list(...)``."""
    return None if value is None else whole_list(name, value, low, high, **kwargs)


def _is_sequence(value: object) -> bool:
    if isinstance(value, np.ndarray):
        return value.ndim <= 1
    return isinstance(value, (list, tuple, range))


def optional_callable(name: str, value: object) -> object:
    """None or a callable (progress callbacks)."""
    if value is not None and not callable(value):
        raise InputError(f"{name} must be None or a function, not {shown(value)}.")
    return value
