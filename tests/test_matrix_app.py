"""AppTest: the neuron pages on mixture-of-experts models loaded from a folder, as a user would
("Other (hub id, folder, .gguf)"): routing is shown, neurons name their expert, and a model whose
neurons cannot be read says why instead of crashing."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM

from tests.app_helpers import new_app, open_page, run_prompt
from tests.matrix_models import config_of, save
from tests.tiny import char_tokenizer

OTHER = "Other (hub id, folder, .gguf)"


def run_folder(folder: str, prompt: str = "hello world, hello moe"):
    at = new_app()
    at.selectbox(key="model_label").set_value(OTHER).run()
    at.text_input(key="model_other").set_value(folder)
    return run_prompt(at, prompt, n_generate=3)


@pytest.fixture(scope="module", params=["mixtral", "qwen2_moe"])
def moe_app(request, tmp_path_factory):
    folder = save(request.param, tmp_path_factory.mktemp(request.param))
    at = run_folder(str(folder))
    assert not at.exception and at.session_state["seq"].extras["routing"]["n_experts"] == 4
    return at


def test_top_neurons_page_shows_routing_and_names_experts(moe_app):
    at = open_page(moe_app, "ecco_app/views/neurons.py")
    assert not at.exception and not at.error
    assert any("weighted by the router" in c.value for c in at.caption)
    frame = at.dataframe[0].value
    assert {"expert", "router_weight"} <= set(frame.columns)
    idle = frame["router_weight"] == 0  # ranked above their mean, but this token was not routed there
    assert (frame["activation"][idle] == 0).all() and (frame["activation"][~idle] != 0).any()
    choice = at.selectbox(key="neurons_choice")
    assert " · E" in choice.options[0] or "shared" in choice.options[0]
    choice.set_value(choice.options[1]).run()
    assert not at.exception


def test_factor_and_similarity_pages_work_on_moe(moe_app):
    for page in ("ecco_app/views/factors.py", "ecco_app/views/similarity.py"):
        at = open_page(moe_app, page)
        assert not at.exception and not at.error, page
    at.radio(key="similarity_source").set_value("ffn").run()
    assert not at.exception and not at.error


def test_neuron_pages_say_why_when_neurons_cannot_be_read(tmp_path):
    config = config_of("qwen2_moe")
    config.mlp_only_layers = [0]  # dense and MoE layers mixed
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    char_tokenizer().save_pretrained(tmp_path)
    at = run_folder(str(tmp_path))
    assert not at.exception
    for page in ("ecco_app/views/neurons.py", "ecco_app/views/factors.py"):
        at = open_page(at, page)
        assert not at.exception
        assert any("different neuron counts" in i.value for i in at.info), page
    at = open_page(at, "ecco_app/views/rankings.py")
    assert not at.exception and not at.error
