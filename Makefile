# fabricdata: the two commands a newcomer types are `make demo` and `make test`; both set everything up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export NO_ALBUMENTATIONS_UPDATE := 1
export FIFTYONE_DO_NOT_TRACK := true
export FIFTYONE_DATABASE_VALIDATION := false
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup browser demo test lint format bench schemas clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py scripts/setup.sh scripts/check_mongod.py
	bash scripts/setup.sh $(VENV)
	touch $@

demo: setup
	$(VENV)/bin/fabricdata demo --out demo

# The App test looks at the grid in Debian's chromium; installed where we can (root + apt, as on CI).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the App test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not installed: the App browser test will be skipped (apt-get install chromium)"; fi; }

# One worker per core (pytest-xdist), each with its own private mongod; a test module stays on one worker, so its
# module fixtures are built once. `pytest -m "not slow"` (one process) is the quick loop.
test: setup lint browser
	$(PY) -m pytest -n auto --dist loadfile

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
