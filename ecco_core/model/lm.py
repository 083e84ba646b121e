"""A loaded model: generation with the KV cache, then one capture forward over the whole sequence."""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import (
    EmptyPromptError,
    InputError,
    ModelTypeError,
    NumericalError,
    PromptTooLongError,
)
from .architecture import Architecture, find_architecture, unembed
from .capture import (
    AttentionImplementation,
    Capture,
    attention_recording,
    recorded_arrays,
    recording,
    routing_extras,
    within,
)
from .sampling import sampling_processors
from .stepping import Generation, Progress
from .tokens import display_tokens, special_mask
from .weights import LoadedWeights

MAX_GENERATE = 1024


class LanguageModel:
    """A loaded model with its architecture parts, a lock, and ecco's ``generate`` / ``__call__``.

    One lock per loaded model guards everything that registers hooks, switches the attention
    implementation or needs gradients, so sessions can share one cached model.
    """

    def __init__(self, weights: LoadedWeights, device: torch.device) -> None:
        self.model = weights.model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.tokenizer = weights.tokenizer
        self.name = weights.name
        self.source = weights.source
        self.device = device
        self.arch: Architecture = find_architecture(self.model)
        self.lock = threading.RLock()
        self._no_logits = {"logits_to_keep": 1} if _accepts(self.model.forward, "logits_to_keep") else {}
        """Keyword that spares the capture forward the full-vocabulary logits it never reads."""
        config = self.model.config
        if getattr(config, "is_encoder_decoder", False):
            self.model_type = "enc-dec"
        elif hasattr(self.model, "generate") and self.arch.unembedding is not None and _is_causal(self.model):
            self.model_type = "causal"
        else:
            self.model_type = "mlm"

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.name!r}, {self.model_type}, {self.arch.n_layers} layers, {self.device})"

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def context_length(self) -> int:
        config = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_seq_len", "n_ctx"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return 1 << 20

    def encode(self, text: str | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """(pos,) token ids of a prompt given as text or as ids.

        Raises:
            EmptyPromptError: empty or whitespace-only text, or no ids.
            InputError: ids outside the vocabulary.
        """
        if isinstance(text, str):
            if not text.strip():
                raise EmptyPromptError("The prompt is empty: type some text to analyse.")
            ids = self.tokenizer(text, return_tensors="pt").input_ids[0]
        else:
            ids = torch.as_tensor(np.asarray(text), dtype=torch.long).flatten()
            vocab = self.model.get_input_embeddings().num_embeddings
            if ids.numel() and (ids.min() < 0 or ids.max() >= vocab):
                raise InputError(f"Token ids must lie in 0..{vocab - 1} for this model.")
        if ids.numel() == 0:
            raise EmptyPromptError("The prompt has no tokens: type some text to analyse.")
        return ids

    def _check_length(self, n_input: int, n_new: int) -> None:
        limit = self.context_length
        if n_input + n_new > limit:
            raise PromptTooLongError(
                f"The prompt is {n_input} tokens and {n_new} more were asked for, but "
                f"{self.name} reads at most {limit} tokens. Shorten the prompt."
            )

    def unembed(self, hidden: torch.Tensor, normed: bool = True) -> torch.Tensor:
        """(..., d_model) -> (..., vocab) logits through the final norm and unembedding."""
        return unembed(self.arch, hidden.to(self.device, self.dtype), normed)

    def generate(
        self,
        text: str | Sequence[int] | torch.Tensor,
        generate: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        progress: Progress | None = None,
        attention: bool = False,
        activation_layers: Sequence[int] | None = None,
        attention_layers: Sequence[int] | None = None,
    ) -> Capture:
        """Generate ``generate`` tokens after ``text``, then capture everything in one forward.

        Args:
            attention: capture attention weights (the capture forward runs eager attention).
            activation_layers: layers whose FFN activations to keep (None: all).
            attention_layers: layers whose attention to keep (None: all); bounds memory on long
                prompts, since each kept layer holds (head, pos, pos) floats.

        On an encoder-decoder the prompt is the encoder input and the generated tokens (after the
        decoder start token) are the decoder's; see ``OutputSeq`` for the position convention.

        Raises:
            EmptyPromptError, PromptTooLongError, ModelTypeError (the settings are checked by
            ``ecco_core.analysis.checks.calls``, which the facade calls first).
        """
        generation = self.start_generation(
            text, generate, do_sample, temperature, top_k, top_p, seed, activation_layers, attention_layers
        )
        generation.step(None, progress)
        return generation.capture(attention, activation_layers, attention_layers, progress)

    def start_generation(
        self,
        text: str | Sequence[int] | torch.Tensor,
        generate: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        activation_layers: Sequence[int] | None = None,
        attention_layers: Sequence[int] | None = None,
    ) -> Generation:
        """A generation to run a few tokens at a time (``Generation.step``), then capture; the
        arguments and errors are ``generate``'s. Nothing runs on the model until the first step."""
        if self.model_type == "mlm":
            raise ModelTypeError(f"{self.name} is a masked LM: it cannot generate. Use lm(text).")
        ids = self.encode(text)
        self._check_length(len(ids), generate)
        self._check_layers(activation_layers, attention_layers)
        # Sampling draws from a generator of this call (never the process-wide one), so a seeded
        # run gives the same tokens whatever else samples at the same time.
        processors = sampling_processors(self.device, temperature, top_k, top_p, seed) if do_sample else None
        return Generation(self, ids, generate, processors)

    def __call__(
        self,
        text: str | Sequence[int] | torch.Tensor,
        attention: bool = False,
        activation_layers: Sequence[int] | None = None,
        attention_layers: Sequence[int] | None = None,
    ) -> Capture:
        """Analyse text without generating: one capture forward.

        On an encoder-decoder the text is the encoder input and the decoder reads only its start
        token.
        """
        ids = self.encode(text)
        self._check_length(len(ids), 0)
        self._check_layers(activation_layers, attention_layers)
        if self.model_type == "enc-dec":
            start = torch.tensor([self._decoder_start_id()])
            return self.capture_enc_dec(ids, start, attention, activation_layers, attention_layers)
        return self.capture(ids, len(ids), attention, activation_layers, attention_layers=attention_layers)

    def _check_layers(self, *layer_lists: Sequence[int] | None) -> None:
        n = self.arch.n_layers
        if self.arch.encoder_blocks is not None:
            n = max(n, len(self.arch.encoder_blocks))
        for layers in layer_lists:
            bad = [layer for layer in (() if layers is None else layers) if not 0 <= int(layer) < n]
            if bad:
                raise InputError(f"Layers {bad} do not exist: {self.name} has layers 0..{n - 1}.")

    def _decoder_start_id(self) -> int:
        for config in (getattr(self.model, "generation_config", None), self.model.config):
            value = getattr(config, "decoder_start_token_id", None)
            if isinstance(value, int):
                return value
        return int(self._pad_id() or 0)

    def _pad_id(self) -> int | None:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def capture(
        self,
        ids: torch.Tensor,
        n_input: int,
        attention: bool = False,
        activation_layers: Sequence[int] | None = None,
        progress: Progress | None = None,
        attention_layers: Sequence[int] | None = None,
    ) -> Capture:
        """One forward over ``ids`` (pos,) recording hidden states, FFN activations, attention."""
        if progress:
            progress("capture", 0.0)
        arch = self.arch
        with self.lock, torch.inference_mode(), self._attention_impl("eager" if attention else None):
            sites = arch.attentions if attention else ()
            with recording(arch.blocks, arch.ffn_sites, activation_layers, sites, attention_layers) as rec:
                self.model(input_ids=ids[None].to(self.device), use_cache=False, **self._no_logits)
            hidden, acts, attn = recorded_arrays(rec)
            kept = sorted(rec.attn)
            if attention and attn is None:  # no weights reached the hooks (Falcon, DeBERTa-v2)
                attn, kept = self._returned_attentions(ids, attention_layers)
        self._check_finite(hidden, acts)
        if progress:
            progress("capture", 1.0)
        ids_np = ids.numpy().astype(np.int64)
        return Capture(
            token_ids=ids_np,
            tokens=display_tokens(self.tokenizer, ids_np),
            n_input_tokens=int(n_input),
            model_type=self.model_type,
            model_name=self.name,
            hidden_states=hidden,
            activations=acts,
            activation_layers=sorted(rec.ffn),
            attentions=attn,
            special=special_mask(self.tokenizer, ids_np),
            extras=routing_extras(rec, arch.ffn_sites[0] if arch.ffn_sites else None),
            run_id=uuid.uuid4().hex,
            attention_layers=kept,
        )

    def _returned_attentions(self, ids: torch.Tensor, layers: Sequence[int] | None):
        """(layer, head, pos, pos) attention weights the model returns with ``output_attentions``
        (for models whose attention modules hide them from hooks), and the layers kept."""
        out = self.model(input_ids=ids[None].to(self.device), use_cache=False, output_attentions=True)
        returned = getattr(out, "attentions", None)
        if not returned or any(a is None for a in returned):
            return None, []
        kept = list(range(len(returned))) if layers is None else sorted(int(x) for x in layers)
        stacked = torch.stack([returned[layer][0] for layer in kept])  # (layer, head, pos, pos)
        return stacked.float().cpu().numpy(), kept

    def capture_enc_dec(
        self,
        encoder_ids: torch.Tensor,
        decoder_ids: torch.Tensor,
        attention: bool = False,
        activation_layers: Sequence[int] | None = None,
        attention_layers: Sequence[int] | None = None,
        progress: Progress | None = None,
    ) -> Capture:
        """One encoder-decoder forward: decoder-side arrays in the main fields, the rest in extras.

        Args:
            encoder_ids: (enc_pos,) the prompt.
            decoder_ids: (dec_pos,) the decoder start token, then the generated tokens.
        """
        if progress:
            progress("capture", 0.0)
        arch = self.arch
        n_enc = len(arch.encoder_blocks)
        enc_acts = within(activation_layers, n_enc)
        enc_attn = within(attention_layers, n_enc)
        dec_acts = within(activation_layers, arch.n_layers)
        dec_attn = within(attention_layers, arch.n_layers)
        sites = (arch.encoder_attentions, arch.attentions, arch.cross_attentions) if attention else ((),) * 3
        with self.lock, torch.inference_mode(), self._attention_impl("eager" if attention else None):
            with (
                recording(arch.encoder_blocks, arch.encoder_ffn_sites, enc_acts, sites[0], enc_attn) as enc,
                recording(arch.blocks, arch.ffn_sites, dec_acts, sites[1], dec_attn) as dec,
                attention_recording(sites[2], dec_attn) as cross,
            ):
                self.model(
                    input_ids=encoder_ids[None].to(self.device),
                    decoder_input_ids=decoder_ids[None].to(self.device),
                    use_cache=False,
                )
            enc_hidden, enc_activations, enc_attentions = recorded_arrays(enc)
            hidden, acts, attn = recorded_arrays(dec)
            cross_attn = cross.attentions().float().cpu().numpy() if cross.attn else None
        self._check_finite(hidden, acts)
        self._check_finite(enc_hidden, enc_activations)
        if progress:
            progress("capture", 1.0)
        enc_np = encoder_ids.numpy().astype(np.int64)  # (enc_pos,)
        dec_np = decoder_ids.numpy().astype(np.int64)  # (dec_pos,)
        enc_tokens, dec_tokens = (
            display_tokens(self.tokenizer, enc_np),
            display_tokens(self.tokenizer, dec_np),
        )
        extras = {
            "encoder": {
                "token_ids": enc_np,
                "tokens": enc_tokens,
                "hidden_states": enc_hidden,
                "activations": enc_activations,
                "activation_layers": sorted(enc.ffn),
                "attentions": enc_attentions,
                "attention_layers": sorted(enc.attn),
            },
            "decoder": {
                "token_ids": dec_np,
                "tokens": dec_tokens,
                "cross_attentions": cross_attn,
                "cross_attention_layers": sorted(cross.attn),
            },
        }
        all_ids = np.concatenate([enc_np, dec_np])
        return Capture(
            token_ids=all_ids,
            tokens=enc_tokens + dec_tokens,
            n_input_tokens=len(enc_np),
            model_type=self.model_type,
            model_name=self.name,
            hidden_states=hidden,
            activations=acts,
            activation_layers=sorted(dec.ffn),
            attentions=attn,
            special=special_mask(self.tokenizer, all_ids),
            extras=extras,
            run_id=uuid.uuid4().hex,
            attention_layers=sorted(dec.attn),
        )

    def _check_finite(self, hidden: np.ndarray, acts: np.ndarray | None) -> None:
        if not np.isfinite(hidden).all() or (acts is not None and not np.isfinite(acts).all()):
            raise NumericalError(
                f"{self.name} produced NaN or inf inside the network (dtype {self.dtype}). "
                "Load it in float32 (dtype=torch.float32)."
            )

    def _attention_impl(self, implementation: str | None):
        return AttentionImplementation(self.model, implementation)


def _accepts(function, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _is_causal(model) -> bool:
    if type(model).__name__.endswith("ForCausalLM"):
        return True  # before importing the auto mapping (a native model never needs it)
    from transformers.models.auto import modeling_auto as auto

    return type(model).__name__ in set(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
