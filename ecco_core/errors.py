"""Every error a person can act on. The UI shows ``str(error)`` with ``st.error``."""

from __future__ import annotations


class EccoError(Exception):
    """Base class: bad input or an unusable model, with a message a person can act on."""


class ModelNotFoundError(EccoError):
    """The model name is neither a local path, a GGUF file nor a reachable hub id."""


class NoNetworkError(ModelNotFoundError):
    """A hub id was asked for but the hub cannot be reached."""


class NotALanguageModelError(EccoError):
    """The checkpoint is not a causal LM, masked LM or encoder-decoder."""


class UnsupportedArchitectureError(EccoError):
    """A part ecco_core needs (block list, final norm, unembedding, FFN site) was not found."""


class InputError(EccoError):
    """Bad text, token ids or generation settings."""


class EmptyPromptError(InputError):
    """The prompt is empty or only whitespace."""


class PromptTooLongError(InputError):
    """The prompt plus the tokens to generate exceed the model's context window."""


class GenerationSettingsError(InputError):
    """``generate`` count, temperature, top-k or top-p out of range."""


class PositionError(InputError):
    """A position outside the sequence, or position 0 where no prediction exists."""


class TokenError(InputError):
    """A watched or foil token that is empty, unknown or several tokens long."""


class ModelTypeError(EccoError):
    """A view that needs another kind of model (e.g. a causal-only view on a masked LM)."""


class ComponentsError(InputError):
    """A factorisation asked for more components than the data allows."""


class NumericalError(EccoError):
    """NaN or inf where numbers were expected (e.g. half precision overflow)."""


class AttentionMissingError(EccoError):
    """The run was made without attention capture."""


class ModelFilesError(ModelNotFoundError):
    """A model folder or ``.gguf`` file exists but cannot be loaded (no weights, truncated, garbage)."""


class HubTimeoutError(NoNetworkError):
    """The model hub answered but the download did not finish within the loading timeout."""


class DeviceError(InputError):
    """A device that is unknown or not available here, or a dtype models cannot run in."""


class RunFileError(EccoError):
    """A saved run that cannot be written (disk full, read-only) or read (truncated, crafted, too large)."""


class MemoryBudgetError(EccoError):
    """A computation would not fit the process's memory budget (``ECCO_MEMORY_BUDGET_MB``)."""


class ModelLoadTimeoutError(EccoError):
    """Loading a model took longer than the time allowed (``ECCO_LOAD_TIMEOUT_S``)."""


class UnsupportedIdiomError(EccoError):
    """An ecco call or argument that ecco_core does not support; the message names the replacement."""
