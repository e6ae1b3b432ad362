# loopcall: the two commands are `make demo` and `make test`; both run `make setup` first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.loopcall-installed
OUT    ?= runs

.PHONY: setup demo test check format e2e clean

setup: $(STAMP) system-deps

# Reinstalls only when the project's dependencies change.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "loopcall needs Python 3.11+")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,piper,postgres]"
	touch $(STAMP)

# The persona's voice is Debian's flite; everything else comes from PyPI.
.PHONY: system-deps
system-deps:
	@command -v flite >/dev/null 2>&1 || { \
	  echo "installing flite (the persona's offline voice) ..."; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "flite is missing: install it with your package manager (apt-get install flite)"; exit 1; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq flite >/dev/null; }

demo: setup
	$(BIN)/loopcall demo --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q --durations=15

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy harness telephony personas

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
