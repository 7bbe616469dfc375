# fabricdata: the two commands a newcomer types are `make demo` and `make test`; both set everything up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export FIFTYONE_DO_NOT_TRACK := true
export FIFTYONE_DATABASE_VALIDATION := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test lint format bench schemas clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh scripts/check_mongod.py
	bash scripts/setup.sh $(VENV)
	touch $@

demo: setup
	$(VENV)/bin/fabricdata demo --out demo

test: setup lint
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check fabricdata finetune tests benchmarks scripts
	$(VENV)/bin/ruff format --check fabricdata finetune tests benchmarks scripts
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix fabricdata finetune tests benchmarks scripts
	$(VENV)/bin/ruff format fabricdata finetune tests benchmarks scripts

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
