"""`rectify simulate`: answer distributions for a frame through an OpenAI-compatible server (a local
mock standing in for vLLM; the llama.cpp server on the embedded model in the slow test), written to
Parquet in chunks, resumed after an interruption without paying twice, with token and cost counts."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from openai_mock import MockServer, answer, prompt_text
from rectify.cli import main
from rectify.errors import ConfigError
from rectify.simulate import check_config, load_config, read_answers, simulate

ITEMS = {"q1": {"wording": "How much do you trust the news?", "options": ["None", "Little", "Some", "A lot"]},
         "q2": {"wording": "Do you vote?", "options": ["Never", "Sometimes", "Always"], "scores": [0, 1, 2]}}


class _NoServer:
    """A backend that is never asked: the prompts alone are wanted."""

    def score(self, prompts):
        raise AssertionError("not to be called")


def _frame(tmp_path, n=23):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"pid": np.arange(100, 100 + n), "age": rng.integers(18, 90, n),
                       "gender": rng.choice(["woman", "man"], n)})
    path = tmp_path / "frame.parquet"
    df.to_parquet(path, row_group_size=4)  # reader chunks that do not match chunk_rows
    return df, path


def _config(tmp_path, url, n=23, **extra):
    _, path = _frame(tmp_path, n)
    backend = {"model": "mock-model", "base_url": url, "api_key_env": "RECTIFY_TEST_NO_KEY",
               "prices": [2.0, 8.0], **extra.pop("backend", {})}
    raw = {"frame": {"path": str(path), "id": "pid", "persona": ["age", "gender"]}, "items": ITEMS,
           "backend": backend, "output": {"folder": str(tmp_path / "out"), "chunk_rows": 5, **extra}}
    return raw


def _expected(cfg, df):
    """What the mock model answers, computed from the prompts rectify sends (renormalised, canonical)."""
    from rectify.llm.simulator import PromptSimulator

    out = {}
    for it in cfg["items"]:
        sim = PromptSimulator(_NoServer(), it).fit()
        P = []
        for pr in sim.prompts(df[["age", "gender"]]):
            raw = np.array(answer(prompt_text(list(pr.messages)))[: it.n_options])
            P.append(pr.to_canonical(raw) / raw.sum())
        out[it.name] = np.array(P)
    return out


def _texts(cfg, df):
    """The distinct prompt texts rectify sends for the frame (the server bills each once)."""
    from rectify.llm.simulator import PromptSimulator

    return {prompt_text(list(p.messages)) for it in cfg["items"]
            for p in PromptSimulator(_NoServer(), it).fit().prompts(df[["age", "gender"]])}


def test_live_chunks_resume_and_accounting(tmp_path):
    df, _ = _frame(tmp_path)
    with MockServer() as server:
        raw = _config(tmp_path, server.url)
        cfg = check_config(raw, str(tmp_path))
        first = simulate(cfg, progress=False, max_chunks=2)  # a budget: stop after two chunks
        assert first["chunks_written"] == 2 and first["rows"] == 10
        assert server.counts["chat"] == 10 * 2
        # a chunk cut short on disk (a crash before its record) is redone, never read
        (tmp_path / "out" / "part-000002.parquet").write_bytes(b"garbage")
        second = simulate(cfg, progress=False)
        assert second["chunks_skipped"] == 2 and second["chunks_written"] == 3 and second["rows"] == 13
        assert server.counts["chat"] == len(_texts(cfg, df))  # every distinct prompt sent once, over both runs
    got = read_answers(str(tmp_path / "out"))
    assert got["id"].tolist() == df["pid"].tolist()
    exp = _expected(cfg, df)
    np.testing.assert_allclose(got[["q1_p1", "q1_p2", "q1_p3", "q1_p4"]].to_numpy(), exp["q1"], atol=1e-9)
    np.testing.assert_allclose(got["q2_expected"].to_numpy(), exp["q2"] @ np.array([0.0, 1.0, 2.0]), atol=1e-9)
    assert set(got["q1_status"]) == {"ok"}
    # tokens: what the server billed (len(text) // 4 per prompt, one completion token), cost from the prices
    texts = _texts(cfg, df)
    pt = sum(len(t) // 4 for t in texts)
    assert first["prompt_tokens"] + second["prompt_tokens"] == pt
    assert first["completion_tokens"] + second["completion_tokens"] == len(texts)
    assert first["prompts"] + second["prompts"] == 46
    assert first["cost_usd"] + second["cost_usd"] == pytest.approx((pt * 2.0 + len(texts) * 8.0) / 1e6)
    summary = json.loads((tmp_path / "out" / "simulate.json").read_text())
    assert summary["chunks_skipped"] == 2


def test_cli_command_and_config_errors(tmp_path, capsys):
    with MockServer() as server:
        raw = _config(tmp_path, server.url)
        lines = [f'[frame]\npath = "{raw["frame"]["path"]}"\nid = "pid"\npersona = ["age", "gender"]\n',
                 *[f'[items.{k}]\nwording = "{v["wording"]}"\noptions = {json.dumps(v["options"])}\n'
                   for k, v in ITEMS.items()],
                 f'[backend]\nmodel = "mock-model"\nbase_url = "{server.url}"\napi_key_env = "RECTIFY_TEST_NO_KEY"\n',
                 '[output]\nfolder = "out"\nchunk_rows = 10\n']
        (tmp_path / "sim.toml").write_text("\n".join(lines))
        assert main(["simulate", str(tmp_path / "sim.toml"), "--quiet"]) == 0
        assert server.counts["chat"] == len(_texts(check_config(raw, str(tmp_path)), _frame(tmp_path)[0]))
    assert len(read_answers(str(tmp_path / "out"))) == 23
    (tmp_path / "bad.toml").write_text('[frame]\npath = "x"\n[items.q]\nwording = "w"\noptions = ["a", "b"]\n'
                                       '[backend]\nmodel = "m"\nmode = "fast"\n[output]\nfolder = "o"\n')
    assert main(["simulate", str(tmp_path / "bad.toml")]) == 2
    assert "[backend].mode must be 'live'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"chunk_rows: 2000 rows x 36 items exceed"):
        check_config({**raw, "items": {f"i{j}": ITEMS["q1"] for j in range(36)},
                      "backend": {"model": "m", "mode": "batch"}, "output": {"folder": "o", "chunk_rows": 2000}}, ".")
    with pytest.raises(ConfigError, match="unknown keys"):
        check_config({**raw, "output": {"folder": "o", "rows": 3}}, ".")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "none.toml"))


def _llama_python():
    import importlib.util
    import sys

    return os.environ.get("RECTIFY_LLAMA_CPP_PYTHON") or (
        sys.executable if importlib.util.find_spec("llama_cpp") is not None else None)


@pytest.mark.slow
@pytest.mark.local
def test_against_the_llama_cpp_server(tmp_path):
    """The vLLM path for real: llama.cpp's OpenAI-compatible server on the embedded model (tests/llm runs
    it the same way); the written distributions equal what the backend scores for the same prompts."""
    import socket
    import subprocess
    import time
    import urllib.request

    from rectify.llm.local import embedded_model_file

    python = _llama_python()
    if python is None:
        raise RuntimeError("no llama-cpp-python server: `make test` builds one and sets RECTIFY_LLAMA_CPP_PYTHON")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([python, "-m", "llama_cpp.server", "--model", embedded_model_file(), "--logits_all",
                             "true", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=1)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        df, _ = _frame(tmp_path, n=4)
        raw = _config(tmp_path, url, n=4, backend={"model": "smollm2", "max_concurrency": 2})
        raw["items"] = {"q1": ITEMS["q1"]}
        raw["output"]["chunk_rows"] = 3
        summary = simulate(check_config(raw, str(tmp_path)), progress=False)
        got = read_answers(str(tmp_path / "out"))
        assert summary["rows"] == 4 and summary["failed"] == 0 and summary["prompt_tokens"] > 4 * 30
        P = got[["q1_p1", "q1_p2", "q1_p3", "q1_p4"]].to_numpy()
        np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
        from rectify.llm.openai_backend import OpenAIBackend
        from rectify.llm.simulator import PromptSimulator

        cfg = check_config(raw, str(tmp_path))
        fresh = OpenAIBackend("smollm2", base_url=url, api_key_env="RECTIFY_TEST_NO_KEY", mode="logprobs")
        direct = PromptSimulator(fresh, cfg["items"][0]).fit().predict_proba(df[["age", "gender"]])
        np.testing.assert_allclose(P, direct, atol=1e-6)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
