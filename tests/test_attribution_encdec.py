"""Saliency over encoder and decoder inputs on tiny random T5 and BART (char tokenizer, no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM

from ecco_core.analysis import attribution
from ecco_core.errors import ModelTypeError, PositionError
from ecco_core.facade import LM
from ecco_core.model.weights import LoadedWeights
from tests.test_encdec import COMMON, CONFIGS, PROMPT
from tests.tiny import char_tokenizer

N_GENERATE = 4


def tiny_lm(family: str, scaled: bool) -> LM:
    """A tiny T5 / BART; ``scaled`` BART multiplies its embeddings by sqrt(d_model) inside."""
    extra = {"scale_embedding": True} if family == "bart" and scaled else {}
    config = AutoConfig.for_model(family, **COMMON, **CONFIGS[family], **extra)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(config).eval()
    if family == "bart":
        with torch.no_grad():
            model.final_logits_bias.normal_()
    return LM(LoadedWeights(model, char_tokenizer(), f"tiny-{family}", "random", ""), torch.device("cpu"))


@pytest.fixture(scope="module", params=[("t5", False), ("bart", False), ("bart", True)], ids=str)
def seq(request):
    return tiny_lm(*request.param).generate(PROMPT, generate=N_GENERATE)


def _ids(seq):
    encoder = torch.as_tensor(seq.extras["encoder"]["token_ids"])
    decoder = torch.as_tensor(seq.token_ids[seq.n_input_tokens :])
    return encoder, decoder


def _loop_reference(seq) -> tuple[np.ndarray, np.ndarray]:
    """(n_out, pos) gradient and grad x input shares: one forward and backward per generated token."""
    model, n_enc = seq.lm.model, seq.n_input_tokens
    encoder, decoder = _ids(seq)
    enc = model.get_encoder().embed_tokens(encoder).detach()
    dec = model.get_decoder().embed_tokens(decoder).detach()
    grad_rows, gxi_rows = [], []
    for p in range(n_enc + 1, seq.n_tokens):
        e = enc[None].clone().requires_grad_(True)
        d = dec[None, : p - n_enc].clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(inputs_embeds=e, decoder_inputs_embeds=d, use_cache=False).logits[0, -1]
            logits.softmax(-1)[int(seq.token_ids[p])].backward()
        grads = torch.cat([e.grad[0], d.grad[0]])  # (p, d)
        inputs = torch.cat([enc, dec[: p - n_enc]])
        for rows, score in ((grad_rows, grads.norm(dim=-1)), (gxi_rows, (grads * inputs).norm(dim=-1))):
            row = np.zeros(seq.n_tokens)
            row[:p] = (score / score.sum()).numpy()
            rows.append(row)
    return np.array(grad_rows), np.array(gxi_rows)


def test_embeddings_forward_matches_the_ids_forward(seq):
    model = seq.lm.model
    encoder, decoder = _ids(seq)
    embeds = attribution.encoder_decoder_embeds(model, encoder, decoder)  # (pos, d)
    assert embeds.shape == (seq.n_tokens, model.config.d_model)
    with torch.no_grad():
        from_embeds = attribution.encoder_decoder_logits(model, embeds[None], seq.n_input_tokens)
        from_ids = model(input_ids=encoder[None], decoder_input_ids=decoder[None], use_cache=False).logits
    torch.testing.assert_close(from_embeds, from_ids, rtol=1e-5, atol=1e-5)


def test_gradient_and_grad_x_input_equal_a_per_token_loop(seq):
    grad_ref, gxi_ref = _loop_reference(seq)
    for method, ref in (("gradient", grad_ref), ("grad_x_input", gxi_ref)):
        result = seq.saliency(method)
        np.testing.assert_allclose(result.values, ref, atol=1e-5)


def test_shapes_and_token_layout(seq):
    n_enc = len(PROMPT)
    result = seq.saliency("grad_x_input")
    assert result.tokens == seq.tokens and result.tokens[:n_enc] == list(PROMPT)
    assert result.n_input_tokens == n_enc
    assert result.positions.tolist() == list(range(n_enc + 1, n_enc + 1 + N_GENERATE))
    assert result.values.shape == (N_GENERATE, seq.n_tokens)
    for row, p in zip(result.values, result.positions):
        assert row[:n_enc].sum() > 0  # the encoder prompt gets a share
        np.testing.assert_allclose(row[:p].sum(), 1.0, atol=1e-6)
        assert np.all(row[p:] == 0)
    probs = (
        seq.lm.model(input_ids=_ids(seq)[0][None], decoder_input_ids=_ids(seq)[1][None], use_cache=False)
        .logits[0]
        .softmax(-1)
    )
    expected = [float(probs[p - n_enc - 1, seq.token_ids[p]]) for p in result.positions]
    np.testing.assert_allclose(result.target_values, expected, atol=1e-6)
    frame = result.to_frame()
    assert len(frame) == sum(result.positions) and result.to_dict()["tokens"][0]["type"] == "input"
    assert result.figure() is not None


def test_integrated_gradients_is_complete(seq):
    """From the pad baseline (T5's zero baseline sits on the RMSNorm singularity at 0)."""
    result = seq.saliency(
        "integrated_gradients", target="logit", baseline="pad", quadrature="gauss", n_steps=32
    )
    assert result.signed.shape == (N_GENERATE, seq.n_tokens)
    assert np.all(result.completeness_error < 0.01)


def test_refusals_in_one_line(seq):
    for method in ("erasure", "attention", "attention_rollout"):
        with pytest.raises(ModelTypeError, match="not available on encoder-decoders"):
            seq.saliency(method)
    with pytest.raises(PositionError, match="decoder"):
        seq.saliency("gradient", positions=[seq.n_input_tokens])


def test_adaptive_integrated_gradients_report_their_own_error(seq):
    """The page's rule on an encoder-decoder: each token's completeness error is the one its
    points measured, and a token that stopped early is under the rule's tolerance."""
    result = seq.saliency("integrated_gradients", baseline="pad", quadrature="adaptive", n_steps=32)
    assert result.signed.shape == (N_GENERATE, seq.n_tokens) and result.backend == "autograd"
    early = result.evaluations < 32
    assert np.all(result.completeness_error[early] <= attribution.ADAPTIVE_TOLERANCE + 1e-4)
    assert np.all(result.completeness_error < 0.02)
