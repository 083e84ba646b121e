"""The test matrix's models: one tiny random-init model per architecture family (2 layers, width
64), built from its transformers config at test time (no download), every weight drawn at random
(norm gains and biases too, so a dropped gain, bias or scale shows), saved to a folder with the
local character tokenizer and loaded the way a user would: ``ecco_core.from_pretrained(folder)``."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

from tests.tiny import _COMMON, char_tokenizer

WIDTH, LAYERS, HEADS, FFN = 64, 2, 4, 128
_DECODER = {  # the shape keys most decoder configs read
    "hidden_size": WIDTH,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": 2,
    "intermediate_size": FFN,
    "max_position_embeddings": 128,
}
_MOE = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
CAUSAL: dict[str, dict] = {
    "gpt2": {"n_embd": WIDTH, "n_layer": LAYERS, "n_head": HEADS, "n_positions": 128},
    "gpt_neox": {**_DECODER},
    "gptj": {"n_embd": WIDTH, "n_layer": LAYERS, "n_head": HEADS, "n_positions": 128, "rotary_dim": 8},
    "opt": {**_DECODER, "ffn_dim": FFN, "word_embed_proj_dim": WIDTH},
    "opt-350m": {**_DECODER, "ffn_dim": FFN, "word_embed_proj_dim": 32, "do_layer_norm_before": False},
    "bloom": {"hidden_size": WIDTH, "n_layer": LAYERS, "n_head": HEADS},
    "falcon": {**_DECODER, "new_decoder_architecture": True, "num_kv_heads": 2},
    "phi": {**_DECODER},
    "phi3": {**_DECODER},
    "qwen2": {**_DECODER},
    "qwen3": {**_DECODER, "head_dim": 16},
    "qwen2_moe": {**_DECODER, **_MOE, "shared_expert_intermediate_size": 48},
    "qwen3_moe": {**_DECODER, **_MOE, "head_dim": 16},
    "mixtral": {**_DECODER, "num_local_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 32},
    "gemma": {**_DECODER, "head_dim": 16},
    "gemma2": {**_DECODER, "head_dim": 16, "final_logit_softcapping": 1.5, "query_pre_attn_scalar": 16},
    "gemma3_text": {**_DECODER, "head_dim": 16, "final_logit_softcapping": 1.5, "query_pre_attn_scalar": 16},
    "mistral": {**_DECODER},
    "llama": {**_DECODER},
    "olmo": {**_DECODER},
    "olmo2": {**_DECODER},
    "stablelm": {**_DECODER},
    "starcoder2": {**_DECODER},
    "granite": {**_DECODER, "logits_scaling": 4.0, "embedding_multiplier": 2.0, "residual_multiplier": 0.5},
    "cohere": {**_DECODER, "logit_scale": 0.25},
    "smollm3": {**_DECODER},
    "gpt_bigcode": {"n_embd": WIDTH, "n_layer": LAYERS, "n_head": HEADS, "n_positions": 128},
    "codegen": {"n_embd": WIDTH, "n_layer": LAYERS, "n_head": HEADS, "n_positions": 128, "rotary_dim": 8},
    "mpt": {"d_model": WIDTH, "n_layers": LAYERS, "n_heads": HEADS, "max_seq_len": 128},
}
_ENCODER = {
    "hidden_size": WIDTH,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": FFN,
    "max_position_embeddings": 128,
}
MASKED: dict[str, dict] = {
    "bert": {**_ENCODER},
    "roberta": {**_ENCODER, "max_position_embeddings": 140},
    "distilbert": {"dim": WIDTH, "n_layers": LAYERS, "n_heads": HEADS, "hidden_dim": FFN},
    "electra": {**_ENCODER, "embedding_size": 32},
    "deberta-v2": {**_ENCODER},
    "modernbert": {
        **_ENCODER,
        "global_attn_every_n_layers": 1,
        "local_attention": 16,
        "cls_token_id": 1,
        "sep_token_id": 2,
    },
}
_SEQ2SEQ = {
    "d_model": WIDTH,
    "encoder_layers": LAYERS,
    "decoder_layers": LAYERS,
    "encoder_attention_heads": HEADS,
    "decoder_attention_heads": HEADS,
    "encoder_ffn_dim": FFN,
    "decoder_ffn_dim": FFN,
    "max_position_embeddings": 128,
    "decoder_start_token_id": 2,
    "forced_eos_token_id": None,
}
_T5 = {"d_model": WIDTH, "d_kv": 16, "d_ff": FFN, "num_layers": LAYERS, "num_heads": HEADS}
ENC_DEC: dict[str, dict] = {
    "t5": {**_T5, "decoder_start_token_id": 3},
    "mt5": {**_T5, "decoder_start_token_id": 3},
    "bart": {**_SEQ2SEQ},
    "pegasus": {**_SEQ2SEQ, "decoder_start_token_id": 3},
    "marian": {**_SEQ2SEQ, "decoder_start_token_id": 3, "share_encoder_decoder_embeddings": True},
}
FAMILIES = {**{f: "causal" for f in CAUSAL}, **{f: "mlm" for f in MASKED}, **{f: "enc-dec" for f in ENC_DEC}}
_AUTO = {"causal": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM, "enc-dec": AutoModelForSeq2SeqLM}


def config_of(family: str):
    kind = FAMILIES[family]
    extras = {"causal": CAUSAL, "mlm": MASKED, "enc-dec": ENC_DEC}[kind][family]
    model_type = "opt" if family == "opt-350m" else family
    return AutoConfig.for_model(model_type, **_COMMON, **extras)


def random_drawn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter and float buffer-free weight drawn at random: norm gains near 1 (1 + 0.3 z),
    everything else 0.3 z (biases, scales, final_logits_bias included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.copy_(1 + 0.3 * noise if "norm" in name.lower() or "ln" in name else 0.3 * noise)
        bias = getattr(model, "final_logits_bias", None)
        if isinstance(bias, torch.Tensor):
            bias.copy_(0.3 * torch.randn(bias.shape, generator=generator))
    return model.eval()


def build(family: str, seed: int = 0) -> torch.nn.Module:
    """The family's tiny model, random-drawn, in eval mode (float32, CPU)."""
    torch.manual_seed(seed)
    model = _AUTO[FAMILIES[family]].from_config(config_of(family))
    return random_drawn(model, seed + 1)


