# The lab's menu. Every target creates the virtual environment if it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PY      = $(BIN)/python
PROFILE ?= quick
RUN    ?= results/latest

.PHONY: help install install-run system-packages lint types test serve bench report notebook demo clean

help: ## this menu
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Two stamps: running the lab needs only its runtime dependencies (quick to
# install on a fresh machine); tests, linters and the notebook need the dev extra.
$(BIN)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[peers]'
	touch $@

$(BIN)/.installed: pyproject.toml $(BIN)/.installed-run
	$(BIN)/pip install --quiet -e '.[dev,peers]'
	touch $@

install: $(BIN)/.installed ## create .venv and install the lab with its dev tools
install-run: $(BIN)/.installed-run ## create .venv with the runtime dependencies only (what bench, serve, demo, report need)

lint: install ## ruff: style and common bugs
	$(BIN)/ruff check server clients bench notebooks peers tests
	$(BIN)/ruff format --check server clients bench notebooks peers tests

types: install ## mypy --strict on server, clients, bench, notebooks, peers
	$(BIN)/mypy

system-packages: ## install the system programs the tests use (redis-server, chromium, tcpdump, nginx, nchan), or say how
	bash .ci/system-packages

test: install system-packages ## the test suite (what CI runs); installs what it needs first
	$(PY) -m pytest

serve: install-run ## the server on http://127.0.0.1:8000 (RUNTIME=werkzeug|gthread|gevent)
	$(PY) -m server --runtime $(or $(RUNTIME),gevent)

bench: install-run ## run the benchmark profile PROFILE (default quick), then write the report
	$(PY) -m bench run --profile $(PROFILE)

report: install-run ## regenerate charts and REPORT.md of RUN (default results/latest) from raw files
	$(PY) -m bench report $(RUN)

notebook: install ## re-execute notebooks/long-polling-vs-websocket.ipynb in place
	$(PY) -m notebooks.execute

demo: install-run ## the live demo page on http://127.0.0.1:8000/; DELAY=100: behind the lab's relay, 100 ms each way
	$(if $(DELAY),$(PY) -m bench.run.demo --delay $(DELAY),$(PY) -m server --runtime gevent)

clean: ## remove the virtual environment and caches (keeps results/)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
