# Two commands do all the set-up on a fresh machine:
#   make demo   # virtual env + dependencies, then encode/decode the embedded astronaut image
#   make test   # same set-up, then the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.inrc-installed

.PHONY: demo test test-slow install clean

demo: $(STAMP)
	$(BIN)/inrc demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-torch
	$(PYTHON) -m venv $(VENV)
	scripts/install-torch $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo-output .pytest_cache
