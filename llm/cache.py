"""A persistent response cache (SQLite) and run records.

Every request to a backend is keyed by the SHA-256 of ``(backend, model, full prompt,
parameters)``; its answer is committed durably (WAL journal, ``synchronous=FULL``) before the
backend hands it back, so a rerun after a crash resumes where it stopped and never pays twice.
The file is created with ``0600`` permissions; several processes may share it. API keys never
enter the key or the stored parameters.

Examples
--------
>>> import tempfile, os
>>> from rectify.llm.cache import ResponseCache, request_key
>>> d = tempfile.mkdtemp()
>>> c = ResponseCache(os.path.join(d, "cache.sqlite"))
>>> k = request_key("transformers", "m", [{"role": "user", "content": "hi"}], {"t": 0})
>>> c.get(k) is None
True
>>> c.put(k, {"probs": [0.5, 0.5]}, backend="transformers", model="m", prompt_tokens=3)
>>> c.get(k)
{'probs': [0.5, 0.5]}
>>> oct(os.stat(c.path).st_mode & 0o777)
'0o600'
>>> c.close()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from rectify.errors import CacheError, InputError

__all__ = ["ResponseCache", "RunRecord", "request_key", "default_cache_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    response TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    backend TEXT, model TEXT,
    started REAL, finished REAL,
    n_requests INTEGER, n_cached INTEGER, n_failed INTEGER,
    prompt_tokens INTEGER, completion_tokens INTEGER, cost REAL
);
"""

_SECRET_WORDS = ("api_key", "apikey", "authorization", "secret", "password", "token_value")


def default_cache_path() -> str:
    """``$RECTIFY_CACHE_DIR/responses.sqlite`` or ``~/.cache/rectify/responses.sqlite``."""
    base = os.environ.get("RECTIFY_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "rectify"
    )
    return os.path.join(base, "responses.sqlite")


def request_key(backend: str, model: str, prompt: Any, params: dict | None = None) -> str:
    """SHA-256 hex key of one request.

    ``prompt`` is the full prompt (chat messages or rendered text); ``params`` the generation
    parameters. Parameters whose name looks like a secret are refused, so a key can never leak.

    Examples
    --------
    >>> request_key("b", "m", "hi") == request_key("b", "m", "hi", {})
    True
    >>> request_key("b", "m", "hi", {"temperature": 0}) == request_key("b", "m", "hi", {"temperature": 1})
    False
    """
    params = dict(params or {})
    for name in params:
        if any(w in name.lower() for w in _SECRET_WORDS):
            raise InputError(f"request parameter {name!r} looks like a secret; it must not enter the cache key")
    blob = json.dumps(
        {"backend": backend, "model": model, "prompt": prompt, "params": params},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class RunRecord:
    """Counts for one run of a backend: requests, cache hits, failures, tokens, cost.

    ``cost`` uses the per-million-token prices given to the backend (0 when unknown).
    """

    backend: str
    model: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    n_requests: int = 0
    n_cached: int = 0
    n_failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add_tokens(self, prompt_tokens: int, completion_tokens: int, prices: tuple[float, float] | None) -> None:
        self.prompt_tokens += int(prompt_tokens)
        self.completion_tokens += int(completion_tokens)
        if prices:
            self.cost += (prompt_tokens * prices[0] + completion_tokens * prices[1]) / 1e6

    def as_dict(self) -> dict:
        return asdict(self)


class ResponseCache:
    """SQLite response cache shared by backends (thread- and process-safe).

    Parameters
    ----------
    path : str, optional
        Database file (default :func:`default_cache_path`); created with mode 0600.
    timeout : float
        Seconds to wait for a lock held by another process.

    Raises
    ------
    CacheError
        If the file is not a readable SQLite database (corrupted, truncated, not a cache).
    """

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 60.0):
        self.path = os.fspath(path) if path is not None else default_cache_path()
        self.timeout = timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._open()

    # -- connection ---------------------------------------------------------------------------
    def _fail(self, err: Exception) -> CacheError:
        return CacheError(
            f"response cache {self.path!r} is unreadable or corrupted ({err}); move or delete the "
            "file to start a fresh cache (cached answers in it are lost), or pass another cache path"
        )

    def _open(self) -> None:
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as err:
            raise CacheError(f"cannot create the response cache {self.path!r}: {err}") from err
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                conn.close()
                raise CacheError(
                    f"response cache {self.path!r} failed its integrity check ({row}); move or delete "
                    "the file to start a fresh cache"
                )
        except sqlite3.DatabaseError as err:
            raise self._fail(err) from err
        self._conn = conn

    def close(self) -> None:
        """Close the connection (the cache can be reopened by constructing it again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise CacheError(f"response cache {self.path!r} is closed; create a new ResponseCache")
            try:
                yield self._conn
            except sqlite3.DatabaseError as err:
                raise self._fail(err) from err

    def __deepcopy__(self, memo: dict) -> "Any":
        # a shared resource (loaded model, client, open database): sklearn.clone shares it
        return self

    def __getstate__(self) -> dict:
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["timeout"])

    # -- responses ----------------------------------------------------------------------------
    def get(self, key: str) -> Any | None:
        """The stored answer for ``key`` (decoded JSON) or None."""
        with self._cursor() as c:
            row = c.execute("SELECT response FROM responses WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError as err:
            raise self._fail(err) from err

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """Stored answers for many keys at once (missing keys are absent from the result)."""
        out: dict[str, Any] = {}
        uniq = list(dict.fromkeys(keys))
        with self._cursor() as c:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                q = "SELECT key, response FROM responses WHERE key IN (%s)" % ",".join("?" * len(chunk))
                for k, r in c.execute(q, chunk):
                    out[k] = json.loads(r)
        return out

    def put(
        self,
        key: str,
        response: Any,
        backend: str,
        model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Store an answer durably (committed before returning). An existing key is kept."""
        blob = json.dumps(response, ensure_ascii=False)
        with self._cursor() as c:
            c.execute(
                "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?)",
                (key, backend, model, blob, int(prompt_tokens), int(completion_tokens), time.time()),
            )

    def put_many(self, rows: list[tuple[str, Any, str, str, int, int]]) -> None:
        """Store many answers in one durable transaction: ``(key, response, backend, model, pt, ct)``."""
        now = time.time()
        with self._cursor() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany(
                    "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?)",
                    [(k, b, m, json.dumps(r, ensure_ascii=False), int(pt), int(ct), now) for k, r, b, m, pt, ct in rows],
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._cursor() as c:
            return int(c.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def __contains__(self, key: str) -> bool:
        with self._cursor() as c:
            return c.execute("SELECT 1 FROM responses WHERE key=?", (key,)).fetchone() is not None

    # -- runs -----------------------------------------------------------------------------------
    def record_run(self, run: RunRecord) -> None:
        """Insert or update a run record."""
        d = run.as_dict()
        with self._cursor() as c:
            c.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    d["run_id"], d["backend"], d["model"], d["started"], d["finished"], d["n_requests"],
                    d["n_cached"], d["n_failed"], d["prompt_tokens"], d["completion_tokens"], d["cost"],
                ),
            )

    def runs(self) -> list[dict]:
        """All run records, oldest first."""
        with self._cursor() as c:
            cur = c.execute("SELECT * FROM runs ORDER BY started")
            names = [x[0] for x in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
