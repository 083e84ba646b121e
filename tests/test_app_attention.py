"""AppTest: the attention page on the embedded causal model, and the app with the embedded encoder."""

from __future__ import annotations

import pytest

from ecco_app import state as app
from ecco_core.model.weights import EMBEDDED_ENCODER
from tests.app_helpers import ROOT, new_app, open_page, run_prompt

pytestmark = pytest.mark.embedded

ENCODER_LABEL = next(label for label, name in app.MODEL_CHOICES.items() if name == EMBEDDED_ENCODER)
PROMPT = "The keys to the cabinet"


def charts(at):
    return at.get("plotly_chart")


def html_of(at) -> str:
    return " ".join(m.value for m in at.markdown)


def test_attention_page_invites_a_run_first():
    at = open_page(new_app(), "ecco_app/views/attention.py")
    assert not at.exception
    assert any("press **Run**" in i.value for i in at.info)


@pytest.fixture(scope="module")
def causal_app():
    at = run_prompt(new_app(), PROMPT, n_generate=3)
    return open_page(at, "ecco_app/views/attention.py")


def test_attention_page_shows_grid_map_and_text(causal_app):
    at = causal_app
    assert not at.exception
    assert len(charts(at)) == 2  # the head grid and the enlarged map
    assert "attention-text" in html_of(at) and "cabinet" in html_of(at)
    assert at.radio(key="attn_side").options == ["Self-attention"]


def test_picking_a_head_and_rollout(causal_app):
    at = causal_app
    at.radio(key="attn_method").set_value("head")
    at.run()
    at.selectbox(key="attn_layer").set_value(4)
    at.selectbox(key="attn_head").set_value(2)
    at.run()
    assert not at.exception and not at.error
    assert "layer 4, head 2" in charts(at)[1].proto.spec
    at.radio(key="attn_method").set_value("rollout")
    at.run()
    assert not at.exception and not at.error
    assert any("most attended" in c.value for c in at.caption)


def test_a_run_without_attention_says_how_to_get_it():
    at = new_app()
    at.toggle(key="capture_attention").set_value(False)
    at = open_page(run_prompt(at, PROMPT, n_generate=2), "ecco_app/views/attention.py")
    assert not at.exception
    assert any("Capture attention" in i.value for i in at.info)


@pytest.fixture(scope="module")
def encoder_app():
    return run_prompt(new_app(), "The capital of France is Paris.", n_generate=0, model_label=ENCODER_LABEL)


def test_encoder_output_page(encoder_app):
    at = encoder_app
    assert not at.exception and not at.error
    assert any("mlm" in c.value and "all-MiniLM-L6-v2" in c.value for c in at.caption)
    assert "paris" in html_of(at)


def test_encoder_attention_page(encoder_app):
    at = open_page(encoder_app, "ecco_app/views/attention.py")
    assert not at.exception and not at.error
    assert len(charts(at)) == 2
    at.radio(key="attn_method").set_value("rollout")
    at.run()
    assert not at.exception and not at.error


def test_every_page_works_or_says_why_not_on_the_encoder(encoder_app):
    """Each page that exists either draws for the encoder or refuses in one line (st.info / st.error)."""
    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "ecco_app" / "views").glob("*.py"))
    for page in pages:
        at = open_page(encoder_app, page)
        assert not at.exception, f"{page}: {at.exception}"
        for message in [*at.info, *at.error]:
            assert "\n" not in message.value.strip(), f"{page}: {message.value!r}"


PAGE_FILES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "ecco_app" / "views").glob("*.py"))


@pytest.fixture(scope="module", params=["t5", "bart"])
def enc_dec_app(request):
    """A tiny random T5 / BART run (no download) placed in the session."""
    from tests.test_encdec import tiny_enc_dec

    at = new_app()
    at.session_state[app.SEQ] = tiny_enc_dec(request.param).generate("hello", generate=4, attention=True)
    at.run()
    return at


@pytest.mark.parametrize("page", PAGE_FILES)
def test_every_page_works_or_says_why_not_on_an_encoder_decoder(enc_dec_app, page):
    at = open_page(enc_dec_app, page)
    assert not at.exception, f"{page}: {at.exception}"
    for message in [*at.info, *at.error]:
        assert "\n" not in message.value.strip(), f"{page}: {message.value!r}"


def test_attention_page_offers_three_sides_on_an_encoder_decoder(enc_dec_app):
    at = open_page(enc_dec_app, "ecco_app/views/attention.py")
    assert at.radio(key="attn_side").options == [
        "Decoder self-attention",
        "Encoder self-attention",
        "Cross-attention (decoder → encoder)",
    ]
    at.radio(key="attn_side").set_value("cross")
    at.run()
    assert not at.exception and not at.error and len(charts(at)) == 2
    assert at.radio(key="attn_method").options == ["One head", "Mean of heads"]  # no rollout across stacks


def test_saliency_page_explains_a_generated_token_of_an_encoder_decoder(enc_dec_app):
    """Gradient x input over encoder and decoder inputs: the page draws a result, no refusal."""
    at = open_page(enc_dec_app, "ecco_app/views/saliency.py")
    assert not at.exception
    assert not at.info and not at.error, [m.value for m in [*at.info, *at.error]]
    assert at.selectbox(key="saliency_method").value == "grad_x_input"
    assert at.get("plotly_chart"), "the output x input heatmap is missing"
