"""What outlives a page or a reload: page settings across page switches, the share link
(``st.query_params``) and saved runs (download, upload).

Streamlit drops the widget keys of a page that is not shown, so every page setting is copied to
a plain session key after each run (``keep_settings``) and put back before the next
(``restore_settings``). The share link carries the model, the prompt, the generation settings,
the page's settings and its position; a new session (a reload, a shared link) runs that prompt
again, which reproduces the run (greedy, or sampled with its seed).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

import ecco_core
from ecco_app import state

KEPT = "kept_settings"  # {widget key: value}: page settings kept across page switches
LINK_APPLIED = "link_applied"  # the query string this session applied (once)
PENDING_POSITION = "link_position"  # a position from the link, applied once the run exists
SETTINGS_PREFIXES = (
    "lp_",
    "rank_",
    "watch_",
    "saliency_method",
    "saliency_target",
    "saliency_foil",
    "saliency_steps",
    "saliency_baseline",
    "saliency_sign",
    "saliency_pos::",
    "factors_",
    "neurons_",
    "similarity_",
    "attn_side",
    "attn_grid_layers::",
    "attn_layer",
    "attn_head",
    "attn_method",
    "attn_past_sink",
    "attn_query::",
)
"""Widget keys that are page settings (buttons, charts and components are not: Streamlit
refuses a value set for them)."""
POSITION_KEYS = {  # page (url path) -> its position key, formatted with the run id
    "layer_predictions": "lp_position::{run}",
    "watch": "watch_position::{run}",
    "saliency": "saliency_pos::{run}",
    "neurons": "neurons_position::{run}::decoder",
}
GENERATION = {  # query parameter -> (sidebar widget key, key in the run's settings, type)
    "n": ("n_generate", "generate", int),
    "sample": ("do_sample", "do_sample", bool),
    "temperature": ("temperature", "temperature", float),
    "top_k": ("top_k", "top_k", int),
    "top_p": ("top_p", "top_p", float),
    "seed": ("seed", "seed", int),
    "attention": ("capture_attention", "attention", bool),
}


def is_setting(key: str) -> bool:
    return key.startswith(SETTINGS_PREFIXES) and not key.endswith(("-csv", "-json"))


def restore_settings() -> None:
    """Before the page runs: put back the settings of pages not shown in the last run.

    Every kept key is written again, present or not (Streamlit's documented way to stop the
    clean-up of widget keys): a key that was only put back once it had been dropped came back in
    the session but the browser drew the widget's default (measured in Chromium).
    """
    for key, value in (st.session_state.get(KEPT) or {}).items():
        st.session_state[key] = st.session_state.get(key, value)


def keep_settings() -> None:
    """After the page ran: remember every page setting now in the session."""
    kept = dict(st.session_state.get(KEPT) or {})
    for key in list(st.session_state.keys()):
        if isinstance(key, str) and is_setting(key):
            kept[key] = st.session_state[key]
    st.session_state[KEPT] = kept


# ----- the share link --------------------------------------------------------------------------


def _parse_bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def apply_link(model_choices: dict[str, str | None]) -> dict[str, Any] | None:
    """Once per session: fill the sidebar from the link's query string.

    Returns the run the link asks for ({"model", "prompt"}) when the session has no run yet.
    """
    params = st.query_params.to_dict()
    if st.session_state.get(LINK_APPLIED) is not None or "prompt" not in params:
        st.session_state[LINK_APPLIED] = st.session_state.get(LINK_APPLIED) or ""
        return None
    st.session_state[LINK_APPLIED] = json.dumps(params, sort_keys=True)
    model = params.get("model", "")
    label = next((k for k, v in model_choices.items() if v == model), None)
    if label is None:
        label = next(k for k, v in model_choices.items() if v is None)
        st.session_state["model_other"] = model
    st.session_state["model_label"] = label
    st.session_state["prompt"] = params["prompt"]
    st.session_state["example"] = state.CUSTOM_EXAMPLE
    st.session_state["example_shown"] = state.CUSTOM_EXAMPLE
    for name, (key, _, kind) in GENERATION.items():
        if name in params:
            with contextlib.suppress(ValueError):  # a hand-edited link: keep the widget's default
                st.session_state[key] = _parse_bool(params[name]) if kind is bool else kind(params[name])
    try:
        view = json.loads(params.get("view", "{}"))
    except json.JSONDecodeError:
        view = {}
    for key, value in view.items() if isinstance(view, dict) else ():
        if is_setting(key) and "::" not in key:
            st.session_state[key] = value
    if "pos" in params and params["pos"].lstrip("-").isdigit():
        st.session_state[PENDING_POSITION] = (params.get("page", ""), int(params["pos"]))
    if state.stored_seq() is not None:
        return None
    return {"model": model, "prompt": params["prompt"]}


def apply_pending_position(seq: ecco_core.OutputSeq, page: str) -> None:
    """Put the link's position into the page's picker, once the run it belongs to exists."""
    pending = st.session_state.get(PENDING_POSITION)
    if not pending or seq is None:
        return
    linked_page, position = pending
    template = POSITION_KEYS.get(linked_page)
    if template and linked_page == page and 0 <= position <= seq.n_tokens:
        key = template.format(run=seq.run_id)
        st.session_state[key] = position
        if page in ("layer_predictions", "watch"):
            st.session_state[f"{key}::pills"] = position
        st.session_state.pop(PENDING_POSITION, None)


def write_link(page: str) -> None:
    """Keep the address bar's query string in step with the run and the page's settings."""
    settings = state.run_settings()
    seq = state.stored_seq()
    if seq is None or not settings.get("prompt"):
        return
    params = {"model": settings["model"], "prompt": settings["prompt"], "page": page}
    for name, (_, setting, kind) in GENERATION.items():
        value = settings.get(setting)
        if value is not None:
            params[name] = str(int(value) if kind is bool else value)
    kept = (st.session_state.get(KEPT) or {}).items()
    plain = (str, int, float, bool, list)
    view = {k: v for k, v in kept if _on_page(k, page) and "::" not in k and isinstance(v, plain)}
    if view:
        params["view"] = json.dumps(view, separators=(",", ":"), sort_keys=True)
    template = POSITION_KEYS.get(page)
    if template and template.format(run=seq.run_id) in st.session_state:
        params["pos"] = str(st.session_state[template.format(run=seq.run_id)])
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)


PAGE_PREFIXES = {
    "layer_predictions": "lp_",
    "rankings": "rank_",
    "watch": "watch_",
    "saliency": "saliency_",
    "factors": "factors_",
    "neurons": "neurons_",
    "similarity": "similarity_",
    "attention": "attn_",
}


def _on_page(key: str, page: str) -> bool:
    prefix = PAGE_PREFIXES.get(page)
    return bool(prefix) and key.startswith(prefix)


def page_name(url_path: str) -> str:
    """'layer_predictions' for the page at url path 'layer_predictions' (or '' for the first)."""
    return re.sub(r"[^a-z_]", "", url_path.lower())


# ----- saved runs ------------------------------------------------------------------------------


def run_bytes(seq: ecco_core.OutputSeq | None) -> bytes:
    """The run as a ``.npz`` file (``OutputSeq.save``), made when the button is pressed."""
    if seq is None:
        raise ecco_core.EccoError("This run was released to keep the server within its memory: run it again.")
    with tempfile.TemporaryDirectory() as folder:
        path = seq.save(Path(folder) / "run.npz")
        return path.read_bytes()


def load_run(data: bytes, name: str, load_lm) -> tuple[ecco_core.OutputSeq, str | None]:
    """A run read from an uploaded file, with its model attached when it loads.

    Returns (seq, a note when the model could not be attached). Raises EccoError for a file
    that is not a saved run.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "upload.npz"
        path.write_bytes(data)
        seq = ecco_core.OutputSeq.load(path)  # untrusted: checked before anything is allocated
        try:
            lm = load_lm(seq.model_name)
        except Exception as error:  # the data views still work; lens and attribution say why not
            note = f"Opened {name!r}; its model {seq.model_name!r} did not load ({type(error).__name__})."
            return seq, note
        return ecco_core.OutputSeq.load(path, lm=lm), None  # checked against the model's sizes too
