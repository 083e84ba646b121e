"""The one forward pass with hooks, and what it records. Hooks live only inside ``recording`` and
die in ``finally``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .architecture import Architecture
from .experts import ExpertSite


@dataclass(eq=False)
class Capture:
    """What one capture forward recorded, as numpy arrays (``ecco_core.run.OutputSeq`` adds the
    model, attributions and the views' cache).

    Positions index the whole sequence: prompt tokens ``0 .. n_input_tokens - 1``, generated
    tokens after them.

    Position conventions per ``model_type``:

    - 'causal': every array's position axis is the whole sequence. The hidden state at
      position ``p - 1`` predicts the token at ``p``, so predictions exist for ``p >= 1``.
    - 'mlm': like 'causal' (the prompt is the whole sequence, nothing is generated); there is
      no next-token prediction, masked-token predictions read a position's own state.
    - 'enc-dec' (ecco's convention): ``token_ids`` / ``tokens`` are the encoder input (the
      prompt, ``0 .. n_input_tokens - 1``) followed by the decoder's tokens (the decoder start
      token at ``n_input_tokens``, then the generated ones). ``hidden_states``, ``activations``
      and ``attentions`` are the *decoder's*: their position axis starts at ``n_input_tokens``,
      so position ``p`` is array index ``p - n_input_tokens``. The decoder state at array index
      ``j`` predicts the token at position ``n_input_tokens + j + 1``. The encoder's arrays and
      the cross-attention live in ``extras``.
    """

    token_ids: np.ndarray
    """(pos,) int64 token ids, prompt then generated tokens."""
    tokens: list[str]
    """pos strings, readable (no byte-level artefacts); special tokens as their text."""
    n_input_tokens: int
    """Number of prompt tokens (including a BOS the tokenizer added)."""
    model_type: str = "causal"
    """'causal', 'mlm' or 'enc-dec'."""
    model_name: str = ""
    hidden_states: np.ndarray | None = None
    """(layer + 1, pos, d_model) float32 residual stream; index 0 is the embedding output."""
    activations: np.ndarray | None = None
    """(layer, neuron, pos) float32 FFN neuron activations of ``activation_layers``."""
    activation_layers: list[int] = field(default_factory=list)
    """Which model layers the first axis of ``activations`` holds."""
    attentions: np.ndarray | None = None
    """(layer, head, pos, pos) float32 attention weights, when captured."""
    special: np.ndarray | None = None
    """(pos,) bool: special tokens (BOS, EOS, chat markers)."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Model-type specific data. Encoder-decoders: ``extras["encoder"]`` holds ``token_ids``
    (enc_pos,), ``tokens``, ``hidden_states`` (layer + 1, enc_pos, d_model), ``activations``
    (layer, neuron, enc_pos), ``activation_layers``, ``attentions`` (layer, head, enc_pos,
    enc_pos) or None, ``attention_layers``; ``extras["decoder"]`` holds ``token_ids``
    (dec_pos,), ``tokens``, ``cross_attentions`` (layer, head, dec_pos, enc_pos) or None and
    ``cross_attention_layers``."""
    run_id: str = ""
    """Unique id of the run (a cache key for derived results)."""
    attention_layers: list[int] = field(default_factory=list)
    """Which model layers the first axis of ``attentions`` holds (``attention_layers=`` asks for a subset)."""

    def __post_init__(self) -> None:
        if self.attentions is not None and not self.attention_layers:
            self.attention_layers = list(range(self.attentions.shape[0]))


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
    routing: dict[int, tuple] = field(default_factory=dict)
    """layer -> (experts (pos, top_k), weights (pos, top_k), shared gate (pos,) or None) of an
    MoE layer (``ExpertSite``)."""

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
        ffn_sites: the FFN output projection of each block (empty: the model has none found).
        ffn_layers: which layers' FFN activations to keep (None: all, []: none).
        attention_sites: the attention module of each block; empty records no attention. The
            model must run eager attention (fused kernels return no weights).
        attention_layers: which layers' attention weights to keep (None: all), so a long prompt
            only holds the (head, pos, pos) maps asked for.
    """
    rec = Recording()
    layers = [] if not ffn_sites else range(len(blocks)) if ffn_layers is None else ffn_layers
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

    def routed_hook(layer: int):
        def on_routed(neurons, experts, weights, shared_gate):
            rec.ffn[layer] = neurons  # (pos, n_neurons)
            rec.routing[layer] = (experts, weights, shared_gate)

        return on_routed

    for hook in (on_first_block, on_block_output):
        hook._ecco_hook = True
    try:
        handles.append(blocks[0].register_forward_pre_hook(on_first_block, with_kwargs=True))
        for block in blocks:
            handles.append(block.register_forward_hook(on_block_output))
        for layer in layers:
            site = ffn_sites[layer]
            if isinstance(site, ExpertSite):
                handles.extend(site.register(routed_hook(layer)))
            else:
                handles.append(site.register_forward_pre_hook(ffn_hook(layer)))
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


class AttentionImplementation:
    """Switch the attention kernel for one call (eager exposes the attention weights)."""

    def __init__(self, model, implementation: str | None) -> None:
        self.model, self.implementation, self.previous = model, implementation, None

    def __enter__(self):
        if self.implementation:
            self.previous = self.model.config._attn_implementation
            if self.previous != self.implementation:
                self.model.set_attn_implementation(self.implementation)
        return self

    def __exit__(self, *exc) -> None:
        if self.implementation and self.previous and self.previous != self.implementation:
            self.model.set_attn_implementation(self.previous)


def recorded_arrays(rec) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A recording as float32 numpy: hidden states, FFN activations, attention (or None)."""
    hidden = rec.hidden_states().float().cpu().numpy()  # (layer + 1, pos, d_model)
    acts = rec.activations().float().cpu().numpy() if rec.ffn else None  # (layer, neuron, pos)
    attn = rec.attentions().float().cpu().numpy() if rec.attn else None  # (layer, head, pos, pos)
    return hidden, acts, attn


def routing_extras(rec: Recording, site) -> dict[str, Any]:
    """``Capture.extras["routing"]`` of an MoE stack (``{}`` for a dense one): which experts each
    token went to, with their router weights, for every recorded layer."""
    if not rec.routing or not isinstance(site, ExpertSite):
        return {}
    layers = sorted(rec.routing)
    experts = torch.stack([rec.routing[k][0] for k in layers]).cpu().numpy().astype(np.int64)
    weights = torch.stack([rec.routing[k][1] for k in layers]).float().cpu().numpy()
    data = {"layers": layers, "experts": experts, "weights": weights}  # (layer, pos, top_k)
    data |= {"n_experts": site.n_experts, "expert_size": site.expert_size, "shared_size": site.shared_size}
    if site.shared_gate is not None:
        data["shared_weights"] = torch.stack([rec.routing[k][2] for k in layers]).float().cpu().numpy()
    return {"routing": data}


def within(layers: Sequence[int] | None, n_layers: int) -> list[int] | None:
    """The requested layers that exist in a stack of ``n_layers`` (None: all)."""
    return None if layers is None else [int(layer) for layer in layers if 0 <= int(layer) < n_layers]
