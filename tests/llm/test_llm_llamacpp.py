"""Integration: the OpenAI backend over real HTTP against llama-cpp-python's server on 127.0.0.1,
serving the embedded GGUF; its log-prob distributions must match the local transformers backend's
on the same prompts.

Runs when ``llama_cpp`` is importable, or when ``RECTIFY_LLAMA_CPP_PYTHON`` names another Python
interpreter that has ``llama-cpp-python[server]`` (so the server can live in its own virtual
environment); `make test` builds that environment. A missing server is an error, not a skip. llama-cpp-python is source-only on PyPI; its default build crashes
on some CPUs (AMX path), build it with
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON".
"""

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

SERVER_PYTHON = os.environ.get("RECTIFY_LLAMA_CPP_PYTHON") or (
    sys.executable if importlib.util.find_spec("llama_cpp") is not None else None
)
if SERVER_PYTHON is None:
    raise RuntimeError("no llama-cpp-python server: `make test` builds one and sets RECTIFY_LLAMA_CPP_PYTHON "
                       "(source-only on PyPI; see module docstring)")

from rectify.llm.items import Item  # noqa: E402
from rectify.llm.local import LocalBackend, embedded_model_file  # noqa: E402
from rectify.llm.openai_backend import OpenAIBackend  # noqa: E402
from rectify.llm.persona import build_prompt, render_personas  # noqa: E402

pytestmark = [pytest.mark.local, pytest.mark.slow]

# Tolerance on each raw option probability: transformers computes with the dequantised fp32
# weights, llama.cpp with the Q4_1 blocks directly; measured agreement is ~0.003.
ATOL = 0.02


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = open(log_path, "wb")  # a file, not a pipe: the server logs more than a pipe buffer holds
    proc = subprocess.Popen(
        [SERVER_PYTHON, "-m", "llama_cpp.server", "--model", embedded_model_file(), "--logits_all", "true",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url + "/models", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"llama_cpp.server did not start within 120 s: {log_path.read_text(errors='replace')[-2000:]}")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_http_logprobs_match_local_backend(server, tmp_path):
    item = Item("trust", "How much do you trust scientists?", ["Not at all", "A little", "Somewhat", "A lot"])
    X = pd.DataFrame({"age": [19, 80, 45], "ideology": ["very liberal", "very conservative", "moderate"]})
    prompts = [build_prompt(p, item) for p in render_personas(X)]
    remote = OpenAIBackend("smollm2", base_url=server, cache=str(tmp_path / "c.sqlite"), max_concurrency=1,
                           timeout=120).score(prompts)
    assert remote.status == ["ok"] * 3
    local = LocalBackend(dtype="float32", num_threads=1).score(prompts)
    diff = np.abs(remote.raw - local.raw).max()
    print(f"\nllama.cpp vs transformers: max |diff| of option probabilities {diff:.4f}")
    assert diff < ATOL
