"""A Llama causal LM in plain PyTorch, for the disk cache: HF's module names, shapes and numbers.

Importing transformers' Llama modeling code costs ~2 s per process (torch.distributed.tensor,
sympy, the auto-model scan). This module needs only torch, safetensors and a fast tokenizer, so
a second process loads the embedded model in about a second. The module tree mirrors
``LlamaForCausalLM`` (``model.layers[i].self_attn.q_proj``, ``mlp.down_proj``, ``model.norm``,
``lm_head``), so architecture discovery and hooks work unchanged; the arithmetic follows HF's
(float32 RoPE tables and RMSNorm variance, SDPA with GQA or eager float32 softmax) and
``generate`` draws the same tokens as HF's for the same seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")

_DEFAULTS = {  # LlamaConfig's defaults for keys a config.json may leave out
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,
    "head_dim": None,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "pad_token_id": None,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "attention_bias": False,
    "mlp_bias": False,
    "use_cache": True,
}
_HF_GENERATION_DEFAULTS = {
    "max_length": 20,
    "do_sample": False,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
}
# generation_config.json keys whose non-default values would change HF's tokens (we do not apply them)
_NEUTRAL_GENERATION = {
    "repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "num_beams": (None, 1),
    "min_p": (None,),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "top_h": (None,),
    "bad_words_ids": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "min_length": (None, 0),
    "renormalize_logits": (None, False),
    "guidance_scale": (None, 1.0),
    "prefill_chunk_size": (None,),
}


def supports(config: dict, generation: dict | None = None) -> bool:
    """Whether this module reproduces a checkpoint exactly: plain Llama (default RoPE, SiLU, no
    biases, no tensor-parallel split, no quantisation); with ``generation``, whether its
    generation_config.json sets nothing that ``generate`` here would ignore."""
    ropes = [config[key] for key in ("rope_scaling", "rope_parameters") if config.get(key) is not None]
    default_rope = all(
        isinstance(rope, dict) and rope.get("rope_type", rope.get("type", "default")) == "default"
        for rope in ropes
    )
    architectures = config.get("architectures") or ["LlamaForCausalLM"]
    plain = (
        config.get("model_type") == "llama"
        and "LlamaForCausalLM" in architectures
        and default_rope
        and config.get("partial_rotary_factor", 1.0) == 1.0
        and not config.get("attention_bias", False)
        and not config.get("mlp_bias", False)
        and (config.get("pretraining_tp") or 1) <= 1
        and config.get("hidden_act", "silu") == "silu"
        and "quantization_config" not in config
    )
    if not plain or generation is None:
        return plain
    return all(generation.get(key) in neutral for key, neutral in _NEUTRAL_GENERATION.items())


class NativeLlamaConfig:
    """config.json as attributes, with LlamaConfig's defaults and the few fields ecco_core reads."""

    model_type = "llama"
    is_encoder_decoder = False

    def __init__(self, values: dict) -> None:
        self.__dict__.update(_DEFAULTS)
        self.__dict__.update(values)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        rope = values.get("rope_parameters") or {}
        self.rope_theta = float(rope.get("rope_theta", values.get("rope_theta", 10000.0)))
        self._attn_implementation = "sdpa"

    def get_text_config(self, *_args, **_kwargs) -> NativeLlamaConfig:
        return self

    def to_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}

    def __repr__(self) -> str:
        return f"NativeLlamaConfig({json.dumps(self.to_dict(), sort_keys=True, default=str)})"


class GenerationSettings:
    """generation_config.json as attributes (absent keys are absent, as ``getattr`` defaults expect)."""

    def __init__(self, values: dict) -> None:
        self.__dict__.update(values)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"GenerationSettings({self.__dict__})"


@dataclass
class CausalLMOutput:
    """What ``forward`` returns (the fields of HF's ``CausalLMOutputWithPast`` that ecco_core reads)."""

    logits: torch.Tensor
    """(batch, kept rows, vocab)."""
    past_key_values: KVCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    """layer + 1 x (batch, pos, d_model) when asked for; the last entry is normed, as HF's."""
    attentions: tuple[torch.Tensor, ...] | None = None
    """layer x (batch, head, q, k) when asked for under eager attention."""


class KVCache:
    """Keys and values per layer, (batch, kv_head, pos, head_dim), grown by concatenation."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def update(self, key: torch.Tensor, value: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        if layer in self.keys:
            key = torch.cat([self.keys[layer], key], dim=-2)
            value = torch.cat([self.values[layer], value], dim=-2)
        self.keys[layer], self.values[layer] = key, value
        return key, value

    def get_seq_length(self, layer: int = 0) -> int:
        return self.keys[layer].shape[-2] if layer in self.keys else 0


class RMSNorm(nn.Module):
    """HF's LlamaRMSNorm: variance in float32, then ``weight * x.to(input dtype)``."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden.to(input_dtype)


