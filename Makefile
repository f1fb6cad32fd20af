# featprep: `make demo` and `make test` set up everything they need (as root on Debian).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEBS := festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts chromium
STAMP := $(VENV)/.featprep-installed

.PHONY: setup festival demo test lint bench clean

setup: $(STAMP) festival

# torch first, pinned: 2.13.0 is a CPU build on this kind of machine's local disk; a looser
# requirement would pull a multi-GB CUDA build. GPU users: see README, "Installing".
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $@

festival:
	@if ! dpkg -s $(DEBS) >/dev/null 2>&1; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEBS) >/dev/null; \
	fi

demo: setup
	$(VENV)/bin/featprep demo --out demo

lint: $(STAMP)
	$(VENV)/bin/ruff check featprep tests bench
	$(VENV)/bin/ruff format --check featprep tests bench

test: setup lint
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/prepare.py
	$(PY) bench/linguistic.py
	$(PY) bench/pase.py
	$(PY) bench/normstats.py
	cd bench && ../$(PY) loader.py && ../$(PY) train.py && ../$(PY) generate.py

clean:
	rm -rf $(VENV) build dist *.egg-info demo .pytest_cache .ruff_cache
