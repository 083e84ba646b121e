"""Ecco Explorer: the shared sidebar (model, prompt, run) and the page navigation."""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from ecco_app import cached, state
from ecco_core.analysis.attention import layers_within_budget
from ecco_core.errors import EccoError
from ecco_core.model.weights import EMBEDDED_ENCODER

st.set_page_config(page_title="Ecco Explorer", page_icon="🔭", layout="wide")
state.init()
cached.preload_default_model()  # once per server process, in the background

HERE = Path(__file__).parent
PAGES = [  # (file, title, icon, section); a page is listed once its file exists
    ("ecco_app/views/output.py", "Output", "📝", "Run"),
    ("ecco_app/views/layer_predictions.py", "Layer predictions", "🧱", "Logit lens"),
    ("ecco_app/views/rankings.py", "Rankings", "📶", "Logit lens"),
    ("ecco_app/views/watch.py", "Watch tokens", "👀", "Logit lens"),
    ("ecco_app/views/saliency.py", "Saliency", "✨", "Attribution"),
    ("ecco_app/views/factors.py", "Neuron factors", "🧬", "Neurons"),
    ("ecco_app/views/neurons.py", "Top neurons", "🔬", "Neurons"),
    ("ecco_app/views/similarity.py", "Layer similarity", "🪞", "Neurons"),
    ("ecco_app/views/attention.py", "Attention", "🎯", "Attention"),
]


def sidebar() -> None:
    with st.sidebar:
        st.title("🔭 Ecco Explorer")
        label = st.selectbox("Model", list(state.MODEL_CHOICES), key="model_label")
        model = state.MODEL_CHOICES[label]
        if model is None:
            model = st.text_input("Hub id, folder or .gguf file", "gpt2", key="model_other").strip()
        example = st.selectbox("Example prompt", list(state.EXAMPLES), key="example")
        if st.session_state.get("example_shown") != example:  # a newly picked example fills the box
            st.session_state["prompt"] = state.EXAMPLES[example]
            st.session_state["example_shown"] = example
        prompt = st.text_area("Prompt", key="prompt", height=120)
        clicked = st.button("Run", type="primary", width="stretch", key="run")
        settings = generation_settings(model)
        if clicked:
            run(model, prompt, settings)
        if st.session_state.get(state.NOTICE):
            st.caption(st.session_state[state.NOTICE])


def generation_settings(model: str) -> dict:
    encoder = model == EMBEDDED_ENCODER
    with st.expander("Generation settings", expanded=False):
        n_new = st.number_input(
            "Tokens to generate",
            0,
            200,
            0 if encoder else 20,
            key="n_generate",
            help="0 analyses the prompt without generating.",
        )
        sample = st.toggle("Sample (off: greedy)", False, key="do_sample")
        temperature = st.slider("Temperature", 0.1, 2.0, 1.0, 0.1, key="temperature", disabled=not sample)
        top_k = st.number_input("Top-k (0: off)", 0, 1000, 50, key="top_k", disabled=not sample)
        top_p = st.slider("Top-p", 0.05, 1.0, 1.0, 0.05, key="top_p", disabled=not sample)
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", disabled=not sample)
        attention = st.toggle("Capture attention", True, key="capture_attention")
    return {
        "generate": int(n_new),
        "do_sample": sample,
        "temperature": float(temperature),
        "top_k": int(top_k),
        "top_p": float(top_p),
        "seed": int(seed),
        "attention": attention,
    }


def run(model: str, prompt: str, settings: dict) -> None:
    """Load (cached), generate, capture; keep the last good result when anything fails."""
    progress = st.progress(0.0, text="Loading the model…")
    try:
        lm = cached.load_lm(model)
        stage_text = {
            "generate": "Generating…",
            "capture": "Capturing activations…",
            "attribution": "Attributing…",
        }

        def report(stage: str, fraction: float) -> None:
            progress.progress(min(max(fraction, 0.0), 1.0), text=stage_text.get(stage, stage))

        kept = attention_layers(lm, prompt, settings) if settings["attention"] else None
        if settings["generate"] > 0 and lm.model_type != "mlm":
            seq = lm.generate(
                prompt,
                settings["generate"],
                do_sample=settings["do_sample"],
                temperature=settings["temperature"],
                top_k=settings["top_k"],
                top_p=settings["top_p"],
                seed=settings["seed"],
                attention=settings["attention"],
                attention_layers=kept,
                progress=report,
            )
        else:
            seq = lm(prompt, attention=settings["attention"], attention_layers=kept)
    except EccoError as error:
        state.store_run_error(str(error))
    except Exception as error:  # a bug or an odd model: a short message, the traceback goes to the log
        logging.getLogger("ecco_explorer").exception("run failed (model %r)", model)
        state.store_run_error(
            f"Something went wrong during this run ({type(error).__name__}). The last good result "
            "is kept; try another prompt or model."
        )
    else:
        notice = None
        if kept:
            layers = ", ".join(map(str, kept))
            notice = f"Long text: attention kept for layers {layers} only, to bound memory."
        state.store_run(seq, {"model": model, "prompt": prompt, **settings}, notice)
    finally:
        progress.empty()


def attention_layers(lm, prompt: str, settings: dict) -> list[int] | None:
    """Every layer's attention, unless a long text would need more than the memory budget."""
    try:
        n_tokens = len(lm.encode(prompt)) + settings["generate"]
    except EccoError:
        return None  # the run itself reports the bad prompt
    config = getattr(lm.model.config, "get_text_config", lambda: lm.model.config)()
    n_heads = int(getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 16))
    return layers_within_budget(lm.arch.n_layers, n_heads, n_tokens)


sidebar()
pages: dict[str, list] = {}
for file, title, icon, section in PAGES:
    if (HERE / file).exists():
        pages.setdefault(section, []).append(
            st.Page(file, title=title, icon=icon, default=file == PAGES[0][0])
        )
st.navigation(pages).run()