class RotaryEmbedding(nn.Module):
    """Default RoPE; the inverse frequencies stay float32 whatever the weights' dtype."""

    def __init__(self, config: NativeLlamaConfig) -> None:
        super().__init__()
        dim = config.head_dim
        self.inv_freq_cpu = 1.0 / (
            config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float, device="cpu") / dim)
        )
        self._on_device: dict[torch.device, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch or 1, pos) positions -> cos, sin: (batch or 1, pos, head_dim) in ``x``'s dtype."""
        inv_freq = self._on_device.get(x.device)
        if inv_freq is None:
            inv_freq = self._on_device.setdefault(x.device, self.inv_freq_cpu.to(x.device))
        freqs = position_ids[..., None].float() * inv_freq  # (b, pos, head_dim / 2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (b, pos, head_dim)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(hidden: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(batch, kv_head, pos, d) -> (batch, kv_head * n_rep, pos, d), each kv head repeated in place."""
    if n_rep == 1:
        return hidden
    batch, kv_heads, length, dim = hidden.shape
    hidden = hidden[:, :, None].expand(batch, kv_heads, n_rep, length, dim)
    return hidden.reshape(batch, kv_heads * n_rep, length, dim)


@dataclass
class AttentionMask:
    """The mask every layer uses in one forward: None with ``is_causal`` (SDPA's own causal
    kernel), a bool (batch or 1, 1, q, k) mask for SDPA, or an additive float one for eager."""

    mask: torch.Tensor | None
    is_causal: bool


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE; returns ``(output, weights or None)`` like HF's."""

    def __init__(self, config: NativeLlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        d, kv = config.hidden_size, config.num_key_value_heads * self.head_dim
        self.q_proj = nn.Linear(d, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, d, bias=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: AttentionMask,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]  # (batch, q)
        shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # (b, head, q, d_head)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)  # (b, kv_head, q, d_head)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)  # (b or 1, 1, q, d_head)
        query = query * cos + rotate_half(query) * sin
        key = key * cos + rotate_half(key) * sin
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # (b, kv_head, k, d_head)
        if self.config._attn_implementation == "eager":
            output, weights = self._eager(query, key, value, attention_mask.mask)
        else:
            output, weights = self._sdpa(query, key, value, attention_mask), None
        output = output.reshape(*input_shape, -1).contiguous()  # (b, q, head * d_head)
        return self.o_proj(output), weights

    def _eager(self, query, key, value, mask):
        key, value = repeat_kv(key, self.num_key_value_groups), repeat_kv(value, self.num_key_value_groups)
        scores = torch.matmul(query, key.transpose(2, 3)) * self.scaling  # (b, head, q, k)
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (b, q, head, d_head)
        return output, weights

    def _sdpa(self, query, key, value, attention_mask: AttentionMask) -> torch.Tensor:
        extra = {}
        if self.num_key_value_groups > 1:
            if attention_mask.mask is None:
                extra["enable_gqa"] = True
            else:
                key = repeat_kv(key, self.num_key_value_groups)
                value = repeat_kv(value, self.num_key_value_groups)
        output = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask.mask,
            dropout_p=0.0,
            scale=self.scaling,
            is_causal=attention_mask.is_causal,
            **extra,
        )  # (b, head, q, d_head)
        return output.transpose(1, 2).contiguous()  # (b, q, head, d_head)


