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

Why one module of ~850 lines: the live requests, the sampling fallback and the Batch API share one
request plan, one cache writer, one redaction of secrets and one retry policy; splitting them would
spread the handling of the key over several files, which is what this module exists to keep in
one place.

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
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rectify._checks import check_number, check_url_secrets
from rectify.errors import BackendError, ConfigError, InputError
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


def _refuse_url_credentials(url: Any) -> None:
    """A ``base_url`` may not carry a secret anywhere (userinfo, a query parameter of any name, the
    fragment, the path; :func:`rectify._checks.check_url_secrets`): it would reach pickles, logs of
    the HTTP stack and error messages. The message never repeats the URL.

    Examples
    --------
    >>> _refuse_url_credentials("http://127.0.0.1:8000/v1?api-version=2024-06-01")
    >>> try:
    ...     _refuse_url_credentials("https://me:sk-secret@example.org/v1")
    ... except ConfigError as err:
    ...     print(str(err)[:61])
    argument 'base_url' carries credentials (user:password@host);
    """
    check_url_secrets(url, "base_url")


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


_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;()\[\]]+|\bsk-[A-Za-z0-9_\-]{8,}")


def _redact(text: Any, key: str | None) -> Any:
    """Remove an API key from text a server or library produced (error messages).

    Masks the key, its base64 forms, every run of 8 or more consecutive characters of it (a
    truncated or partly masked echo), ``Bearer``/``Basic`` credentials and ``sk-...`` tokens.

    Examples
    --------
    >>> _redact("Incorrect API key provided: sk-abc123456789xyz (Bearer sk-abc123456789xyz)", "sk-abc123456789xyz")
    'Incorrect API key provided: [redacted] (Bearer [redacted])'
    >>> _redact("key ending in ...3456789xyz", "sk-abc123456789xyz")
    'key ending in ...[redacted]'
    """
    if not isinstance(text, str) or not text:
        return text
    import base64

    if key and len(key) >= 8:
        raw = key.encode()
        for form in (key, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
            text = text.replace(form.rstrip("="), "[redacted]")
        grams = {key[i:i + 8] for i in range(len(key) - 7)}
        hit = bytearray(len(text))
        for i in range(len(text) - 7):
            if text[i:i + 8] in grams:
                hit[i:i + 8] = b"\x01" * 8
        if any(hit):
            out, i = [], 0
            while i < len(text):
                if hit[i]:
                    while i < len(text) and hit[i]:
                        i += 1
                    out.append("[redacted]")
                else:
                    out.append(text[i])
                    i += 1
            text = "".join(out)
    elif key:
        text = text.replace(key, "[redacted]")
    return _BEARER.sub("[redacted]", text)


_LOOKUP_CHUNK = 1000  # cache keys read per query batch
_STATUS = np.array(["pending", "ok", "off_scale", "failed"], dtype=object)
_CODE = {"ok": 1, "off_scale": 2, "failed": 3}


@dataclass
class _Plan:
    """The requests of one ``score`` call, as arrays (prompt ``i``, distinct request ``u``).

    ``lk``/``sk``: log-prob and sampling cache keys per prompt; ``order``: each prompt's option
    order; ``rep[u]``: the first prompt asking request ``u`` (requests numbered by first
    appearance); ``inverse[i]``: the request of prompt ``i``; ``counts[u]``: prompts asking it.
    """

    K: int
    lk: np.ndarray
    sk: np.ndarray
    order: np.ndarray
    rep: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray


class _Answers:
    """Answers per distinct request in preallocated arrays: probabilities over the displayed
    options, a status code (0 pending, 1 ok, 2 off_scale, 3 failed) and the errors of failures."""

    def __init__(self, m: int, K: int):
        self.probs = np.full((m, K), np.nan)
        self.code = np.zeros(m, dtype=np.int8)
        self.errors: dict[int, str] = {}

    def store(self, u: int, rec: dict) -> None:
        status = rec.get("status", "failed")
        code = _CODE.get(status)
        if code is None:
            code, rec = 3, {"error": f"unknown answer status {status!r}"}
        if code != 3:
            self.probs[u] = rec["probs"]
        self.code[u] = code
        if rec.get("error") is not None:
            self.errors[u] = rec["error"]

    def per_prompt(self, plan: _Plan) -> tuple[np.ndarray, list[str], list[str | None], int]:
        """Spread the answers over the prompts: raw (n, K) in canonical option order, status,
        errors and the number failed. Raises if any request was left unanswered."""
        if (self.code == 0).any():  # pragma: no cover - a bug, never a silent loss
            raise BackendError(f"{int((self.code == 0).sum())} requests were left without an answer")
        inv = plan.inverse
        n = len(inv)
        raw = np.full((n, plan.K), np.nan)
        raw[np.arange(n)[:, None], plan.order] = self.probs[inv]  # raw[i, order[i, j]] = probs[j]
        code = self.code[inv]
        errors: list[str | None] = [None] * n
        if self.errors:
            has = np.zeros(len(self.code), dtype=bool)
            has[list(self.errors)] = True
            for i in np.flatnonzero(has[inv]):
                errors[i] = self.errors[int(inv[i])]
        return raw, _STATUS[code].tolist(), errors, int(np.count_nonzero(code == 3))


class _CacheWriter:
    """Group commit: answers are written to the cache from a helper thread, one transaction for
    all the answers that arrived while the previous one was being written; each caller waits until
    its answer is durable. A slow disk (one fsync per commit) then neither stalls the event loop
    nor limits the request rate, and no answer is used before it is stored."""

    def __init__(self, cache: ResponseCache, backend: str, model: str):
        self.cache, self.backend, self.model = cache, backend, model
        self._rows: list[tuple] = []
        self._waiters: list[asyncio.Future] = []
        self._task: asyncio.Future | None = None

    async def put(self, key: str, rec: dict) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._rows.append((key, rec, self.backend, self.model, rec.get("pt", 0), rec.get("ct", 0)))
        self._waiters.append(fut)
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush())
        await fut

    async def _flush(self) -> None:
        try:
            while self._rows:
                rows, waiters = self._rows, self._waiters
                self._rows, self._waiters = [], []
                try:
                    await asyncio.to_thread(self.cache.put_many, rows)
                except BaseException as err:
                    for w in waiters:
                        if not w.done():
                            w.set_exception(err) if isinstance(err, Exception) else w.cancel()
                    if not isinstance(err, Exception):
                        raise
                else:
                    for w in waiters:
                        if not w.done():
                            w.set_result(None)
        finally:
            self._task = None


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
        if base_url is not None:
            _refuse_url_credentials(base_url)
        if mode not in _MODES:
            raise InputError(f"argument 'mode' must be one of {_MODES}, got {mode!r}")
        check_number(top_logprobs, "top_logprobs", low=0, high=20, integer=True)
        check_number(max_concurrency, "max_concurrency", low=1, high=1024, integer=True)
        check_number(n_samples, "n_samples", low=1, high=1000, integer=True)
        check_number(max_retries, "max_retries", low=0, high=100, integer=True)
        check_number(timeout, "timeout", low=0, high=86400, low_open=True,
                     hint="; give the seconds one request may take, e.g. 60")
        check_number(temperature, "temperature", low=0, high=2)
        check_number(backoff, "backoff", low=0)
        check_number(max_backoff, "max_backoff", low=0)
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
        """:meth:`_attempts_raw` with the API key removed from its error text (servers echo keys)."""
        rec = await self._attempts_raw(client, prompt, sampling, rng)
        if rec.get("error"):
            rec["error"] = _redact(rec["error"], getattr(client, "api_key", None) or os.environ.get(self.api_key_env))
        return rec

    async def _attempts_raw(self, client: Any, prompt: Prompt, sampling: bool, rng: random.Random) -> dict:
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
                   run: RunRecord, writer: "_CacheWriter | None") -> dict:
        """One distinct request (log-probs, or sampling after a refusal); committed to the cache
        before it is returned."""
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
        if rec["status"] in ("ok", "off_scale") and writer is not None:
            await writer.put(key, rec)  # durable before the answer is used
        return rec

    def _plan(self, prompts: Sequence[Prompt]) -> "_Plan":
        """One pass over the prompts: validate, key, and group identical requests (arrays only)."""
        n = len(prompts)
        if n == 0:
            raise InputError("no prompts to score; pass at least one")
        K = len(prompts[0].labels)
        lk = np.empty(n, dtype="S64")
        sk = np.empty(n, dtype="S64")
        order = np.empty((n, K), dtype=np.intp)
        for i, p in enumerate(prompts):
            if len(p.labels) != K:
                raise InputError("all prompts in one score() call must have the same number of options")
            lk[i], sk[i] = self._keys(p)
            order[i] = p.order
        _, first, inverse, counts = np.unique(lk, return_index=True, return_inverse=True, return_counts=True)
        by_first = np.argsort(first, kind="stable")  # distinct requests in order of first appearance
        rank = np.empty_like(by_first)
        rank[by_first] = np.arange(len(by_first))
        return _Plan(K, lk, sk, order, first[by_first], rank[inverse.ravel()], counts[by_first])

    def _lookup(self, plan: "_Plan", out: "_Answers", run: RunRecord) -> None:
        """Fill cached answers into ``out``, reading the cache in chunks of keys."""
        if self.cache is None:
            return
        for s in range(0, len(plan.rep), _LOOKUP_CHUNK):
            rows = plan.rep[s : s + _LOOKUP_CHUNK]
            lks = [k.decode() for k in plan.lk[rows]]
            sks = [k.decode() for k in plan.sk[rows]]
            found = self.cache.get_many(lks + sks)
            for u, lkey, skey in zip(range(s, s + len(rows)), lks, sks):
                hit = found.get(lkey) if self.mode in ("auto", "logprobs") else None
                if hit is None and self.mode in ("auto", "sampling"):
                    hit = found.get(skey)
                if hit is not None:
                    out.store(u, hit)
                    run.n_cached += int(plan.counts[u])

    async def _request_all(self, prompts: Sequence[Prompt], plan: "_Plan", out: "_Answers",
                           run: RunRecord) -> None:
        """Send the requests not answered from the cache through a fixed pool of workers.

        ``max_concurrency`` worker coroutines pull (position, request) pairs from one shared
        iterator, so at most ``max_concurrency`` requests (coroutines, responses, back-off
        generators) exist at any moment, whatever the number of prompts.
        """
        todo = np.flatnonzero(out.code == 0)
        if len(todo) == 0:
            return
        client, owned = self._make_client()
        writer = None if self.cache is None else _CacheWriter(self.cache, self.backend_id, self.model)
        seed = self.random_state
        work = ((j, int(u)) for j, u in enumerate(todo))  # j numbers the requests sent, for seeding
        bar = None
        if self.progress:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(todo), desc=f"{self.model} requests")
            except ImportError:  # pragma: no cover
                bar = None

        async def worker() -> None:
            for j, u in work:
                rng = random.Random(None if seed is None else seed * 1_000_003 + j)
                i = int(plan.rep[u])
                keys = (plan.lk[i].decode(), plan.sk[i].decode())
                out.store(u, await self._one(client, prompts[i], keys, rng, run, writer))
                if bar is not None:
                    bar.update(1)

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(self.max_concurrency, len(todo)))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if bar is not None:
                bar.close()
            if owned:
                await client.close()

    async def ascore(self, prompts: Sequence[Prompt]) -> Scores:
        """Asynchronous :meth:`score`.

        Memory stays bounded by arrays of a few hundred bytes per prompt: keys, option orders,
        probabilities and status codes live in preallocated numpy arrays, the cache is read in
        chunks, and a fixed pool of ``max_concurrency`` workers pulls the pending requests from an
        iterator. ``prompts`` may be any sequence, also a lazy one that builds each prompt when
        indexed: it is read once in order, then only where a request is sent.
        """
        if not isinstance(prompts, Sequence):
            prompts = list(prompts)
        plan = self._plan(prompts)
        n = len(plan.inverse)
        run = RunRecord(backend=self.backend_id, model=self.model, n_requests=n)
        out = _Answers(len(plan.rep), plan.K)
        self._lookup(plan, out, run)
        await self._request_all(prompts, plan, out, run)
        raw, status, errors, n_failed = out.per_prompt(plan)
        run.n_failed = n_failed
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

    def _run_redacted(self, coro: Any) -> Any:
        """Run a client coroutine; an API error surfaces as :class:`BackendError` without the key
        (a server may echo it) and without the original exception, whose request holds it."""
        import openai

        try:
            return _run_sync(coro)
        except openai.APIError as err:
            key = getattr(self.client, "api_key", None) or os.environ.get(self.api_key_env)
            msg = _redact(f"{type(err).__name__}: {getattr(err, 'message', err)}", key)
        raise BackendError(f"the server refused the batch request ({msg}); check the key, model and base_url")

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

        return self._run_redacted(go())

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

        return self._run_redacted(go())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["client"] = None  # a client holds the key; never pickle it
        state["http_client"] = None
        return state
