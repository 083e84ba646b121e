"""Hosted mode: where the app is served to others, visitors choose among allowed models only.

Hosted mode is on when ``ECCO_HOSTED=1``, off when ``ECCO_HOSTED=0``; otherwise it is on when the
server listens beyond loopback (``server.address`` in ``.streamlit/config.toml`` set to anything but
localhost) or the browser reached it under a name that is not localhost (the request's Host
header). ``ECCO_ALLOWED_MODELS`` (comma-separated) lists the models a visitor may pick there;
by default the embedded ones. A hosted visitor never names a path: any other name gets the same
message, whether or not something of that name exists on the server.
"""

from __future__ import annotations

import os

import streamlit as st

from ecco_core.errors import ModelNotFoundError
from ecco_core.model.weights import EMBEDDED_MODELS

LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]", ""}


def _flag(name: str) -> bool | None:
    raw = os.environ.get(name, "").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    return None


def request_host() -> str:
    """The host name the browser used ('' outside a request, e.g. under AppTest)."""
    try:
        host = st.context.headers.get("host") or ""
    except Exception:  # no request context (a bare script run)
        return ""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8501
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_hosted() -> bool:
    """Whether this request is served in hosted mode (see the module's docstring)."""
    forced = _flag("ECCO_HOSTED")
    if forced is not None:
        return forced
    address = (st.get_option("server.address") or "").strip().lower()
    if address and address not in LOOPBACK:
        return True
    return request_host() not in LOOPBACK


def allowed_models() -> list[str]:
    """The models a hosted visitor may choose (``ECCO_ALLOWED_MODELS`` or the embedded ones)."""
    raw = os.environ.get("ECCO_ALLOWED_MODELS", "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return names or list(EMBEDDED_MODELS)


def check_model(name: str, hosted: bool) -> str:
    """``name`` if a visitor may load it here; in hosted mode anything off the list is refused
    with one message that says nothing about the server's files."""
    name = (name or "").strip()
    if not hosted or name in allowed_models():
        return name
    raise ModelNotFoundError(
        "This server offers only these models: " + ", ".join(allowed_models()) + ". Pick one of them."
    )
