"""The one forward pass with hooks. Hooks live only inside ``recording`` and die in ``finally``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .architecture import Architecture


@dataclass
class Recording:
    """What the hooks saw during one forward pass (batch 1).

    Fields hold per-layer tensors in call order; ``stacked_*`` turn them into arrays.
    """

    block_input: torch.Tensor | None = None
    """(pos, d_model) residual stream entering block 0 (embeddings, positions, scaling)."""
    block_outputs: list[torch.Tensor] = field(default_factory=list)
    """layer x (pos, d_model) residual stream after each block."""
    ffn: dict[int, torch.Tensor] = field(default_factory=dict)
    """layer -> (pos, n_neurons) input of the FFN output projection."""
    attn: dict[int, torch.Tensor] = field(default_factory=dict)
    """layer -> (head, query_pos, key_pos) attention weights (eager attention only)."""

    def hidden_states(self) -> torch.Tensor:
        """(layer + 1, pos, d_model): embeddings then the output of every block."""
        return torch.stack([self.block_input, *self.block_outputs])

    def activations(self) -> torch.Tensor:
        """(layer, neuron, pos) FFN neuron activations of the recorded layers."""
        return torch.stack([self.ffn[k].T for k in sorted(self.ffn)])

    def attentions(self) -> torch.Tensor:
        """(layer, head, query_pos, key_pos) attention weights of the recorded layers."""
        return torch.stack([self.attn[k] for k in sorted(self.attn)])


def _first_tensor(value) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def attention_weights(output) -> torch.Tensor | None:
    """The attention weights in an attention module's output: its last 4-D tensor.

    Attention modules return ``(out, weights)`` (GPT-2, Llama, BERT, BART, ...) or
    ``(out, position_bias, weights)`` (T5); under a fused kernel the weights are None.
    """
    if not isinstance(output, (tuple, list)):
        return None
    for item in reversed(output):
        if isinstance(item, torch.Tensor) and item.dim() == 4:
            return item
        if item is not None:
            return None
    return None


@contextmanager
def recording(
    blocks: nn.ModuleList,
    ffn_sites: Sequence[nn.Module],
    ffn_layers: Sequence[int] | None = None,
    attention_sites: Sequence[nn.Module | None] = (),
    attention_layers: Sequence[int] | None = None,
) -> Iterator[Recording]:
    """Register hooks that record the residual stream, FFN activations and attention of one stack.

    Args:
        blocks: the transformer blocks, in order.
        ffn_sites: the FFN output projection of each block.
        ffn_layers: which layers' FFN activations to keep (None: all, []: none).
        attention_sites: the attention module of each block; empty records no attention. The
            model must run eager attention (fused kernels return no weights).
        attention_layers: which layers' attention weights to keep (None: all), so a long prompt
            only holds the (head, pos, pos) maps asked for.
    """
    rec = Recording()
    layers = range(len(blocks)) if ffn_layers is None else ffn_layers
    attn_layers = range(len(attention_sites)) if attention_layers is None else attention_layers
    handles = []

    def on_first_block(_module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        rec.block_input = hidden[0].detach()  # (pos, d_model)

    def on_block_output(_module, _args, output):
        rec.block_outputs.append(_first_tensor(output)[0].detach())  # (pos, d_model)

    def ffn_hook(layer: int):
        def on_ffn_input(_module, args):
            x = args[0]  # (1, pos, n_neurons), or (pos, n_neurons) where OPT flattens the batch
            rec.ffn[layer] = (x if x.dim() == 2 else x[0]).detach()  # (pos, n_neurons)

        on_ffn_input._ecco_hook = True
        return on_ffn_input

    for hook in (on_first_block, on_block_output):
        hook._ecco_hook = True
    try:
        handles.append(blocks[0].register_forward_pre_hook(on_first_block, with_kwargs=True))
        for block in blocks:
            handles.append(block.register_forward_hook(on_block_output))
        for layer in layers:
            handles.append(ffn_sites[layer].register_forward_pre_hook(ffn_hook(layer)))
        _add_attention_hooks(handles, rec, attention_sites, attn_layers)
        yield rec
    finally:
        for handle in handles:
            handle.remove()


def _attention_hook(rec: Recording, layer: int):
    def on_attention_output(_module, _args, output):
        weights = attention_weights(output)  # (1, head, query_pos, key_pos)
        if weights is not None:
            rec.attn[layer] = weights[0].detach()  # (head, query_pos, key_pos)

    on_attention_output._ecco_hook = True
    return on_attention_output


def _add_attention_hooks(
    handles: list, rec: Recording, sites: Sequence[nn.Module | None], layers: Sequence[int]
) -> None:
    """Hook the attention module of each layer in ``layers`` (appending to ``handles`` as it goes)."""
    for layer in layers if sites else ():
        if sites[layer] is not None:
            handles.append(sites[layer].register_forward_hook(_attention_hook(rec, layer)))


@contextmanager
def attention_recording(
    sites: Sequence[nn.Module | None], layers: Sequence[int] | None = None
) -> Iterator[Recording]:
    """Record only attention weights (e.g. an encoder-decoder's cross-attention); ``rec.attn``."""
    rec = Recording()
    handles: list = []
    try:
        _add_attention_hooks(handles, rec, sites, range(len(sites)) if layers is None else layers)
        yield rec
    finally:
        for handle in handles:
            handle.remove()


def hook_count(arch: Architecture) -> int:
    """Number of ecco_core hooks registered on the stack (0 outside ``recording``).

    Hooks that transformers registers itself (output recorders) are not counted.
    """
    count = 0
    for module in arch.model_modules():
        for hook in [*module._forward_hooks.values(), *module._forward_pre_hooks.values()]:
            count += bool(getattr(hook, "_ecco_hook", False))
    return count