def save(family: str, folder: Path, seed: int = 0) -> Path:
    """Write the family's tiny model and the character tokenizer to ``folder`` (a user's folder)."""
    model = build(family, seed)
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder


FFN_SITE = {  # family -> the FFN output projection in block 0 (its input: the neurons), by name
    **dict.fromkeys(["gpt2", "starcoder2", "gpt_bigcode"], "mlp.c_proj"),
    **dict.fromkeys(["gpt_neox", "bloom", "falcon"], "mlp.dense_4h_to_h"),
    **dict.fromkeys(["gptj", "codegen"], "mlp.fc_out"),
    **dict.fromkeys(["opt", "opt-350m", "bart", "pegasus", "marian"], "fc2"),
    "phi": "mlp.fc2",
    **dict.fromkeys(
        ["phi3", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "mistral", "llama", "olmo"]
        + ["olmo2", "stablelm", "granite", "cohere", "smollm3"],
        "mlp.down_proj",
    ),
    "mpt": "ffn.down_proj",
    **dict.fromkeys(["bert", "roberta", "electra", "deberta-v2"], "output.dense"),
    "distilbert": "ffn.lin2",
    "modernbert": "mlp.Wo",
    **dict.fromkeys(["t5", "mt5"], "layer.1.DenseReluDense.wo"),
}
MOE = ("mixtral", "qwen2_moe", "qwen3_moe")
"""Families whose neurons are router-weighted expert units (tests/test_matrix_moe.py checks them)."""


def float64_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The reference: the same weights in float64, eager attention (which returns its weights) and
    eager experts (a plain loop over experts; grouped matmuls take no float64)."""
    model64 = copy.deepcopy(model).double().eval()
    for setting in ("set_attn_implementation", "set_experts_implementation"):
        # Falcon refuses a run-time switch (output_attentions=True still returns weights)
        with contextlib.suppress(ValueError, NotImplementedError):
            getattr(model64, setting)("eager")
    return model64
