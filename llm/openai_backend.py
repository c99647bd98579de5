"""OpenAI-compatible backend (OpenAI, vLLM, llama.cpp server, ...).

One chat-completions request per prompt, asking for one token with ``logprobs`` and
``top_logprobs``; the option probabilities are the probabilities of the label tokens at that
position. Models that refuse log-probs (reasoning models) or servers that ignore them fall back to
sampling ``n_samples`` answers and parsing them. Requests run concurrently (``max_concurrency``),
with retries and exponential back-off that honour ``Retry-After`` on 429, per-request timeouts, and
every answer committed to the response cache before it is used. A request that still fails after
the retries is returned with status ``"failed"`` (never dropped); a model answer outside the
options is status ``"off_scale"``.

The API key is read from the environment (``api_key_env``, default ``OPENAI_API_KEY``) when the
client is built; it is never stored on the backend, in the cache, the run records or messages.

Examples
--------
>>> from rectify.llm.openai_backend import OpenAIBackend
>>> be = OpenAIBackend("gpt-4o-mini", base_url="http://127.0.0.1:8000/v1", max_concurrency=4)
>>> be.backend_id
'openai@http://127.0.0.1:8000/v1'
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import math
import os
import random
import threading
import time
import urllib.parse
from typing import Any, Sequence

import numpy as np

from rectify.errors import ConfigError, InputError
from rectify.llm.base import Scores
from rectify.llm.cache import ResponseCache, RunRecord, request_key
from rectify.llm.distribution import probs_from_logprobs, probs_from_samples
from rectify.llm.persona import Prompt

__all__ = ["OpenAIBackend", "retry_after_seconds", "parse_logprobs_response"]

_MODES = ("auto", "logprobs", "sampling")


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from ``Retry-After`` / ``retry-after-ms`` headers, or None.

    Examples
    --------
    >>> retry_after_seconds({"retry-after": "2"}), retry_after_seconds({"retry-after-ms": "150"})
    (2.0, 0.15)
    >>> retry_after_seconds({}) is None
    True
    """
    if headers is None:
        return None
    get = headers.get
    ms = get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    val = get("retry-after")
    if val is None:
        return None
    try:
        return max(float(val), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(val)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


class _Malformed(Exception):
    """A response without the expected structure (retried like a transient error)."""


def parse_logprobs_response(resp: Any) -> dict[str, float] | None:
    """Token -> log-prob at the first generated position of a chat completion.

    Returns None when the response carries no log-probs (server ignored the request).
    Raises ``_Malformed`` when the response has no choices.

    Examples
    --------
    >>> r = {"choices": [{"logprobs": {"content": [{"token": "2", "logprob": -0.1,
    ...       "top_logprobs": [{"token": "2", "logprob": -0.1}, {"token": "1", "logprob": -2.4}]}]}}]}
    >>> parse_logprobs_response(r)
    {'2': -0.1, '1': -2.4}
    """
    choices = _field(resp, "choices")
    if not choices:
        raise _Malformed("response has no choices")
    lp = _field(choices[0], "logprobs")
    content = _field(lp, "content")
    if not content:
        return None
    first = content[0]
    out: dict[str, float] = {}
    for alt in _field(first, "top_logprobs") or []:
        tok, val = _field(alt, "token"), _field(alt, "logprob")
        if tok is not None and val is not None:
            out[str(tok)] = max(out.get(str(tok), -math.inf), float(val))
    tok, val = _field(first, "token"), _field(first, "logprob")
    if tok is not None and val is not None and str(tok) not in out:
        out[str(tok)] = float(val)
    return out


def _usage(resp: Any) -> tuple[int, int]:
    u = _field(resp, "usage")
    return int(_field(u, "prompt_tokens") or 0), int(_field(u, "completion_tokens") or 0)


def _texts(resp: Any) -> list[str | None]:
    choices = _field(resp, "choices")
    if not choices:
        raise _Malformed("response has no choices")
    return [_field(_field(c, "message"), "content") for c in choices]


def _safe_url(url: str | None) -> str:
    if not url:
        return "https://api.openai.com/v1"
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path.rstrip("/"), "", ""))


