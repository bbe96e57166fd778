# Two commands matter on a fresh clone: `make demo` and `make test`.
# Everything else is for operators and contributors; see README.md.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install fmt lint typecheck test demo bench package deploy clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	-command -v terraform >/dev/null && terraform fmt -recursive terraform

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy watchdog main.py

test: install lint
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python -m watchdog demo

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
