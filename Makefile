# The two commands: `make console` (the bot against a local Discord) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: console test lint bench

$(BIN)/pledgebot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

console: $(BIN)/pledgebot
	$(BIN)/pledgebot console

test: $(BIN)/pledgebot
	$(BIN)/python -m pytest

lint: $(BIN)/pledgebot
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/pledgebot
	$(BIN)/python -m bench