def _is_async_client(client: Any) -> bool:
    try:
        from openai import AsyncOpenAI

        if isinstance(client, AsyncOpenAI):
            return True
    except ImportError:  # pragma: no cover
        pass
    fn = client.chat.completions.create
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__wrapped__", None))


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion, also from inside a running event loop (in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = asyncio.run(coro)
        except BaseException as err:  # pragma: no cover - re-raised below
            box["err"] = err

    th = threading.Thread(target=target)
    th.start()
    th.join()
    if "err" in box:
        raise box["err"]
    return box["out"]


def _refuses_logprobs(err: Exception) -> bool:
    text = str(getattr(err, "message", "") or err).lower()
    return "logprob" in text


class OpenAIBackend:
    """Score prompts through an OpenAI-compatible chat-completions API.

    Parameters
    ----------
    model : str
        Model name on the server.
    base_url : str, optional
        API root (default OpenAI's). Any compatible server works (vLLM, llama.cpp, ...).
    api_key_env : str
        Environment variable holding the API key (read when the client is built, never stored).
        For a ``base_url`` server without authentication the variable may be unset.
    client : openai.AsyncOpenAI or openai.OpenAI, optional
        A ready client; a sync client runs in threads. Default: an ``AsyncOpenAI`` built per call.
    http_client : httpx2.AsyncClient, optional
        Transport for the default client (proxies, tests).
    mode : {"auto", "logprobs", "sampling"}
        ``"auto"``: log-probs, falling back to sampling when the model refuses or omits them.
    top_logprobs : int
        Alternatives per position (0-20).
    n_samples : int
        Answers sampled per prompt in sampling mode.
    temperature : float
        Sampling temperature in sampling mode (log-prob requests use temperature 0).
    max_concurrency : int
        Requests in flight at once.
    max_retries : int
        Retries per request after 429, 5xx, timeouts and malformed responses.
    timeout : float
        Seconds per request attempt.
    backoff, max_backoff : float
        Back-off ``backoff * 2**attempt`` (with jitter) capped at ``max_backoff`` seconds; a 429's
        ``Retry-After`` overrides it (capped at ``max_backoff``).
    max_tokens_param : str
        ``"max_tokens"`` (default; llama.cpp ignores the newer name) or ``"max_completion_tokens"``.
    cache : ResponseCache, str or None
    prices : (float, float), optional
        USD per million prompt and completion tokens, for the run's cost estimate.
    progress : bool
    random_state : int, optional
        Seed of the back-off jitter.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        client: Any = None,
        http_client: Any = None,
        mode: str = "auto",
        top_logprobs: int = 20,
        n_samples: int = 20,
        temperature: float = 1.0,
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        max_tokens_param: str = "max_tokens",
        cache: ResponseCache | str | None = None,
        prices: tuple[float, float] | None = None,
        progress: bool = False,
        random_state: int | None = None,
    ):
        if not isinstance(model, str) or not model:
            raise InputError("argument 'model' must be a non-empty model name")
        if mode not in _MODES:
            raise InputError(f"argument 'mode' must be one of {_MODES}, got {mode!r}")
        if not 0 <= int(top_logprobs) <= 20:
            raise InputError(f"argument 'top_logprobs' must be in 0..20, got {top_logprobs}")
        if int(max_concurrency) < 1 or int(n_samples) < 1 or int(max_retries) < 0:
            raise InputError("max_concurrency and n_samples must be >= 1 and max_retries >= 0")
        if max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise InputError("argument 'max_tokens_param' must be 'max_tokens' or 'max_completion_tokens'")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.client = client
        self.http_client = http_client
        self.mode = mode
        self.top_logprobs = int(top_logprobs)
        self.n_samples = int(n_samples)
        self.temperature = float(temperature)
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_tokens_param = max_tokens_param
        self.cache = ResponseCache(cache) if isinstance(cache, (str, os.PathLike)) else cache
        self.prices = prices
        self.progress = progress
        self.random_state = random_state
        self.logprobs_refused_ = False
        self.last_run: RunRecord | None = None
        self.n_http_calls_ = 0

    def __deepcopy__(self, memo: dict) -> "Any":
        # a shared resource (loaded model, client, open database): sklearn.clone shares it
        return self

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={_safe_url(self.base_url)!r}, mode={self.mode!r})"

    @property
    def backend_id(self) -> str:
        """Backend name plus the server (no credentials): part of every cache key."""
        return f"{self.name}@{_safe_url(self.base_url)}"

    @property
    def model_id(self) -> str:
        return self.model

    # -- client -----------------------------------------------------------------------------------
    def _make_client(self) -> tuple[Any, bool]:
        if self.client is not None:
            return self.client, False
        try:
            from openai import AsyncOpenAI
        except ImportError as err:
            raise ConfigError("the OpenAI backend needs the openai package: pip install 'rectify-survey[openai]'") from err
        key = os.environ.get(self.api_key_env)
        if not key:
            if self.base_url is None:
                raise ConfigError(
                    f"environment variable {self.api_key_env} is not set; export your API key there "
                    "(it is read from the environment only)"
                )
            key = "not-needed"
        kw = {} if self.http_client is None else {"http_client": self.http_client}
        client = AsyncOpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout, **kw)
        return client, self.http_client is None

    # -- requests ---------------------------------------------------------------------------------
    def _params(self, sampling: bool, K: int) -> dict:
        if sampling:
            return {"mode": "sampling", "n": self.n_samples, "temperature": self.temperature, self.max_tokens_param: 8}
        return {"mode": "logprobs", "logprobs": True, "top_logprobs": self.top_logprobs, "temperature": 0.0,
                self.max_tokens_param: 1}

    def _keys(self, prompt: Prompt) -> tuple[str, str]:
        msgs = list(prompt.messages)
        lk = request_key(self.backend_id, self.model, msgs, {**self._params(False, 0), "labels": list(prompt.labels)})
        sk = request_key(self.backend_id, self.model, msgs, {**self._params(True, 0), "labels": list(prompt.labels)})
        return lk, sk

    async def _call(self, client: Any, **kwargs: Any) -> Any:
        self.n_http_calls_ += 1
        fn = client.chat.completions.create
        if _is_async_client(client):
            coro = fn(**kwargs)
        else:
            coro = asyncio.to_thread(fn, **kwargs)
        return await asyncio.wait_for(coro, timeout=self.timeout * 1.5 + 1.0)

    async def _attempts(self, client: Any, prompt: Prompt, sampling: bool, rng: random.Random) -> dict:
        """Run one logical request with retries; returns a response record (never raises)."""
        import openai

        params = self._params(sampling, len(prompt.labels))
        body = {k: v for k, v in params.items() if k != "mode"}
        if sampling:
            body.pop("n")
        last_err = "no attempt"
        for attempt in range(self.max_retries + 1):
            delay = min(self.backoff * (2**attempt), self.max_backoff) * (0.5 + rng.random())
            try:
                if not sampling:
                    resp = await self._call(client, model=self.model, messages=list(prompt.messages),
                                            timeout=self.timeout, **body)
                    lps = parse_logprobs_response(resp)
                    pt, ct = _usage(resp)
                    if lps is None:
                        if self.mode == "auto":
                            self.logprobs_refused_ = True
                            return {"switch": "sampling", "error": "server returned no log-probs"}
                        return {"status": "failed", "error": "server returned no log-probs (use mode='sampling')",
                                "pt": pt, "ct": ct}
                    probs = probs_from_logprobs(lps, prompt.labels)
                else:
                    texts: list[str | None] = []
                    pt = ct = 0
                    for _ in range(self.n_samples):  # servers may return fewer than n choices
                        need = self.n_samples - len(texts)
                        if need <= 0:
                            break
                        resp = await self._call(client, model=self.model, messages=list(prompt.messages),
                                                timeout=self.timeout, n=need, **body)
                        got = _texts(resp)
                        a, b = _usage(resp)
                        pt, ct = pt + a, ct + b
                        texts.extend(got[:need])
                    probs = probs_from_samples(texts, prompt.labels)
                status = "ok" if probs.sum() > 0 else "off_scale"
                return {"status": status, "probs": probs.tolist(), "pt": pt, "ct": ct, "mode": params["mode"]}
            except openai.RateLimitError as err:
                last_err = f"HTTP 429 rate limited: {getattr(err, 'message', err)}"
                ra = retry_after_seconds(getattr(getattr(err, "response", None), "headers", None))
                if ra is not None:
                    delay = min(ra, self.max_backoff)
            except openai.BadRequestError as err:
                if not sampling and self.mode == "auto" and _refuses_logprobs(err):
                    self.logprobs_refused_ = True
                    return {"switch": "sampling", "error": str(err)}
                return {"status": "failed", "error": f"HTTP 400 bad request: {getattr(err, 'message', err)}"}
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                return {"status": "failed", "error": f"HTTP {err.status_code}: {getattr(err, 'message', err)}"}
            except openai.APIStatusError as err:
                last_err = f"HTTP {err.status_code}: {getattr(err, 'message', err)}"
                if err.status_code < 500 and err.status_code not in (408, 409):
                    return {"status": "failed", "error": last_err}  # a client error: retrying cannot help
                ra = retry_after_seconds(getattr(getattr(err, "response", None), "headers", None))
                if ra is not None:
                    delay = min(ra, self.max_backoff)
            except (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError) as err:
                last_err = f"timeout: {type(err).__name__}"
            except openai.APIConnectionError as err:
                last_err = f"connection error: {err}"
            except (json.JSONDecodeError, openai.APIResponseValidationError, _Malformed, TypeError,
                    AttributeError, KeyError, IndexError) as err:
                last_err = f"malformed response: {type(err).__name__}: {err}"
            if attempt < self.max_retries:
                await asyncio.sleep(delay)
        return {"status": "failed", "error": f"gave up after {self.max_retries + 1} attempts; last: {last_err}"}

    async def _one(self, client: Any, prompt: Prompt, keys: tuple[str, str], rng: random.Random,
                   sem: asyncio.Semaphore, run: RunRecord) -> dict:
        async with sem:
            sampling = self.mode == "sampling" or (self.mode == "auto" and self.logprobs_refused_)
            rec = await self._attempts(client, prompt, sampling, rng)
            if rec.get("switch"):
                sk = keys[1]
                hit = self.cache.get(sk) if self.cache is not None else None
                if hit is not None:
                    run.n_cached += 1
                    return hit
                sampling = True
                rec = await self._attempts(client, prompt, True, rng)
            key = keys[1] if sampling else keys[0]
            run.add_tokens(rec.get("pt", 0), rec.get("ct", 0), self.prices)
            if rec["status"] in ("ok", "off_scale") and self.cache is not None:
                # durable before the answer is used
                self.cache.put(key, rec, self.backend_id, self.model, rec.get("pt", 0), rec.get("ct", 0))
            return rec

    async def ascore(self, prompts: Sequence[Prompt]) -> Scores:
        """Asynchronous :meth:`score`."""
        prompts = list(prompts)
        if not prompts:
            raise InputError("no prompts to score; pass at least one")
        K = len(prompts[0].labels)
        if any(len(p.labels) != K for p in prompts):
            raise InputError("all prompts in one score() call must have the same number of options")
        run = RunRecord(backend=self.backend_id, model=self.model, n_requests=len(prompts))
        keys = [self._keys(p) for p in prompts]
        found: dict[str, Any] = {}
        if self.cache is not None:
            found = self.cache.get_many([k for pair in keys for k in pair])
        results: list[dict | None] = [None] * len(prompts)
        todo: dict[tuple[str, str], list[int]] = {}
        for i, (lk, sk) in enumerate(keys):
            hit = None
            if self.mode in ("auto", "logprobs"):
                hit = found.get(lk)
            if hit is None and self.mode in ("auto", "sampling"):
                hit = found.get(sk)
            if hit is not None:
                results[i] = hit
                run.n_cached += 1
            else:
                todo.setdefault((lk, sk), []).append(i)
        if todo:
            client, owned = self._make_client()
            sem = asyncio.Semaphore(self.max_concurrency)
            seed = self.random_state
            tasks = {}
            for j, (pair, idx) in enumerate(todo.items()):
                rng = random.Random(None if seed is None else seed * 1_000_003 + j)
                tasks[asyncio.ensure_future(self._one(client, prompts[idx[0]], pair, rng, sem, run))] = idx
            bar = None
            if self.progress:
                try:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=len(tasks), desc=f"{self.model} requests")
                except ImportError:  # pragma: no cover
                    bar = None
            try:
                for fut in asyncio.as_completed(list(tasks)):
                    await fut
                    if bar is not None:
                        bar.update(1)
            finally:
                if bar is not None:
                    bar.close()
                if owned:
                    await client.close()
            for fut, idx in tasks.items():
                rec = fut.result()
                for i in idx:
                    results[i] = rec
        raw = np.full((len(prompts), K), np.nan)
        status, errors = [], []
        for i, (p, rec) in enumerate(zip(prompts, results)):
            assert rec is not None
            st = rec.get("status", "failed")
            status.append(st)
            errors.append(rec.get("error"))
            if st in ("ok", "off_scale"):
                raw[i] = p.to_canonical(np.asarray(rec["probs"], float))
        run.n_failed = sum(s == "failed" for s in status)
        run.finished = time.time()
        if self.cache is not None:
            self.cache.record_run(run)
        self.last_run = run
        return Scores(raw=raw, status=status, errors=errors, run=run)

    def score(self, prompts: Sequence[Prompt]) -> Scores:
        """Raw option probabilities (canonical order) for each prompt; failures marked, never lost.

        Works inside a running event loop too (the work then runs in a helper thread).
        """
        return _run_sync(self.ascore(prompts))

    # -- Batch API ----------------------------------------------------------------------------------
    def batch_requests(self, prompts: Sequence[Prompt]) -> list[dict]:
        """Batch API request lines (log-prob mode) for the prompts not yet in the cache.

        ``custom_id`` is the cache key, so collected answers land in the same cache entries a
        live :meth:`score` would use. The lines also suit ``vllm run-batch``.
        """
        body = {k: v for k, v in self._params(False, 0).items() if k != "mode"}
        keys = [self._keys(p)[0] for p in prompts]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        lines, seen = [], set()
        for p, k in zip(prompts, keys):
            if k in found or k in seen:
                continue
            seen.add(k)
            lines.append({"custom_id": k, "method": "POST", "url": "/v1/chat/completions",
                          "body": {"model": self.model, "messages": list(p.messages), **body}})
        return lines

    def submit_batch(self, prompts: Sequence[Prompt], metadata: dict | None = None) -> str | None:
        """Upload the uncached requests as a JSONL file and create a batch; returns its id
        (None when every prompt is already cached). At most 50,000 requests per batch."""
        lines = self.batch_requests(prompts)
        if not lines:
            return None
        if len(lines) > 50_000:
            raise InputError(f"{len(lines)} requests exceed the Batch API's 50,000 per batch; split the prompts")
        data = ("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n").encode("utf-8")

        async def go() -> str:
            client, owned = self._make_client()
            try:
                f = await _maybe_await(client.files.create(file=("requests.jsonl", data), purpose="batch"))
                kw = {"metadata": metadata} if metadata else {}
                b = await _maybe_await(client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                                             completion_window="24h", **kw))
                return b.id
            finally:
                if owned:
                    await client.close()

        return _run_sync(go())

    def collect_batch(self, batch_id: str, prompts: Sequence[Prompt], poll_interval: float = 30.0,
                      max_wait: float | None = None) -> dict:
        """Poll a batch until it ends, then store its answers in the cache.

        Returns counts ``{"status", "stored", "failed"}``. Afterwards :meth:`score` on the same
        prompts reads the stored answers and sends live requests only for those still missing.
        """
        if self.cache is None:
            raise InputError("collect_batch needs a cache to store the answers in; pass cache=")
        by_key = {self._keys(p)[0]: p for p in prompts}

        async def go() -> dict:
            client, owned = self._make_client()
            try:
                t0 = time.time()
                while True:
                    b = await _maybe_await(client.batches.retrieve(batch_id))
                    if b.status in ("completed", "failed", "expired", "cancelled"):
                        break
                    if max_wait is not None and time.time() - t0 > max_wait:
                        return {"status": b.status, "stored": 0, "failed": 0}
                    await asyncio.sleep(poll_interval)
                stored = failed = 0
                if b.output_file_id:
                    content = await _maybe_await(client.files.content(b.output_file_id))
                    text = content.text if hasattr(content, "text") else content.decode()
                    rows = []
                    for line in text.splitlines():
                        if not line.strip():
                            continue
                        rec = json.loads(line)
                        key = rec.get("custom_id")
                        resp = rec.get("response") or {}
                        prompt = by_key.get(key)
                        if prompt is None or resp.get("status_code") != 200:
                            failed += 1
                            continue
                        try:
                            lps = parse_logprobs_response(resp["body"])
                        except _Malformed:
                            lps = None
                        if lps is None:
                            failed += 1
                            continue
                        probs = probs_from_logprobs(lps, prompt.labels)
                        pt, ct = _usage(resp["body"])
                        out = {"status": "ok" if probs.sum() > 0 else "off_scale", "probs": probs.tolist(),
                               "pt": pt, "ct": ct, "mode": "logprobs"}
                        rows.append((key, out, self.backend_id, self.model, pt, ct))
                    self.cache.put_many(rows)
                    stored = len(rows)
                return {"status": b.status, "stored": stored, "failed": failed}
            finally:
                if owned:
                    await client.close()

        return _run_sync(go())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["client"] = None  # a client holds the key; never pickle it
        state["http_client"] = None
        return state