class MLP(nn.Module):
    """SiLU-gated feed-forward; ``down_proj``'s input is the neuron activation."""

    def __init__(self, config: NativeLlamaConfig) -> None:
        super().__init__()
        d, inner = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, inner, bias=False)
        self.up_proj = nn.Linear(d, inner, bias=False)
        self.down_proj = nn.Linear(inner, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block: ``h + attn(norm(h))``, then ``h + mlp(norm(h))``; returns a tensor."""

    def __init__(self, config: NativeLlamaConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = Attention(config, layer_idx)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: AttentionMask,
        cache: KVCache | None = None,
        weights_out: list | None = None,
    ) -> torch.Tensor:
        attended, weights = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings, attention_mask, cache
        )
        if weights_out is not None:
            weights_out.append(weights)
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states))


class LlamaModel(nn.Module):
    """Embeddings, the decoder layers and the final norm (HF's ``model`` attribute)."""

    def __init__(self, config: NativeLlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = _embedding(config)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)


def _embedding(config: NativeLlamaConfig) -> nn.Embedding:
    """The token embeddings; built on the meta device it is left uninitialised (``normal_`` on meta
    would import torch._dynamo, ~1 s)."""
    weight = torch.empty(config.vocab_size, config.hidden_size)
    if weight.device.type != "meta":
        nn.init.normal_(weight, std=getattr(config, "initializer_range", 0.02))
    return nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id, _weight=weight)


def _attention_mask(
    config: NativeLlamaConfig, embeds: torch.Tensor, padding: torch.Tensor | None, past: int
) -> AttentionMask:
    """The causal (and padding) mask for ``embeds`` (batch, q, d) after ``past`` cached positions.

    Like HF: SDPA without padding uses its causal kernel (no mask) when q == 1 or nothing is
    cached; eager always adds a float mask (0 where seen, the dtype's minimum elsewhere).
    """
    q_len = embeds.shape[1]
    kv_len = past + q_len
    if padding is not None and bool(padding.all()):
        padding = None
    eager = config._attn_implementation == "eager"
    if not eager and padding is None and (q_len == 1 or past == 0):
        return AttentionMask(None, q_len > 1)
    queries = torch.arange(past, kv_len, device=embeds.device)[:, None]
    seen = torch.arange(kv_len, device=embeds.device)[None] <= queries  # (q, k)
    seen = seen[None, None]  # (1, 1, q, k)
    if padding is not None:
        seen = seen & padding[:, None, None, -kv_len:].bool()  # (b, 1, q, k)
    if not eager:
        return AttentionMask(seen, False)
    zero = torch.zeros((), dtype=embeds.dtype, device=embeds.device)
    return AttentionMask(torch.where(seen, zero, torch.finfo(embeds.dtype).min), False)


def _keep_rows(hidden: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    """HF's ``slice_logits_to_keep``: an int keeps the last n rows (0: all), a tensor picks rows."""
    if isinstance(logits_to_keep, torch.Tensor) and logits_to_keep.ndim == 2:
        if logits_to_keep.dtype == torch.bool:
            return hidden[logits_to_keep]
        return torch.take_along_dim(hidden, logits_to_keep[..., None], dim=1)
    if isinstance(logits_to_keep, int):
        logits_to_keep = slice(-logits_to_keep, None)
    return hidden[:, logits_to_keep, :]


class NativeLlamaForCausalLM(nn.Module):
    """A Llama causal LM with HF's module tree and the calls ecco_core makes on a model.

    ``forward`` and ``generate`` take HF's argument names; ``config`` and ``generation_config``
    are read from the checkpoint's json files.
    """

    def __init__(
        self, config: NativeLlamaConfig, generation_config: GenerationSettings | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.generation_config = generation_config or GenerationSettings(
            {k: getattr(config, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        )
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_attn_implementation(self, implementation: str) -> None:
        """'sdpa' (fused, no weights) or 'eager' (explicit softmax; attention modules return weights)."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLEMENTATIONS}")
        self.config._attn_implementation = implementation

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = False,
        logits_to_keep: int | torch.Tensor = 0,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        cache: KVCache | None = None,
        **_ignored,
    ) -> CausalLMOutput:
        """Logits for ``input_ids`` (batch, q) or ``inputs_embeds`` (batch, q, d_model).

        Args:
            attention_mask: (batch, past + q) 1 for real tokens, 0 for padding (optional).
            past_key_values: a ``KVCache`` from an earlier call (``cache`` is HF 5's name for it).
            use_cache: return the cache (a new one when none was given).
            logits_to_keep: last n rows (0: all), or a 1-D tensor of row indices; the unembedding
                runs on exactly these rows.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        cache = past_key_values if past_key_values is not None else cache
        if use_cache and cache is None:
            cache = KVCache()
        hidden = self.model.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (b, q, d)
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + hidden.shape[1], device=hidden.device)[None]  # (1, q)
        mask = _attention_mask(self.config, hidden, attention_mask, past)
        rope = self.model.rotary_emb(hidden, position_ids)
        states = [hidden] if output_hidden_states else None
        weights: list | None = [] if output_attentions else None
        for layer in self.model.layers[: self.config.num_hidden_layers]:
            hidden = layer(hidden, rope, mask, cache, weights)
            if states is not None:
                states.append(hidden)
        hidden = self.model.norm(hidden)
        if states is not None:
            states[-1] = hidden
        logits = self.lm_head(_keep_rows(hidden, logits_to_keep))  # (b, kept, vocab)
        return CausalLMOutput(
            logits,
            cache if use_cache else None,
            tuple(states) if states is not None else None,
            tuple(weights) if weights is not None else None,
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
        min_new_tokens: int | None = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        streamer=None,
        max_length: int | None = None,
        **_ignored,
    ) -> torch.Tensor:
        """Greedy or sampled continuation with the KV cache, as HF's ``generate`` does it.

        Unset arguments come from ``generation_config``, then HF's defaults. Sampling applies
        temperature, top-k, then top-p to float32 logits and draws with ``torch.multinomial``,
        so a seed gives HF's tokens. A sequence stops at an EOS id (once ``min_new_tokens`` are
        out); finished rows of a batch are padded.

        Returns:
            (batch, prompt + new) token ids.
        """
        setting = self._generation_setting
        do_sample = setting("do_sample", do_sample)
        eos = setting("eos_token_id", eos_token_id)
        eos = None if eos is None else torch.as_tensor([eos] if isinstance(eos, int) else list(eos))
        pad = setting("pad_token_id", pad_token_id)
        if pad is None and eos is not None:
            pad = int(eos[0])
        n_prompt = input_ids.shape[1]
        if max_new_tokens is None:
            max_new_tokens = setting("max_length", max_length) - n_prompt
        sampling = (setting("temperature", temperature), setting("top_k", top_k), setting("top_p", top_p))
        if streamer is not None:
            streamer.put(input_ids.cpu())
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding: SDPA's causal kernel, as HF
        ids = input_ids
        unfinished = torch.ones(ids.shape[0], dtype=torch.long, device=ids.device)
        eos = eos.to(ids.device) if eos is not None else None
        cache, step_ids = KVCache(), ids
        mask = attention_mask
        positions = _positions(mask, n_prompt) if mask is not None else None
        for _ in range(max(max_new_tokens, 0)):
            out = self(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            scores = out.logits[:, -1].to(copy=True, dtype=torch.float32)  # (b, vocab)
            if min_new_tokens and eos is not None and ids.shape[1] - n_prompt < min_new_tokens:
                scores = _forbid(scores, eos)
            next_ids = _sample(scores, *sampling) if do_sample else torch.argmax(scores, dim=-1)  # (b,)
            if eos is not None:
                next_ids = next_ids * unfinished + pad * (1 - unfinished)
            ids = torch.cat([ids, next_ids[:, None]], dim=-1)
            if streamer is not None:
                streamer.put(next_ids.cpu())
            if eos is not None:
                unfinished = unfinished & ~torch.isin(next_ids, eos)
                if unfinished.max() == 0:
                    break
            step_ids = next_ids[:, None]  # (b, 1)
            if mask is not None:
                mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
                positions = positions[:, -1:] + 1
        if streamer is not None:
            streamer.end()
        return ids

    def _generation_setting(self, name: str, given):
        if given is not None:
            return given
        value = getattr(self.generation_config, name, None)
        if value is None and name in ("eos_token_id", "pad_token_id"):
            value = getattr(self.config, name, None)
        return _HF_GENERATION_DEFAULTS.get(name) if value is None else value


def _positions(mask: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """(batch, prompt) position ids that skip left padding, as HF's generate computes them."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 1)[:, -n_prompt:]


def _forbid(scores: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    vocab = torch.arange(scores.shape[-1], device=scores.device)
    return torch.where(torch.isin(vocab, token_ids), -math.inf, scores)


def _sample(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """(b, vocab) float32 logits -> (b,) ids: HF's temperature, top-k, top-p warpers, then multinomial."""
    if temperature is not None and temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(max(top_k, 1), scores.shape[-1])
        scores = scores.masked_fill(scores < torch.topk(scores, k)[0][..., -1, None], -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        dropped = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - float(top_p))
        dropped[..., -1:] = 0  # keep at least one token
        scores = scores.masked_fill(dropped.scatter(1, order, dropped), -math.inf)
    probs = F.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)


def read_config(folder: Path) -> dict:
    """config.json of a checkpoint folder as a dict."""
    return json.loads((Path(folder) / "config.json").read_text())


def read_generation_config(folder: Path) -> dict | None:
    path = Path(folder) / "generation_config.json"
    return json.loads(path.read_text()) if path.exists() else None


def load_native(folder: str | Path, dtype: torch.dtype = torch.float32):
    """Model and tokenizer from a saved Llama checkpoint folder, without transformers' model code.

    Returns:
        (NativeLlamaForCausalLM in eval mode, PreTrainedTokenizerFast)

    Raises:
        ValueError: the config is not one ``supports`` accepts, or the weights do not fit it.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    values = read_config(folder)
    generation = read_generation_config(folder)
    if not supports(values, generation):
        raise ValueError(f"{folder} is not a plain Llama checkpoint this module reproduces")
    config = NativeLlamaConfig(values)
    with torch.device("meta"):
        model = NativeLlamaForCausalLM(config, GenerationSettings(generation) if generation else None)
    state = load_file(folder / "model.safetensors")
    state = {k: v.to(dtype) for k, v in state.items() if not k.endswith("rotary_emb.inv_freq")}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        missing = [key for key in missing if key != "lm_head.weight"]
    if missing or unexpected:
        raise ValueError(f"weights in {folder} do not fit: missing {missing}, unexpected {unexpected}")
    return model.eval(), load_tokenizer(folder)


def load_tokenizer(folder: str | Path):
    """The fast tokenizer saved in ``folder`` (what AutoTokenizer gives, without its import chain)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(folder))
