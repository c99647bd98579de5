"""A persistent response cache (SQLite) and run records.

Why one module of ~690 lines: the response cache and the run records share one SQLite file, its
locking and its durability rules (a record is written only after the answers it names are durable).

Every request to a backend is keyed by the SHA-256 of ``(backend, model, full prompt,
parameters)``; its answer is committed durably (WAL journal, ``synchronous=FULL``) before the
backend hands it back, so a rerun after a crash resumes where it stopped and never pays twice.
The file is created with ``0600`` permissions; several processes may share it (a writer waits
for another's lock, up to ``timeout`` seconds, instead of failing). API keys never enter the key
or the stored parameters.

A damaged file (truncated, overwritten, not a database) is refused on open with a
:class:`~rectify.errors.CacheError` that names it; :meth:`ResponseCache.recover` (or
``ResponseCache(path, recover=True)``) rebuilds a fresh cache at the same path from every row
that can still be read, page by page, and keeps the damaged file beside it as ``PATH.corrupt``.

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
import contextlib
import hashlib
import itertools
import json
import mmap
import os
import sqlite3
import struct
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

from rectify.errors import CacheError, InputError

__all__ = ["ResponseCache", "RunRecord", "Recovery", "request_key", "default_cache_path"]

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


class _Corrupted(CacheError):
    """The cache file is damaged (raised on open or on a read); :meth:`ResponseCache.recover` applies."""


def _is_busy(err: sqlite3.Error) -> bool:
    name = getattr(err, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(err) or "busy" in str(err)


@dataclass(frozen=True)
class Recovery:
    """What :meth:`ResponseCache.recover` saved from a damaged cache file.

    Attributes
    ----------
    path : str
        The rebuilt cache (the original path).
    damaged_path : str
        Where the damaged file now lies (``PATH.corrupt``; its ``-wal``/``-shm`` beside it).
    n_responses, n_runs : int
        Cached answers and run records copied into the new cache.
    n_pages : int
        Pages scanned (database file and write-ahead log).
    n_unreadable : int
        Row cells found on table pages that could not be decoded (lost).
    n_conflicts : int
        Keys found twice with different content (the newest copy is kept).
    """

    path: str
    damaged_path: str
    n_responses: int
    n_runs: int
    n_pages: int
    n_unreadable: int
    n_conflicts: int

    def __str__(self) -> str:
        return (f"recovered {self.n_responses} cached answers and {self.n_runs} run records from the damaged "
                f"cache into a fresh cache at {self.path!r}; {self.n_unreadable} unreadable row(s) lost; the "
                f"damaged file is kept as {self.damaged_path!r}")


class ResponseCache:
    """SQLite response cache shared by backends (thread- and process-safe).

    Parameters
    ----------
    path : str, optional
        Database file (default :func:`default_cache_path`); created with mode 0600.
    timeout : float
        Seconds to wait for a lock held by another process (then :class:`CacheError`).
    recover : bool
        If the file is damaged, rebuild it with :meth:`recover` (a ``RuntimeWarning`` says how many
        rows were saved; ``self.recovery`` holds the :class:`Recovery`) instead of raising.

    Raises
    ------
    CacheError
        If the file is not a readable SQLite database (corrupted, truncated, not a cache) and
        ``recover`` is false: the message names the file and the way to recover its rows.
    """

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 60.0, recover: bool = False):
        self.path = os.fspath(path) if path is not None else default_cache_path()
        self.timeout = timeout
        self.recovery: Recovery | None = None
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._open()
        except _Corrupted:
            if not recover:
                raise
            self.recovery = ResponseCache.recover(self.path, timeout=timeout)
            warnings.warn(str(self.recovery), RuntimeWarning, stacklevel=2)
            self._open()

    # -- connection ---------------------------------------------------------------------------
    def _fail(self, err: Exception) -> CacheError:
        return _Corrupted(
            f"response cache {self.path!r} is corrupted or not a cache ({err}). Recover the answers it still "
            f"holds with ResponseCache.recover({self.path!r}) or ResponseCache(path, recover=True): rectify "
            f"rebuilds a fresh cache at this path from every row it can read and keeps the damaged file as "
            f"{self.path + '.corrupt'!r}. Or move or delete the file to start an empty cache (its answers are lost)."
        )

    def _retrying(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; while another process holds the lock, wait and retry (up to ``timeout``)."""
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.DatabaseError as err:
                if not (isinstance(err, sqlite3.OperationalError) and _is_busy(err)):
                    if isinstance(err, sqlite3.OperationalError):
                        raise CacheError(f"cannot use the response cache {self.path!r}: {err}; check the "
                                         "disk space and the file's permissions") from err
                    raise self._fail(err) from err
                if time.monotonic() > deadline:
                    raise CacheError(f"response cache {self.path!r} stayed locked by another process for "
                                     f"{self.timeout:g} s; wait for it to finish or raise 'timeout'") from err
                if self._conn is not None and self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                time.sleep(delay)
                delay = min(2 * delay, 0.25)

    def _open(self) -> None:
        d = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(d, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
        except OSError as err:
            raise CacheError(f"cannot create the response cache {self.path!r}: {err}") from err
        conn = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None)

        def setup() -> None:
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            rows = conn.execute("PRAGMA quick_check").fetchall()  # read only: nothing written to a damaged file
            if [tuple(r) for r in rows] != [("ok",)]:
                raise sqlite3.DatabaseError(f"integrity check failed: {'; '.join(str(r[0]) for r in rows[:3])}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)

        try:
            self._retrying(setup)
        except BaseException:
            conn.close()
            raise
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

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise CacheError(f"response cache {self.path!r} is closed; create a new ResponseCache")
            return self._retrying(lambda: fn(conn))

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
        row = self._run(lambda c: c.execute("SELECT response FROM responses WHERE key=?", (key,)).fetchone())
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError as err:
            raise self._fail(err) from err

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """Stored answers for many keys at once (missing keys are absent from the result)."""
        uniq = list(dict.fromkeys(keys))

        def read(c: sqlite3.Connection) -> list:
            rows = []
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                q = "SELECT key, response FROM responses WHERE key IN (%s)" % ",".join("?" * len(chunk))
                rows.extend(c.execute(q, chunk).fetchall())
            return rows

        try:
            return {k: json.loads(r) for k, r in self._run(read)}
        except json.JSONDecodeError as err:
            raise self._fail(err) from err

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
        row = (key, backend, model, json.dumps(response, ensure_ascii=False), int(prompt_tokens),
               int(completion_tokens), time.time())
        self._run(lambda c: c.execute("INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?)", row))

    def put_many(self, rows: list[tuple[str, Any, str, str, int, int]]) -> None:
        """Store many answers in one durable transaction: ``(key, response, backend, model, pt, ct)``."""
        now = time.time()
        raw = [(k, b, m, json.dumps(r, ensure_ascii=False), int(pt), int(ct), now) for k, r, b, m, pt, ct in rows]
        self._run(lambda c: _insert_all(c, raw, []))

    def __len__(self) -> int:
        return int(self._run(lambda c: c.execute("SELECT COUNT(*) FROM responses").fetchone()[0]))

    def __contains__(self, key: str) -> bool:
        return self._run(lambda c: c.execute("SELECT 1 FROM responses WHERE key=?", (key,)).fetchone()) is not None

    # -- runs -----------------------------------------------------------------------------------
    def record_run(self, run: RunRecord) -> None:
        """Insert or update a run record."""
        d = run.as_dict()
        row = tuple(d[k] for k in _RUN_FIELDS)
        self._run(lambda c: c.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)", row))

    def runs(self) -> list[dict]:
        """All run records, oldest first."""
        def read(c: sqlite3.Connection) -> list[dict]:
            cur = c.execute("SELECT * FROM runs ORDER BY started")
            names = [x[0] for x in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

        return self._run(read)

    # -- recovery -------------------------------------------------------------------------------
    @staticmethod
    def recover(path: str | os.PathLike, timeout: float = 60.0) -> Recovery:
        """Rebuild a damaged cache from every row that can still be read; keep the damaged file.

        The file (and its write-ahead log) is read page by page with the SQLite file format, not
        through SQLite, so rows on intact pages survive a truncated file, an overwritten page or a
        garbage header. Each row is checked (column count and types, its answer must be valid JSON)
        before it is kept; nothing is guessed. The rows go into a fresh cache written beside the
        file, then the damaged file moves to ``PATH.corrupt`` (``.corrupt.1``, ... if taken; its
        ``-wal``/``-shm`` with it) and the fresh cache takes its place. Close every other process
        using the cache first.

        Returns
        -------
        Recovery
            The counts of rows saved and lost.

        Examples
        --------
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "c.sqlite")
        >>> c = ResponseCache(p)
        >>> c.put_many([(f"k{i}", {"v": i}, "b", "m", 0, 0) for i in range(300)])
        >>> c.close()
        >>> with open(p, "r+b") as fh:
        ...     _ = fh.write(b"garbage" * 20)   # the header and the schema are gone
        >>> try:
        ...     ResponseCache(p)
        ... except CacheError as err:
        ...     print("refused")
        refused
        >>> rec = ResponseCache.recover(p)
        >>> rec.n_responses, os.path.basename(rec.damaged_path)
        (300, 'c.sqlite.corrupt')
        >>> ResponseCache(p).get("k7")
        {'v': 7}
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise CacheError(f"response cache {path!r} does not exist; nothing to recover")
        salvage = _salvage(path)
        tmp = path + ".rebuild"
        for suffix in ("", "-wal", "-shm", "-journal"):  # our own leftovers of an interrupted recovery
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp + suffix)
        fresh = ResponseCache(tmp, timeout=timeout)
        try:
            fresh._run(lambda c: _insert_all(c, salvage.responses, salvage.runs))
            fresh._run(lambda c: c.execute("PRAGMA journal_mode=DELETE").fetchall())  # one self-contained file
        finally:
            fresh.close()
        _fsync(tmp)
        damaged = _free_name(path + ".corrupt")
        for suffix in ("-wal", "-shm", ""):  # the main file last: a reader never sees it without its log
            if os.path.exists(path + suffix):
                os.replace(path + suffix, damaged + suffix)
        os.replace(tmp, path)
        _fsync(os.path.dirname(os.path.abspath(path)))
        return Recovery(path, damaged, len(salvage.responses), len(salvage.runs), salvage.n_pages,
                        salvage.n_unreadable, salvage.n_conflicts)


_RUN_FIELDS = ("run_id", "backend", "model", "started", "finished", "n_requests", "n_cached", "n_failed",
               "prompt_tokens", "completion_tokens", "cost")


def _insert_all(c: sqlite3.Connection, responses: list[tuple], runs: list[tuple]) -> None:
    c.execute("BEGIN IMMEDIATE")
    try:
        c.executemany("INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?)", responses)
        c.executemany("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)", runs)
        c.execute("COMMIT")
    except BaseException:
        c.execute("ROLLBACK")
        raise


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _free_name(base: str) -> str:
    name, i = base, 0
    while any(os.path.exists(name + s) for s in ("", "-wal", "-shm")):
        i += 1
        name = f"{base}.{i}"
    return name


# ---------------------------------------------------------------------------------------------
# salvage: read rows page by page (https://www.sqlite.org/fileformat2.html), never through SQLite
# ---------------------------------------------------------------------------------------------
_MAGIC = b"SQLite format 3\x00"
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_PAGE_SIZES = (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512)


@dataclass
class _Salvage:
    responses: list
    runs: list
    n_pages: int = 0
    n_unreadable: int = 0
    n_conflicts: int = 0


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    v = 0
    for j in range(8):
        b = buf[i + j]
        v = (v << 7) | (b & 0x7F)
        if b < 0x80:
            return v, i + j + 1
    return (v << 8) | buf[i + 8], i + 9


_INT_WIDTH = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _record(payload: bytes) -> list:
    """Decode one record (a row's values); ValueError if it is not well formed."""
    hlen, i = _varint(payload, 0)
    if not 2 <= hlen <= len(payload):
        raise ValueError("bad record header")
    types = []
    while i < hlen:
        t, i = _varint(payload, i)
        types.append(t)
    if i != hlen:
        raise ValueError("bad record header")
    out: list = []
    p = hlen
    for t in types:
        if t in (0, 8, 9):
            out.append(None if t == 0 else t - 8)
            continue
        if t in (10, 11):
            raise ValueError("reserved serial type")
        n = _INT_WIDTH.get(t, 8 if t == 7 else (t - 12) // 2)
        if p + n > len(payload):
            raise ValueError("record overruns its payload")
        chunk = payload[p : p + n]
        p += n
        if t == 7:
            out.append(struct.unpack(">d", chunk)[0])
        elif t < 7:
            out.append(int.from_bytes(chunk, "big", signed=True))
        else:
            out.append(chunk.decode("utf-8") if t % 2 else bytes(chunk))
    if p != len(payload):
        raise ValueError("record shorter than its payload")
    return out


def _cells(page: bytes, first: bool, usable: int, read_page: Callable[[int], bytes | None]) -> Iterator[Any]:
    """Yield each row record of a table leaf page, or a ValueError for a cell that cannot be read."""
    off = 100 if first else 0
    if len(page) < off + 8 or page[off] != 0x0D:
        return
    ncell = int.from_bytes(page[off + 3 : off + 5], "big")
    if off + 8 + 2 * ncell > usable:
        return
    for c in range(ncell):
        ptr = int.from_bytes(page[off + 8 + 2 * c : off + 10 + 2 * c], "big")
        try:
            size, i = _varint(page, ptr)
            _, i = _varint(page, i)  # rowid
            x = usable - 35
            local = size
            if size > x:
                m = (usable - 12) * 32 // 255 - 23
                k = m + (size - m) % (usable - 4)
                local = k if k <= x else m
            if i + local + (4 if local < size else 0) > usable:
                raise ValueError("cell overruns its page")
            payload = bytearray(page[i : i + local])
            nxt, seen = int.from_bytes(page[i + local : i + local + 4], "big"), set()
            while len(payload) < size:
                ov = read_page(nxt) if nxt and nxt not in seen else None
                if ov is None:
                    raise ValueError("overflow page lost")
                seen.add(nxt)
                nxt = int.from_bytes(ov[:4], "big")
                payload += ov[4:usable][: size - len(payload)]
            yield _record(bytes(payload))
        except (ValueError, IndexError, UnicodeDecodeError, struct.error) as err:
            yield ValueError(str(err))


def _wal_pages(path: str) -> tuple[int, dict[int, bytes], list[tuple[int, bytes]]]:
    """Committed frames of a write-ahead log: (page size, newest page per number, all frames newest first)."""
    try:
        with open(path + "-wal", "rb") as fh:
            wal = fh.read()
    except OSError:
        return 0, {}, []
    if len(wal) < 32 or int.from_bytes(wal[:4], "big") not in _WAL_MAGIC:
        return 0, {}, []
    order = "big" if wal[3] == 0x83 else "little"
    size = int.from_bytes(wal[8:12], "big")
    if size < 512 or size & (size - 1):
        return 0, {}, []

    def checksum(data: bytes, s0: int, s1: int) -> tuple[int, int]:
        words = struct.unpack(("<" if order == "little" else ">") + f"{len(data) // 4}I", data)
        for a, b in zip(words[0::2], words[1::2]):
            s0 = (s0 + a + s1) & 0xFFFFFFFF
            s1 = (s1 + b + s0) & 0xFFFFFFFF
        return s0, s1

    s = checksum(wal[:24], 0, 0)
    if s != (int.from_bytes(wal[24:28], "big"), int.from_bytes(wal[28:32], "big")):
        return 0, {}, []
    frames, committed, pos = [], 0, 32
    while pos + 24 + size <= len(wal):
        hdr, data = wal[pos : pos + 24], wal[pos + 24 : pos + 24 + size]
        if hdr[8:16] != wal[16:24]:
            break
        s = checksum(hdr[:8] + data, *s)
        if s != (int.from_bytes(hdr[16:20], "big"), int.from_bytes(hdr[20:24], "big")):
            break
        frames.append((int.from_bytes(hdr[:4], "big"), data))
        if int.from_bytes(hdr[4:8], "big"):
            committed = len(frames)  # a commit frame: everything up to here is committed
        pos += 24 + size
    frames = frames[:committed]
    return size, dict(frames), frames[::-1]


def _salvage(path: str) -> _Salvage:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        db: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    try:
        return _salvage_file(path, db)
    finally:
        if size:
            db.close()


def _salvage_file(path: str, db: Any) -> _Salvage:
    wal_size, wal_latest, wal_all = _wal_pages(path)
    sizes: tuple[int, ...] = _PAGE_SIZES
    reserved = 0
    if db[:16] == _MAGIC:
        ps = int.from_bytes(db[16:18], "big")
        ps = 65536 if ps == 1 else ps
        if ps >= 512 and not ps & (ps - 1):
            sizes, reserved = (ps,), db[20]
    elif wal_size:
        sizes = (wal_size,)
    best: _Salvage | None = None
    for size in sizes:
        got = _salvage_with(db, size, size - reserved, wal_latest, wal_all)
        if best is None or len(got.responses) + len(got.runs) > len(best.responses) + len(best.runs):
            best = got
    assert best is not None
    return best


def _salvage_with(db: Any, size: int, usable: int, wal_latest: dict[int, bytes],
                  wal_all: list[tuple[int, bytes]]) -> _Salvage:
    npages = len(db) // size  # a page cut short by a truncation is not read

    def read_page(n: int) -> bytes | None:
        if n in wal_latest:
            return wal_latest[n]
        return db[(n - 1) * size : n * size] if 1 <= n <= npages else None

    wal = [(n, p) for n, p in wal_all if len(p) == size]  # newest first: they win a conflict
    pages = itertools.chain(wal, ((n, db[(n - 1) * size : n * size]) for n in range(1, npages + 1)))
    out = _Salvage([], [], n_pages=len(wal) + npages)
    answers: dict[str, tuple] = {}
    runs: dict[str, tuple] = {}
    for n, page in pages:
        for rec in _cells(page, n == 1, usable, read_page):
            if isinstance(rec, ValueError):
                out.n_unreadable += 1
            elif _is_response(rec):
                row = tuple(rec[:6]) + (float(rec[6]),)
                old = answers.setdefault(rec[0], row)
                out.n_conflicts += old[3] != row[3]
            elif _is_run(rec):
                row = tuple(rec)
                old = runs.get(rec[0])
                if old is None or _run_progress(row) > _run_progress(old):
                    runs[rec[0]] = row
    out.responses = list(answers.values())
    out.runs = list(runs.values())
    return out


def _is_response(rec: list) -> bool:
    if len(rec) != 7 or not all(isinstance(v, str) for v in rec[:4]):
        return False
    if not all(isinstance(v, int) for v in rec[4:6]) or not isinstance(rec[6], (int, float)):
        return False
    try:
        json.loads(rec[3])
    except ValueError:
        return False
    return True


def _is_run(rec: list) -> bool:
    num = (int, float, type(None))
    return (len(rec) == 11 and isinstance(rec[0], str) and all(isinstance(v, (str, type(None))) for v in rec[1:3])
            and all(isinstance(v, num) for v in rec[3:]))


def _run_progress(row: tuple) -> tuple:
    return (row[4] is not None, row[5] or 0, row[4] or 0.0)
