# Everything the project needs is installed from these files into .venv.
# A second run does not reinstall unless a requirements file changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test quick check lint typecheck clean-venv browser e2e bench

run: $(RUN_STAMP)
	$(BIN)/streamlit run streamlit_app.py

test: $(DEV_STAMP) browser
	$(BIN)/python -m pytest

# The quick loop while editing: every test not marked slow (no training, browser or worker processes).
quick: $(DEV_STAMP)
	$(BIN)/python -m pytest -m "not slow"

check: $(DEV_STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The package's bytecode is written at install, as pip does for every wheel it installs: an editable
# install writes none, and where PYTHONDONTWRITEBYTECODE is set (many containers) none ever, so each
# server start compiled the ~70 modules of its first page (~40 ms of CPU).
$(RUN_STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q lotr_labeler
	touch $@

$(DEV_STAMP): requirements-dev.txt $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Bench-only extras (bench/requirements.txt, when there is one) on top of the dev tools.
$(BENCH_STAMP): $(wildcard bench/requirements.txt) $(DEV_STAMP)
	$(if $(wildcard bench/requirements.txt),$(BIN)/python -m pip install --quiet -r bench/requirements.txt)
	touch $@

# The browser tests only (tests/e2e, Playwright + Chromium); screenshots in test-artifacts/e2e/.
e2e: $(DEV_STAMP) browser
	$(BIN)/python -m pytest tests/e2e -m e2e

# Every bench/bench_*.py side by side with its anchor; writes bench/RESULTS.md.
bench: $(BENCH_STAMP) browser
	$(BIN)/python bench/run_all.py

# Debian's Chromium for the browser tests: Playwright cannot download its own browser here.
# Installed only when missing (a second run installs nothing). Without apt-get the e2e tests
# skip with one line; under CI=true they fail instead.
CHROMIUM_PKGS := chromium fonts-dejavu-core fonts-noto-color-emoji
browser:
	@[ -n "$$LOTR_LABELER_CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "Installing $(CHROMIUM_PKGS) with apt-get for the e2e tests..."; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $(CHROMIUM_PKGS) >/dev/null; } \
	  || echo "warning: could not install chromium; the e2e tests will skip (fail under CI=true)."; }

clean-venv:
	rm -rf $(VENV)
