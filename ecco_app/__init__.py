"""The Streamlit app around ecco_core: session state, cached calls, widgets, components and views.

Only this package (and ``streamlit_app.py``) imports streamlit; the engine never does.
"""
