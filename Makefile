# loopcall: the two commands are `make demo` and `make test`; both run `make setup` first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.loopcall-installed
OUT    ?= runs
DURATIONS ?= 15

.PHONY: setup demo test check format e2e clean

setup: $(STAMP) system-deps

# Reinstalls only when the project's dependencies change.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "loopcall needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,piper,postgres,tracing]"
	touch $(STAMP)

# The persona's voice is Debian's flite; the SIP tests' peers are Debian's SIPp
# (sip-tester) and baresip (without its recommended GUI/video plugins); the
# WebRTC test's non-aiortc peer is Debian's chromium (driven by Playwright from
# PyPI, which downloads no browser of its own); everything else comes from PyPI.
.PHONY: system-deps
system-deps:
	@missing=; \
	command -v flite >/dev/null 2>&1 || missing="$$missing flite"; \
	command -v sipp >/dev/null 2>&1 || missing="$$missing sip-tester"; \
	command -v baresip >/dev/null 2>&1 || missing="$$missing baresip"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -z "$$missing" ] || { \
	  echo "installing$$missing (the persona's offline voice; the SIP and WebRTC tests' peers) ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "missing:$$missing: install with your package manager (apt-get install$$missing)"; exit 1; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; }

demo: setup
	$(BIN)/loopcall demo --out $(OUT)

# Two passes: the tests that measure no timing on two workers, then the timing
# tests (marked in tests/conftest.py) alone, so none shares the cores with another.
test: setup
	@status=0; \
	$(BIN)/python -m pytest -q --durations=$(DURATIONS) -n 2 --dist worksteal -m "not timing" || status=$$?; \
	$(BIN)/python -m pytest -q --durations=$(DURATIONS) -m timing || status=$$?; \
	exit $$status

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy audio harness personas refagent runtime telephony

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
