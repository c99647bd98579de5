"""The OpenAI Batch API path (llm/batch_api.py and `rectify simulate` with mode = "batch") against a
local mock of its /files and /batches endpoints: one batch per chunk, submitted once even across
restarts, collected into the cache; lines the batch failed are sent live afterwards; tokens counted."""

import json
import os

import numpy as np
import pytest

from openai_mock import MockServer, answer, prompt_text
from rectify.errors import InputError
from rectify.llm import batch_api
from rectify.llm.items import Item
from rectify.llm.openai_backend import OpenAIBackend
from rectify.llm.simulator import PromptSimulator
from rectify.simulate import check_config, read_answers, simulate
from test_simulate import ITEMS, _config, _frame, _texts


def test_batch_mode_submits_once_and_resumes(tmp_path):
    df, _ = _frame(tmp_path)
    with MockServer(polls_to_finish=3) as server:
        raw = _config(tmp_path, server.url, backend={"mode": "batch", "poll_interval": 0.01, "max_wait": 0})
        cfg = check_config(raw, str(tmp_path))
        # max_wait = 0: every batch is submitted, polled once, and left running -- the job stops
        first = simulate(cfg, progress=False)
        assert server.counts["batches_created"] == 5 and first["chunks_written"] == 0
        states = sorted(os.listdir(tmp_path / "out" / "batches"))
        assert len(states) == 5
        # the rerun finds the ids and never submits again; with time to wait, it collects everything
        cfg["backend"]["max_wait"] = 5
        second = simulate(cfg, progress=False)
        assert server.counts["batches_created"] == 5
        assert second["chunks_written"] == 5 and second["rows"] == 23
        assert server.counts["chat"] == 0  # every answer came through the batches
        # one batch per chunk: a prompt repeated within a chunk is sent once, in two chunks twice
        per_chunk = [_texts(cfg, df.iloc[k:k + 5]) for k in range(0, 23, 5)]
        assert server.counts["batch_lines"] == sum(len(t) for t in per_chunk)
        assert second["prompt_tokens"] == sum(len(t) // 4 for texts in per_chunk for t in texts)
        n_lines = server.counts["batch_lines"]
        assert second["cost_usd"] == pytest.approx((second["prompt_tokens"] * 2 + n_lines * 8) / 1e6)
        third = simulate(cfg, progress=False)  # all done: nothing sent, nothing written
        assert third["chunks_skipped"] == 5 and server.counts["batches_created"] == 5
    got = read_answers(str(tmp_path / "out"))
    assert got["id"].tolist() == df["pid"].tolist()
    sim = PromptSimulator(OpenAIBackend("x", base_url="http://127.0.0.1:1/v1"), cfg["items"][0]).fit()
    want = []
    for pr in sim.prompts(df[["age", "gender"]]):
        raw_p = np.array(answer(prompt_text(list(pr.messages)))[:4])
        want.append(pr.to_canonical(raw_p) / raw_p.sum())
    np.testing.assert_allclose(got[["q1_p1", "q1_p2", "q1_p3", "q1_p4"]].to_numpy(), np.array(want), atol=1e-9)


def test_failed_lines_are_sent_live_and_counted(tmp_path):
    with MockServer(polls_to_finish=1, fail_every=4) as server:
        raw = _config(tmp_path, server.url, backend={"mode": "batch", "poll_interval": 0.01, "max_wait": 5})
        raw["items"] = {"q1": ITEMS["q1"]}
        total = simulate(check_config(raw, str(tmp_path)), progress=False)
        failed_lines = server.counts["batch_failed"]
        assert failed_lines > 0 and server.counts["chat"] == failed_lines  # sent live after the batch
        assert total["failed"] == 0 and total["rows"] == 23
        state = json.loads((tmp_path / "out" / "batches" / "part-000000.json").read_text())
        assert state["status"] == "completed" and state["collected"] and state["failed"] >= 1


def test_submit_and_collect_directly(tmp_path):
    item = Item("q", "Trust?", ["No", "Some", "Yes"])
    with MockServer(polls_to_finish=2) as server:
        be = OpenAIBackend("m", base_url=server.url, api_key_env="RECTIFY_TEST_NO_KEY", cache=str(tmp_path / "c.db"))
        import pandas as pd

        prompts = PromptSimulator(be, item).fit().prompts(pd.DataFrame({"age": [20, 30, 40]}))
        state = str(tmp_path / "s.json")
        assert batch_api.collect(be, prompts, state)["status"] == "none"
        bid = batch_api.submit(be, prompts, state)
        assert batch_api.submit(be, prompts, state) == bid and server.counts["batches_created"] == 1
        assert b'"custom_id"' in batch_api.request_lines(be, prompts)
        got = batch_api.collect(be, prompts, state, poll_interval=0.01, max_wait=5)
        texts = [prompt_text(list(p.messages)) for p in prompts]
        assert got == {"status": "completed", "stored": 3, "failed": 0, "completion_tokens": 3,
                       "prompt_tokens": sum(len(t) // 4 for t in texts)}
        assert batch_api.collect(be, prompts, state) == got  # collected once, read back from the state
        assert batch_api.request_lines(be, prompts) == b""  # all cached now
        assert batch_api.submit(be, prompts, str(tmp_path / "t.json")) is None
        P = PromptSimulator(be, item).fit().predict_proba(pd.DataFrame({"age": [20, 30, 40]}))
        assert server.counts["chat"] == 0 and np.isfinite(P).all()
    with pytest.raises(InputError, match="200 MB"):
        batch_api.check_batch(10, 3e8)
