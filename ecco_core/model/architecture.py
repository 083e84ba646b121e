"""Every per-family quirk in one place, found by inspecting the module tree.

No table of model names: the block list is the ``ModuleList`` whose length is the layer count,
the final norm is the norm that follows it in its parent, the unembedding is the model's output
embedding, the FFN neuron site is the input of the FFN output projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnsupportedArchitectureError
from .experts import ExpertSite, expert_site

# Names of the FFN output projection, whose *input* holds the neuron activations.
_FFN_OUT_NAMES = ("down_proj", "dense_4h_to_h", "fc2", "fc_out", "w2", "wo")
_FFN_PARENT_HINTS = ("mlp", "feed_forward", "ffn", "DenseReluDense", "fc")
# Output projections whose names also occur outside the FFN (attention's c_proj / Wo): only
# under an FFN parent.
_FFN_OUT_IN_FFN = ("c_proj", "lin2", "Wo")
_ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention", "SelfAttention")
_CROSS_ATTENTION_NAMES = ("encoder_attn", "EncDecAttention", "crossattention", "cross_attn")


@dataclass(frozen=True)
class Architecture:
    """The parts of one transformer stack that ecco_core hooks or reuses.

    For an encoder-decoder, ``blocks`` is the decoder stack (where the lens applies) and
    ``encoder_blocks`` the encoder stack. The read-out from a residual state to logits is
    ``unembedding(final_norm(h) * logit_scale) + logit_bias``, or ``mlm_head(h)`` where a masked
    LM has a prediction head (BERT's dense + activation + LayerNorm + decoder).
    """

    family: str
    embeddings: nn.Module
    blocks: nn.ModuleList
    final_norm: nn.Module | None
    unembedding: nn.Module | None
    ffn_sites: tuple[nn.Module | ExpertSite, ...]
    """Per block: the FFN output projection (its input is the neurons) or a fused-expert MoE site."""
    attentions: tuple[nn.Module, ...]
    d_model: int
    n_neurons: int
    encoder_blocks: nn.ModuleList | None = None
    encoder_ffn_sites: tuple[nn.Module, ...] = ()
    encoder_attentions: tuple[nn.Module, ...] = ()
    cross_attentions: tuple[nn.Module, ...] = ()
    """Decoder blocks' attention over the encoder output (encoder-decoders only)."""
    neuron_note: str = ""
    """Why there are no FFN neuron sites ('' when every block has one)."""
    mlm_head: nn.Module | None = None
    """A masked LM's whole prediction head, (..., d_model) -> (..., vocab) logits."""
    logit_scale: float = 1.0
    """Factor on the final state before the unembedding (T5 with tied embeddings: d_model**-0.5)."""
    logit_bias: torch.Tensor | None = None
    """(vocab,) bias added to the logits outside the unembedding (BART's final_logits_bias)."""
    read_out_projection: nn.Module | None = None
    """A linear map from the last block's width to the unembedding's, after the final norm
    (OPT-350m's ``project_out``: 1024 -> 512)."""
    logit_multiplier: float = 1.0
    """Factor on the logits after the unembedding (Cohere's logit_scale, 1 / Granite's logits_scaling)."""
    logit_softcap: float | None = None
    """Gemma 2 / 3's final soft-cap: logits become ``cap * tanh(logits / cap)``."""

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def model_modules(self) -> list[nn.Module]:
        """Every module of the hooked stacks (to check that no hook outlived its call)."""
        stacks = [self.blocks, *([self.encoder_blocks] if self.encoder_blocks is not None else [])]
        return [self.embeddings, *(m for stack in stacks for m in stack.modules())]


def _n_layers(config) -> int | None:
    for key in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _d_model(config, embeddings: nn.Module) -> int:
    for key in ("hidden_size", "n_embd", "d_model", "dim"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return int(embeddings.weight.shape[1])


def _block_lists(model: nn.Module, n_layers: int | None) -> list[tuple[str, nn.ModuleList]]:
    """Every homogeneous ``ModuleList`` of transformer blocks, in module order."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        kinds = {type(child) for child in module}
        if len(kinds) != 1 or isinstance(module[0], (nn.Linear, nn.Embedding)):
            continue
        if not any(isinstance(m, (nn.Linear,)) or _is_conv1d(m) for m in module[0].modules()):
            continue
        if n_layers is not None and len(module) != n_layers and "decoder" not in name:
            continue
        found.append((name, module))
    # Keep outermost lists only (a block may hold its own ModuleList of sublayers).
    outer = [(n, m) for n, m in found if not any(n.startswith(o + ".") for o, _ in found if o != n)]
    return outer


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _ffn_site(block: nn.Module) -> nn.Module | None:
    """The FFN output projection inside one block (its input is the neuron activation)."""
    linears = [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear) or _is_conv1d(m)]
    for name, module in linears:
        if name.split(".")[-1] in _FFN_OUT_NAMES:
            return module
    for name, module in linears:  # GPT-2's mlp.c_proj, DistilBERT's ffn.lin2, ModernBERT's mlp.Wo
        parts = name.split(".")
        if parts[-1] in _FFN_OUT_IN_FFN and any(h in parts for h in _FFN_PARENT_HINTS):
            return module
    for name, module in linears:  # BERT-style: layer.intermediate.dense -> layer.output.dense
        if name == "output.dense":
            return module
    return None


def _attention(block: nn.Module, names: tuple[str, ...] = _ATTENTION_NAMES) -> nn.Module | None:
    for name, module in block.named_modules():
        if name.split(".")[-1] in names:
            return module
    return None


_HEAD_PARTS = (  # masked-LM heads whose parts hang on the model itself, in the forward's order
    ("generator_predictions", "generator_lm_head"),  # ELECTRA
    ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),  # DistilBERT
    ("head", "decoder"),  # ModernBERT (after its final_norm)
)


def _mlm_head(model: nn.Module) -> nn.Module | None:
    """A masked LM's prediction head: the module holding the unembedding (BERT, RoBERTa), or the
    chain of parts that hang on the model itself (ELECTRA, DistilBERT)."""
    if not type(model).__name__.endswith(("ForMaskedLM", "ForPreTraining")):
        return None
    for parts in _HEAD_PARTS:
        modules = [getattr(model, part, None) for part in parts]
        if all(isinstance(module, nn.Module) for module in modules):
            return nn.Sequential(*modules)
    unembedding = model.get_output_embeddings()
    for name, module in model.named_modules():
        if module is unembedding and "." in name:
            parent = model.get_submodule(name.rpartition(".")[0])
            return parent if parent is not model else None
    return None


def _logit_scale(model: nn.Module) -> float:
    """T5-style models scale the decoder output by d_model**-0.5 before a tied unembedding."""
    if getattr(model.config, "scale_decoder_outputs", False) and hasattr(model, "model_dim"):
        return float(model.model_dim) ** -0.5
    return 1.0


def _text_config(model: nn.Module):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _logit_multiplier(model: nn.Module) -> float:
    """What the model multiplies its logits by after the unembedding (1.0 for most families)."""
    config = _text_config(model)
    scaling = getattr(config, "logits_scaling", None)  # Granite divides
    if isinstance(scaling, (int, float)) and scaling not in (0, 1):
        return 1.0 / float(scaling)
    scale = getattr(model, "logit_scale", None)  # Cohere multiplies (a number on the model)
    return float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else 1.0


def _logit_softcap(model: nn.Module) -> float | None:
    cap = getattr(_text_config(model), "final_logit_softcapping", None)
    return float(cap) if isinstance(cap, (int, float)) and cap > 0 else None


def _logit_bias(model: nn.Module) -> torch.Tensor | None:
    bias = getattr(model, "final_logits_bias", None)  # BART, Pegasus, Marian: (1, vocab)
    return bias.reshape(-1) if isinstance(bias, torch.Tensor) else None


def _final_norm(model: nn.Module, blocks_name: str) -> nn.Module | None:
    """The norm beside the block list in the same parent (ln_f, norm, final_layer_norm, ...).

    Norms of the embeddings (names with 'emb') are skipped; when several remain, the one
    registered after the blocks wins (OPT registers its final norm before them).
    """
    parent_name, _, own = blocks_name.rpartition(".")
    parent = model.get_submodule(parent_name)
    before, after, seen_blocks = [], [], False
    for name, child in parent.named_children():
        if name == own:
            seen_blocks = True
        elif "norm" in type(child).__name__.lower() and "emb" not in name.lower():
            (after if seen_blocks else before).append(child)
    candidates = after or before
    return candidates[-1] if candidates else None


def _read_out_projection(model: nn.Module, blocks_name: str) -> nn.Module | None:
    """The ``project_out`` linear beside the block list (OPT with word_embed_proj_dim != hidden_size)."""
    parent = model.get_submodule(blocks_name.rpartition(".")[0])
    projection = getattr(parent, "project_out", None)
    return projection if isinstance(projection, nn.Linear) else None


def _stack_parts(model: nn.Module, name: str, blocks: nn.ModuleList):
    """(FFN sites, attention modules, why there are no FFN sites): a stack whose FFN output
    projection is not found still loads, without neuron sites (every other view works). A site is
    the FFN output projection, or an ``ExpertSite`` for a fused-expert MoE block."""
    attn = tuple(_attention(b) for b in blocks)
    found = [expert_site(b) for b in blocks]
    ffn = tuple(site or (None if why else _ffn_site(b)) for b, (site, why) in zip(blocks, found))
    widths = {_n_inputs(site) for site in ffn if site is not None}
    if all(site is not None for site in ffn) and len(widths) == 1:
        return ffn, attn, ""
    kind, why = f"{type(model).__name__}'s {name}", next((why for _, why in found if why), "")
    if why or len(widths) > 1:  # an expert layout not computed here, or dense and MoE layers mixed
        why = why or f"its layers have different neuron counts ({sorted(widths)}: dense and MoE mixed)"
        return (), attn, f"ecco_core cannot read neurons from {kind}: {why}"
    names = ", ".join(_FFN_OUT_NAMES + _FFN_OUT_IN_FFN)
    why = f"ecco_core did not find the feed-forward output projection in {name}[0] of "
    why += f"{type(model).__name__} (it looks for {names}), so this model has no neuron activations"
    return (), attn, why


def find_architecture(model: nn.Module) -> Architecture:
    """Locate embeddings, blocks, final norm, unembedding, FFN sites and attention modules.

    Raises:
        UnsupportedArchitectureError: naming every part that could not be found.
    """
    config = model.config
    n_layers = _n_layers(config)
    embeddings = model.get_input_embeddings()
    lists = _block_lists(model, n_layers)
    missing: list[str] = []
    if embeddings is None:
        missing.append("the token embeddings (get_input_embeddings() returned None)")
    if not lists:
        missing.append(f"a ModuleList of {n_layers} transformer blocks")
    if missing:
        raise _unsupported(config, missing)

    encoder = None
    if getattr(config, "is_encoder_decoder", False) and len(lists) >= 2:
        enc = [(n, m) for n, m in lists if "encoder" in n]
        dec = [(n, m) for n, m in lists if "decoder" in n]
        if enc and dec:
            encoder, lists = enc[0], dec
    blocks_name, blocks = lists[-1] if encoder else lists[0]
    ffn, attn, neuron_note = _stack_parts(model, blocks_name, blocks)
    enc_ffn, enc_attn = (), ()
    if encoder is not None:
        enc_ffn, enc_attn, enc_note = _stack_parts(model, encoder[0], encoder[1])
        neuron_note = neuron_note or enc_note
    return Architecture(
        family=str(getattr(config, "model_type", type(model).__name__)),
        embeddings=embeddings,
        blocks=blocks,
        final_norm=_final_norm(model, blocks_name),
        unembedding=model.get_output_embeddings(),
        ffn_sites=ffn,
        attentions=attn,
        d_model=_d_model(config, embeddings),
        n_neurons=_n_inputs(ffn[0]) if ffn else 0,
        neuron_note=neuron_note,
        encoder_blocks=encoder[1] if encoder else None,
        encoder_ffn_sites=enc_ffn,
        encoder_attentions=enc_attn,
        cross_attentions=tuple(_attention(b, _CROSS_ATTENTION_NAMES) for b in blocks) if encoder else (),
        mlm_head=_mlm_head(model),
        logit_scale=_logit_scale(model),
        logit_bias=_logit_bias(model),
        read_out_projection=_read_out_projection(model, blocks_name),
        logit_multiplier=_logit_multiplier(model),
        logit_softcap=_logit_softcap(model),
    )


def _n_inputs(projection: nn.Module | ExpertSite) -> int:
    if isinstance(projection, ExpertSite):
        return projection.n_neurons
    if _is_conv1d(projection):
        return int(projection.weight.shape[0])  # Conv1D stores (in, out)
    return int(projection.in_features)


def _unsupported(config, missing: list[str]) -> UnsupportedArchitectureError:
    family = getattr(config, "model_type", "this model")
    return UnsupportedArchitectureError(
        f"ecco_core cannot analyse '{family}': could not find " + "; ".join(missing) + "."
    )


@dataclass(frozen=True)
class LinearReadOut:
    """The read-out from residual states to logits as one matrix: ``logits = finish(prepare(h) @
    weight.T + bias)``, where ``prepare`` applies the final norm (for the normed lens) and the
    scale before the unembedding, and ``finish`` what the model does to its logits after it."""

    weight: torch.Tensor
    """(vocab, d_model) the unembedding weight."""
    bias: torch.Tensor | None
    """(vocab,) the unembedding's bias plus the model's logit bias, or None."""
    norm: nn.Module | None
    """The final norm, or None for the raw lens (or a model without one)."""
    projection: nn.Module | None = None
    """A linear map to the unembedding's width after the norm (OPT-350m), in both lens modes."""
    scale: float = 1.0
    multiplier: float = 1.0
    softcap: float | None = None

    def prepare(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_model) states through the final norm and the scale, in the weight's dtype."""
        hidden = hidden.to(self.weight.device, self.weight.dtype)
        if self.norm is not None:
            hidden = self.norm(hidden)
        if self.projection is not None:
            hidden = self.projection(hidden)
        return hidden * self.scale if self.scale != 1.0 else hidden

    def finish(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., vocab) unembedding outputs -> the model's logits (multiplier, soft-cap)."""
        return finish_logits(logits, self.multiplier, self.softcap)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_model) -> (..., vocab) logits."""
        return self.finish(nn.functional.linear(self.prepare(hidden), self.weight, self.bias))


def finish_logits(
    logits: torch.Tensor, multiplier: float = 1.0, softcap: float | None = None
) -> torch.Tensor:
    """What a model does to the unembedding's output: a factor, then a tanh soft-cap."""
    if multiplier != 1.0:
        logits = logits * multiplier
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def linear_read_out(arch: Architecture, normed: bool = True) -> LinearReadOut | None:
    """The read-out as one matrix, or None where it is not one (a masked LM's prediction head,
    an unembedding that is not a linear layer): those go through ``unembed``."""
    layer = arch.unembedding
    if not isinstance(layer, nn.Linear) or (normed and arch.mlm_head is not None):
        return None
    bias = layer.bias
    if arch.logit_bias is not None:
        extra = arch.logit_bias.reshape(-1).to(layer.weight.dtype)
        bias = extra if bias is None else bias + extra
    norm = arch.final_norm if normed else None
    projection, scale = arch.read_out_projection, arch.logit_scale
    return LinearReadOut(
        layer.weight, bias, norm, projection, scale, arch.logit_multiplier, arch.logit_softcap
    )


def unembed(arch: Architecture, hidden: torch.Tensor, normed: bool = True) -> torch.Tensor:
    """Project residual-stream states to vocabulary logits (the logit lens).

    Args:
        hidden: (..., d_model) states of any layer.
        normed: apply the model's final norm first (True), or project raw states (ecco's way).

    Returns:
        (..., vocab) logits.
    """
    if arch.unembedding is None:
        raise UnsupportedArchitectureError("This model has no unembedding (no language-model head).")
    read_out = linear_read_out(arch, normed)
    if read_out is not None:
        return read_out.logits(hidden)
    if normed and arch.final_norm is not None:
        hidden = arch.final_norm(hidden)
    if normed and arch.mlm_head is not None:  # ModernBERT: final norm, then the head
        return arch.mlm_head(hidden)
    if arch.read_out_projection is not None:
        hidden = arch.read_out_projection(hidden)
    logits = arch.unembedding(hidden * arch.logit_scale if arch.logit_scale != 1.0 else hidden)
    logits = logits if arch.logit_bias is None else logits + arch.logit_bias.to(logits.dtype)
    return finish_logits(logits, arch.logit_multiplier, arch.logit_softcap)
