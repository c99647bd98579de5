"""Checkpoints of a comparison (one set of files per cell, each written atomically; CSV and JSON,
no pickle) and its progress bar.

Many workers may write cells into one folder at once: every file of a cell has its own name, is
written under a temporary name unique to the writing process and thread, and is renamed into
place, the cell's done file last.

Examples
--------
>>> _slug("ppi++", 50, 0)
'ppi__-393679__n50__r0'
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import threading
import time
import warnings
from typing import Any

import pandas as pd

from .errors import ConfigError
from .registry import Spec


# ---------------------------------------------------------------------------------------------
# checkpointing (CSV + JSON, no pickle)
# ---------------------------------------------------------------------------------------------
def _slug(name: str, n: int, r: int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    tag = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{safe}-{tag}__n{n}__r{r}"


def _fingerprint(frame: pd.DataFrame, spec: Spec, random_state: int, min_group_n: int, evaluate: str = "frame") -> str:
    h = hashlib.sha256()
    h.update(str(int(pd.util.hash_pandas_object(frame, index=True).sum())).encode())
    h.update(repr((spec, int(random_state), int(min_group_n))).encode())
    if evaluate != "frame":  # older checkpoints (whole-frame evaluation) keep their fingerprint
        h.update(evaluate.encode())
    return h.hexdigest()[:16]


class _Checkpoint:
    """Finished cells on disk: per cell three CSV files and a ``.done.json`` written last.

    Every file is written atomically (temporary file, fsync, ``os.replace``), and the done file
    records the SHA-256 of each CSV and the comparison's fingerprint, so a file cut short by a
    crash (or damaged later) is detected on load and its cell computed again, never read as data.
    ``resumed``, ``computed``, ``damaged`` and ``retried`` count the cells of this run.

    A stored failure is never final, except a deterministic input error
    (:class:`~rectify.errors.InputError`: the same data and settings give the same error, so
    recomputing cannot help; such a cell's status says ``"final": true``). Every other failed cell
    (a backend that gave up, a fit that did not converge, a crash) and every cell whose answers
    were partly missing is computed again on a rerun -- answered prompts then come from the
    response cache, so only the missing work is redone.
    """

    def __init__(self, folder: str | None, fingerprint: str):
        self.folder, self.fingerprint = folder, fingerprint
        self.resumed, self.computed, self.damaged, self.retried = 0, 0, [], []
        if folder is None:
            return
        os.makedirs(folder, exist_ok=True)
        man = os.path.join(folder, "manifest.json")
        old = _read_json(man) if os.path.exists(man) else None
        if isinstance(old, dict) and old.get("fingerprint") not in (None, fingerprint):
            raise ConfigError(f"checkpoint folder {folder!r} belongs to another comparison (different data or "
                              "settings); give a new folder or delete it")
        if not isinstance(old, dict) or old.get("format") != _CK_FORMAT:
            # new, unreadable (cut short) or older folder: every cell is checked on its own anyway
            _write_atomic(man, json.dumps({"fingerprint": fingerprint, "format": _CK_FORMAT}).encode())

    def _path(self, slug: str, kind: str) -> str:
        return os.path.join(self.folder, f"{slug}.{kind}.csv" if kind != "done" else f"{slug}.done.json")

    def load(self, slug: str):
        """The saved cell ``(status, metrics, estimates, coefficients)``, or None: compute it."""
        if self.folder is None or not os.path.exists(self._path(slug, "done")):
            return None
        try:
            out = self._read(slug)
        except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
            self.damaged.append(slug)
            warnings.warn(f"checkpoint of cell {slug} in {self.folder!r} is damaged ({err}); computing it again",
                          RuntimeWarning, stacklevel=3)
            return None
        status = out[0]
        if (status.get("error") and not status.get("final")) or status.get("partial"):
            self.retried.append(slug)  # transient failure or partial answers: try again
            return None
        self.resumed += 1
        return out

    def _read(self, slug: str):
        status = _read_json(self._path(slug, "done"))
        if not isinstance(status, dict) or status.get("fingerprint") != self.fingerprint:
            raise ValueError("its done file is unreadable or belongs to another comparison")
        if status.get("error"):
            return status, None, None, None
        frames = []
        for kind in _CK_KINDS:
            with open(self._path(slug, kind), "rb") as fh:
                data = fh.read()
            if hashlib.sha256(data).hexdigest() != status.get("sha256", {}).get(kind):
                raise ValueError(f"{slug}.{kind}.csv does not match the checksum in its done file")
            d = pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""],
                            dtype={"item": str, "group": str, "grouping": str, "term": str, "note": str})
            if "note" in d.columns:
                d["note"] = d["note"].fillna("")
            frames.append(d)
        return (status, *frames)

    def save(self, slug: str, status: dict, tab=None, est=None, coef=None) -> None:
        self.computed += 1
        if self.folder is not None:
            write_cell(self.folder, self.fingerprint, slug, status, tab, est, coef)

    def summary(self) -> dict:
        return {"folder": self.folder, "resumed": self.resumed, "computed": self.computed,
                "damaged": list(self.damaged), "retried": list(self.retried)}


_CK_FORMAT = 2
_CK_KINDS = ("metrics", "estimates", "coefficients")


def write_cell(folder: str, fingerprint: str, slug: str, status: dict, tab=None, est=None, coef=None) -> None:
    """Write one finished cell into ``folder``: its CSV files, then its done file (with their checksums).

    Safe with many writers at once (processes, threads or machines sharing the folder): each cell
    has its own files, each written atomically under a name unique to its writer.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> write_cell(d, "abc", "m__n5__r0", {"method": "m"}, pd.DataFrame({"value": [0.5]}))
    >>> sorted(os.listdir(d))
    ['m__n5__r0.done.json', 'm__n5__r0.metrics.csv']
    """
    status = {**status, "fingerprint": fingerprint, "sha256": {}}
    for kind, d in zip(_CK_KINDS, (tab, est, coef)):
        if d is not None:
            data = d.to_csv(index=False, float_format="%.17g").encode("utf-8")
            _write_atomic(os.path.join(folder, f"{slug}.{kind}.csv"), data)
            status["sha256"][kind] = hashlib.sha256(data).hexdigest()
    # written last, so a cell counts as done only when all its files are whole on disk
    _write_atomic(os.path.join(folder, f"{slug}.done.json"), json.dumps(status, indent=1, default=str).encode("utf-8"))


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never a part."""
    tmp = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"  # unique per writer: many may write at once
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------
# progress
# ---------------------------------------------------------------------------------------------
class _Progress:
    """Cells done / total on stderr with the running cell's label, elapsed time and ETA (tqdm's
    ``<remaining``; without tqdm, the mean time per computed cell times the cells left)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self.t0 = total, 0, enabled, time.time()
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="compare", unit="cell", file=sys.stderr,
                                bar_format="{desc}: {n_fmt}/{total_fmt} cells |{bar:20}| {elapsed}<{remaining} "
                                           "{postfix}")
            except ImportError:
                self.bar = None

    def _line(self, label: str) -> str:
        el = time.time() - self.t0
        eta = f"{el / self.done * (self.total - self.done):.0f} s" if self.done else "?"
        return f"\rcompare: {self.done}/{self.total} cells, {el:.0f} s elapsed, ETA {eta} | {label:<40}"

    def start(self, label: str) -> None:
        """Show the cell now running (a LoRA fit may take minutes: the user sees which)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"running {label}", refresh=True)
        else:
            print(self._line(f"running {label}"), end="", file=sys.stderr, flush=True)

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"done {label}", refresh=False)
            self.bar.update(1)
        else:
            print(self._line(f"done {label}"), end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)
