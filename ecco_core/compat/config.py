"""ecco's ``model_config`` and token prefixes: checked against the loaded model, never guessed.

ecco read a per-model yaml table (embedding name, FFN activation site, model type, token prefixes).
ecco_core finds the embedding and the FFN sites by structure, so a ``model_config`` is checked
against what was found: a name that points elsewhere raises an error naming what ecco_core uses.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError
from ..facade import LM

CONFIG_KEYS = ("embedding", "type", "activations", "token_prefix", "partial_token_prefix")


def token_prefixes(tokenizer) -> tuple[str, str]:
    """(token_prefix, partial_token_prefix) of a tokenizer's raw tokens, as ecco's yaml gave them:
    'Ġ' for byte-level BPE (GPT-2, Llama 3, SmolLM2), '▁' for SentencePiece, '##' for WordPiece."""
    ids = tokenizer(" a b", add_special_tokens=False)["input_ids"]
    raw = "".join(tokenizer.convert_ids_to_tokens(ids))
    if "Ġ" in raw:
        return "Ġ", ""
    if "▁" in raw:
        return "▁", ""
    if any(token.startswith("##") for token in tokenizer.get_vocab()):
        return "", "##"
    return "", ""


def strip_prefix(config: dict, token: str) -> str:
    """A raw token without its word or partial-word prefix (ecco's ``strip_tokenizer_prefix``)."""
    return token.lstrip(config["token_prefix"]).lstrip(config["partial_token_prefix"]).lstrip(" ")


def is_partial(config: dict, token: str) -> bool:
    """ecco's ``is_partial_token``: a continuation piece of a word."""
    prefix, partial = config["token_prefix"], config["partial_token_prefix"]
    return token.startswith(partial) and (not prefix or not token.startswith(prefix))


def _module_name(model, module) -> str:
    return next((name for name, m in model.named_modules() if m is module), "?")


def _check_embedding(lm: LM, name: Any) -> None:
    embeddings = lm.model.get_input_embeddings()
    found = None
    for root in (lm.model, getattr(lm.model, "base_model", lm.model)):
        try:
            found = root.get_submodule(str(name).removesuffix(".weight"))
            break
        except AttributeError:
            continue
    if found is not embeddings:
        raise InputError(
            f"model_config['embedding']={name!r} does not name this model's input embeddings; ecco_core "
            f"reads them by structure ('{_module_name(lm.model, embeddings)}'). Remove the key or fix "
            "the name."
        )


def _check_activations(lm: LM, patterns: Any) -> None:
    if isinstance(patterns, str) or not all(isinstance(p, str) for p in patterns or ()):
        raise InputError(
            f"model_config['activations'] must be a list of regular expressions, not {patterns!r}."
        )
    names = [name for name, _ in lm.model.named_modules()]
    sites = [_module_name(lm.model, m) for m in lm.arch.ffn_sites]
    for pattern in patterns:
        if not any(re.search(pattern, name) for name in names):
            raise InputError(
                f"model_config['activations'] pattern {pattern!r} matches no module of {lm.name}. ecco_core "
                f"records the input of each block's FFN output projection, found by structure "
                f"({', '.join(sites[:2])}, ...); remove the key or give a pattern that names the FFN."
            )


def ecco_config(lm: LM, model_config: dict | None) -> dict:
    """ecco's config dict for ``lm``: ``model_config`` checked against the model, else found.

    Raises:
        InputError: an unknown key, a type that is not the model's, or names that point elsewhere.
    """
    prefix, partial = token_prefixes(lm.tokenizer)
    config = {"type": lm.model_type, "token_prefix": prefix, "partial_token_prefix": partial}
    if model_config is None:
        return config
    if not isinstance(model_config, dict):
        raise InputError(
            f"model_config must be a dict (ecco's keys: {', '.join(CONFIG_KEYS)}), not {model_config!r}. "
            "To choose a device, pass device='cpu' (or 'cuda') by name."
        )
    unknown = sorted(set(model_config) - set(CONFIG_KEYS) - {"tokenizer_config"})
    if unknown:
        raise InputError(
            f"model_config has unknown keys {unknown}; ecco's keys are {', '.join(CONFIG_KEYS)}."
        )
    kind = model_config.get("type", lm.model_type)
    if kind != lm.model_type:
        raise InputError(
            f"model_config['type']={kind!r}, but {lm.name} loads as a {lm.model_type!r} model; "
            "ecco_core picks the type from the model's own class. Remove the key."
        )
    if "embedding" in model_config:
        _check_embedding(lm, model_config["embedding"])
    if "activations" in model_config:
        _check_activations(lm, model_config["activations"])
    for key in ("token_prefix", "partial_token_prefix"):
        if key in model_config:
            if not isinstance(model_config[key], str):
                raise InputError(f"model_config[{key!r}] must be a string, not {model_config[key]!r}.")
            config[key] = model_config[key]
    return config
