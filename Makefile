# fames: two commands for a fresh machine (Debian + Python 3.10+, root or sudo for apt-get).
#   make demo   installs everything and runs the embedded default job
#   make test   installs everything and runs the test suite
.PHONY: deps demo test lint library clean

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
APT_PACKAGES := yosys opensta iverilog dataset-fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel on this machine; a bare `torch` would pull a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: deps
	$(VENV)/bin/fames demo

test: deps
	$(PY) -m pytest tests -q

lint: deps
	$(VENV)/bin/ruff check src tests benchmarks

library: deps
	$(VENV)/bin/fames lib build

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
