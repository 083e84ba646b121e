"""Tiny random-init models of each supported family, with a character tokenizer built locally."""

from __future__ import annotations

import string

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from ecco_core.facade import LM
from ecco_core.model.weights import LoadedWeights

SPECIALS = ["<unk>", "<bos>", "<eos>", "<pad>"]
CHARS = list(string.printable)


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable character plus <unk> <bos> <eos> <pad> (ids 0-3)."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


VOCAB = len(SPECIALS) + len(CHARS)
_COMMON = {"vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
FAMILIES: dict[str, dict] = {
    "gpt2": {"n_embd": 32, "n_layer": 3, "n_head": 4, "n_positions": 128},
    "gpt_neo": {
        "hidden_size": 32,
        "num_layers": 3,
        "num_heads": 4,
        "max_position_embeddings": 128,
        "attention_types": [[["global", "local"], 1], [["global"], 1]],
        "window_size": 16,
    },
    "gpt_neox": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
    "opt": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "ffn_dim": 64,
        "max_position_embeddings": 128,
        "word_embed_proj_dim": 32,
    },
    "llama": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "tie_word_embeddings": True,
    },
    "mistral": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
    "qwen2": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
    "gemma": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "head_dim": 8,
    },
    "phi": {
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
    },
}


def tiny_model(family: str, seed: int = 0) -> torch.nn.Module:
    """A random-init causal LM of ``family`` (3 layers, d_model 32), from config: no download."""
    config = AutoConfig.for_model(family, **_COMMON, **FAMILIES[family])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return model.eval()


def tiny_lm(family: str = "llama", seed: int = 0) -> LM:
    """A tiny random model of ``family`` wrapped as an LM on the CPU."""
    weights = LoadedWeights(tiny_model(family, seed), char_tokenizer(), f"tiny-{family}", "random", "")
    return LM(weights, torch.device("cpu"))


def save_tiny_folder(folder, family: str = "llama", max_positions: int = 4096) -> str:
    """A tiny random model with the character tokenizer saved to ``folder`` (a folder the app's
    model field, or a fake hub, can serve); returns its path as text."""
    model = tiny_model(family)
    model.config.max_position_embeddings = max_positions
    model.save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return str(folder)
