"""Mixture-of-experts FFN sites: what a "neuron" is in a sparse MoE block, and how it is recorded.

transformers 5 keeps the routed experts of Mixtral, Qwen2-MoE, Qwen3-MoE (and OLMoE, DeepSeek, ...)
as fused 3-D parameters: ``experts.gate_up_proj`` (expert, 2 * unit, d_model) and
``experts.down_proj`` (expert, d_model, unit). The block's output is

    sum over the experts e a token was routed to of  w_e * down_e(act(gate_e(x)) * up_e(x))
    (+ g * down_s(act(gate_s(x)) * up_s(x)) for a shared expert, g = sigmoid(shared_expert_gate(x)))

A *neuron* of such a layer is one intermediate unit of one expert, weighted by the router:
``w_e * act(gate_e(x))[u] * up_e(x)[u]``, 0 where the token was not routed to expert e. The layer's
neurons are the experts' units expert by expert (neuron ``e * unit + u``), then the shared
expert's units weighted by its gate. With that weighting the block's output is exactly
``sum_n neuron_n * down column_n``, as for a dense FFN, so NMF, top neurons and similarity read
what each unit put into the residual stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Routed = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], None]
"""on_layer(neurons (token, n_neurons), experts (token, top_k), weights (token, top_k),
shared gate (token,) or None), called once per forward of the block."""

_SHARED = ("shared_expert", "shared_experts")
_LAYOUT_FLAGS = {  # transformers' experts flags -> the value this module computes with
    "is_concatenated": True,
    "is_transposed": False,
    "has_bias": False,
    "has_gate": True,
    "has_post_expert_norm": False,
}


@dataclass(frozen=True, eq=False)
class ExpertSite:
    """One sparse MoE block: its fused experts and, if any, its shared expert."""

    block: nn.Module
    """The MoE block (Mixtral's ``mlp``): its forward hook sees the layer's whole computation."""
    experts: nn.Module
    """The fused experts (``gate_up_proj``, ``down_proj``, ``act_fn``)."""
    n_experts: int
    expert_size: int
    """Intermediate units per routed expert."""
    shared_down: nn.Linear | None = None
    """The shared expert's output projection (Qwen2-MoE's ``shared_expert.down_proj``)."""
    shared_gate: nn.Linear | None = None
    """The shared expert's sigmoid gate (hidden -> 1), or None (weight 1)."""

    @property
    def shared_size(self) -> int:
        return int(self.shared_down.in_features) if self.shared_down is not None else 0

    @property
    def n_neurons(self) -> int:
        return self.n_experts * self.expert_size + self.shared_size

    def routed_units(self, hidden: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(token, expert * unit) router-weighted units, from the experts' own inputs.

        Args:
            hidden: (token, d_model) what the experts read.
            index: (token, top_k) the experts each token was routed to.
            weights: (token, top_k) their router weights.
        """
        units = hidden.new_zeros(len(hidden), self.n_experts, self.expert_size)  # (token, expert, unit)
        for expert in index.unique().tolist():
            if not 0 <= expert < self.n_experts:
                continue  # transformers' padding index for dropped tokens
            token, slot = torch.where(index == expert)
            gate_up = nn.functional.linear(hidden[token], self.experts.gate_up_proj[expert])  # (n, 2 * unit)
            active = self.experts._apply_gate(gate_up)  # (n, unit)
            units[token, expert] = active * weights[token, slot, None].to(active.dtype)
        return units.reshape(len(hidden), -1)

    def register(self, on_layer: Routed) -> list:
        """Hooks that call ``on_layer`` once per forward of the block; the caller removes them."""
        seen: dict[str, torch.Tensor | None] = {"shared": None, "gate": None}

        def on_experts(_module, args, kwargs):
            names = ("hidden_states", "top_k_index", "top_k_weights")
            hidden, index, weights = (*args, *(kwargs[n] for n in names[len(args) :]))
            seen["routed"] = self.routed_units(hidden, index, weights).detach()  # (token, E * unit)
            seen["index"], seen["weights"] = index.detach(), weights.detach()  # (token, top_k)

        def on_shared_down(_module, args):
            seen["shared"] = args[0].reshape(-1, self.shared_size).detach()  # (token, shared unit)

        def on_shared_gate(_module, _args, output):
            seen["gate"] = torch.sigmoid(output.reshape(-1)).detach()  # (token,)

        def on_block(_module, _args, _output):
            neurons, gate = seen.pop("routed"), seen["gate"]
            if self.shared_down is not None:
                shared = seen["shared"] if gate is None else seen["shared"] * gate[:, None]
                neurons = torch.cat([neurons, shared.to(neurons.dtype)], dim=1)  # (token, n_neurons)
            on_layer(neurons, seen.pop("index"), seen.pop("weights"), gate)

        for hook in (on_experts, on_shared_down, on_shared_gate, on_block):
            hook._ecco_hook = True
        handles = [self.experts.register_forward_pre_hook(on_experts, with_kwargs=True)]
        if self.shared_down is not None:
            handles.append(self.shared_down.register_forward_pre_hook(on_shared_down))
        if self.shared_gate is not None:
            handles.append(self.shared_gate.register_forward_hook(on_shared_gate))
        handles.append(self.block.register_forward_hook(on_block))
        return handles


def expert_site(block: nn.Module) -> tuple[ExpertSite | None, str]:
    """The fused-expert MoE site of one transformer block: (site, '') , (None, '') where the
    block has no fused experts, or (None, why) for an expert layout this module does not compute."""
    for name, module in block.named_modules():
        gate_up, down = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
        if not (isinstance(gate_up, torch.Tensor) and isinstance(down, torch.Tensor) and down.dim() == 3):
            continue
        odd = [flag for flag, value in _LAYOUT_FLAGS.items() if getattr(module, flag, value) != value]
        if odd or gate_up.dim() != 3 or not hasattr(module, "_apply_gate"):
            why = ", ".join(f"{flag}={not _LAYOUT_FLAGS[flag]}" for flag in odd) or "no _apply_gate"
            return None, f"its experts ({type(module).__name__}: {why}) are a layout not computed here"
        parent = block.get_submodule(name.rpartition(".")[0]) if "." in name else block
        shared_down, shared_gate = _shared_expert(parent)
        if shared_down is False:
            return None, f"its shared expert in {type(parent).__name__} has no down_proj"
        site = ExpertSite(parent, module, int(down.shape[0]), int(down.shape[2]), shared_down, shared_gate)
        return site, ""
    return None, ""


def _shared_expert(parent: nn.Module):
    """(the shared expert's down_proj, its gate) beside the routed experts; (None, None) if none,
    (False, None) if there is one whose output projection is not a Linear down_proj."""
    for name in _SHARED:
        shared = getattr(parent, name, None)
        if isinstance(shared, nn.Module):
            down = getattr(shared, "down_proj", None)
            if not isinstance(down, nn.Linear):
                return False, None
            gate = getattr(parent, f"{name}_gate", None)
            return down, gate if isinstance(gate, nn.Linear) else None
    return None, None
