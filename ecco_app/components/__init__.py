"""Streamlit components of the app: their JavaScript and CSS are files next to the Python that mounts them."""
