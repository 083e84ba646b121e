"""Where interventions act, and the hooks that act there: context managers whose hooks are
removed in ``finally``, that fire only in the thread that registered them, and that run under the
model's lock (so a concurrent plain run waits and is never touched).

Sites (per layer ``l`` of the decoder stack):

- ``resid``: the residual stream as ``OutputSeq.hidden_states`` indexes it: 0 is the input of
  block 0 (embeddings), ``l + 1`` the output of block ``l``;
- ``attn``: the output of block ``l``'s attention module (after its output projection);
- ``mlp``: the output of block ``l``'s FFN output projection (what the MLP writes);
- ``heads``: the input of the attention output projection, (pos, head * head_dim);
- ``neurons``: the input of the FFN output projection (the FFN neuron activations).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import InputError, ModelTypeError
from ...model.lm import LanguageModel

SITES = ("resid", "attn", "mlp")
"""Sites of the patching grids."""
_OUT_PROJ_NAMES = ("o_proj", "out_proj", "c_proj", "dense", "o", "wo", "out_lin")

Hook = Callable[[torch.Tensor], torch.Tensor | None]
"""hook(tensor) -> replacement (or None to keep it); the tensor is (batch, pos, d)."""


def n_heads(lm: LanguageModel) -> int:
    """Attention heads per layer (from the config)."""
    config = lm.model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("num_attention_heads", "n_head", "num_heads"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelTypeError(f"{lm.name}: the config names no number of attention heads.")


def out_projection(lm: LanguageModel, layer: int) -> nn.Module:
    """The attention output projection of ``layer`` (o_proj, out_proj, c_proj, dense)."""
    attention = lm.arch.attentions[layer] if lm.arch.attentions else None
    if attention is not None:
        for name, module in reversed(list(attention.named_modules())):  # GPT-Neo nests attn.attention
            if name.split(".")[-1] in _OUT_PROJ_NAMES and (
                isinstance(module, nn.Linear) or hasattr(module, "nf")
            ):
                return module
    raise ModelTypeError(
        f"{lm.name}: no attention output projection found in layer {layer} (looked for "
        f"{', '.join(_OUT_PROJ_NAMES)}), so heads cannot be separated on this model."
    )


def projection_weight(module: nn.Module) -> torch.Tensor:
    """(out, in) weight of a Linear or a GPT-2 Conv1D (which stores (in, out))."""
    return module.weight if isinstance(module, nn.Linear) else module.weight.T


def require_causal(lm: LanguageModel, view: str) -> None:
    if lm.model_type != "causal":
        raise ModelTypeError(
            f"{view} needs a causal (decoder-only) model; {lm.name} is a {lm.model_type} model."
        )


def check_layer(lm: LanguageModel, layer: int, name: str = "layer", upper: int | None = None) -> int:
    top = lm.arch.n_layers - 1 if upper is None else upper
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= top:
        raise InputError(f"{name} must be a whole number from 0 to {top}, not {layer!r}.")
    return layer


def check_site(site: str) -> str:
    if site not in SITES:
        raise InputError(f"site must be one of {', '.join(SITES)}, not {site!r}.")
    return site


def _first(value) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def _with_first(value, tensor: torch.Tensor):
    if isinstance(value, tuple):
        return (tensor, *value[1:])
    if isinstance(value, list):
        return [tensor, *value[1:]]
    return tensor


def _batched(tensor: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(batch, pos, d) view of a site tensor (OPT flattens the batch into (pos, d))."""
    return (tensor, False) if tensor.dim() == 3 else (tensor[None], True)


@dataclass(frozen=True)
class SiteHook:
    """One hook on one site: ``fn`` sees (batch, pos, d) and may return a replacement."""

    site: str
    """'resid', 'attn', 'mlp', 'heads' or 'neurons'."""
    layer: int
    """Layer of the stack; for 'resid' the hidden-state index 0 .. n_layers."""
    fn: Hook


def _module_and_kind(lm: LanguageModel, site: str, layer: int) -> tuple[nn.Module, str]:
    """(module, 'pre' | 'post' | 'block-pre') that carries ``site`` at ``layer``."""
    arch = lm.arch
    if site == "resid":
        return (arch.blocks[0], "block-pre") if layer == 0 else (arch.blocks[layer - 1], "post")
    if site == "attn":
        if not arch.attentions or arch.attentions[layer] is None:
            raise ModelTypeError(f"{lm.name}: no attention module found in layer {layer}.")
        return arch.attentions[layer], "post"
    if site in ("mlp", "neurons"):
        if not arch.ffn_sites:
            raise ModelTypeError(arch.neuron_note or f"{lm.name} has no FFN sites.")
        return arch.ffn_sites[layer], "post" if site == "mlp" else "pre"
    if site == "heads":
        return out_projection(lm, layer), "pre"
    raise InputError(f"Unknown site {site!r}.")


def _make_hook(kind: str, fn: Hook, owner: int):
    def apply(tensor: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != owner:
            return None
        batched, flat = _batched(tensor)
        new = fn(batched)
        return None if new is None else (new[0] if flat else new)

    if kind == "post":

        def hook(_module, _args, output):
            new = apply(_first(output))
            return None if new is None else _with_first(output, new)

    elif kind == "pre":

        def hook(_module, args):
            new = apply(args[0])
            return None if new is None else (new, *args[1:])

    else:  # block-pre: hidden_states may come by keyword

        def hook(_module, args, kwargs):
            if args:
                new = apply(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = apply(kwargs["hidden_states"])
            return None if new is None else (args, {**kwargs, "hidden_states": new})

    hook._ecco_hook = True
    return hook


@contextmanager
def hooked(lm: LanguageModel, hooks: list[SiteHook]) -> Iterator[None]:
    """Register ``hooks`` for the body of a ``with`` under the model's lock; removed on exit,
    exception or not. Hooks fire only in the calling thread."""
    owner = threading.get_ident()
    handles = []
    with lm.lock:
        try:
            for spec in hooks:
                module, kind = _module_and_kind(lm, spec.site, spec.layer)
                hook = _make_hook(kind, spec.fn, owner)
                if kind == "post":
                    handles.append(module.register_forward_hook(hook))
                elif kind == "pre":
                    handles.append(module.register_forward_pre_hook(hook))
                else:
                    handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


def recorder(store: dict, key, grad_leaf: bool = False) -> Hook:
    """A hook that keeps its tensor in ``store[key]`` (as a grad leaf with ``grad_leaf``)."""

    def record(tensor: torch.Tensor) -> torch.Tensor | None:
        if grad_leaf:
            leaf = tensor.detach().requires_grad_(True)
            store[key] = leaf
            return leaf
        store[key] = tensor
        return None

    return record
