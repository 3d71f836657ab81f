# Two commands on a fresh machine with Python 3.11 and git:
#   make up    — virtualenv, install, build the bundled sample site, serve it
#   make test  — virtualenv, install, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/flowcms up

test: $(STAMP)
	scripts/system-deps.sh
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/build.py

clean:
	rm -rf $(VENV) content/.flowcms
