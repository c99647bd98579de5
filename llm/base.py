"""What every backend returns, and small helpers shared by backends.

A backend has ``score(prompts) -> Scores``: for each :class:`~rectify.llm.persona.Prompt` the raw
probability of each option (canonical item order, not renormalised), a status (``"ok"``,
``"off_scale"`` when the model answered outside the options, ``"failed"`` when the request failed
after retries) and the run record (requests, cache hits, tokens, cost).

Examples
--------
>>> import numpy as np
>>> from rectify.llm.base import Scores
>>> s = Scores(np.array([[0.2, 0.2], [np.nan, np.nan]]), ["ok", "failed"], [None, "HTTP 500"])
>>> s.table(["no", "yes"])[["no", "mass_on_options", "status"]].to_dict("list")
{'no': [0.5, nan], 'mass_on_options': [0.4, nan], 'status': ['ok', 'failed']}
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from rectify.llm.cache import RunRecord
from rectify.llm.distribution import answer_table

__all__ = ["Scores", "progress"]


@dataclass
class Scores:
    """Raw option probabilities and status per prompt (see module docstring)."""

    raw: np.ndarray
    status: list[str]
    errors: list[str | None]
    run: RunRecord | None = field(default=None)

    @property
    def n_failed(self) -> int:
        return sum(s == "failed" for s in self.status)

    def table(self, options: Sequence[str], scores: Sequence[float] | None = None, index: Any = None) -> pd.DataFrame:
        """Tidy table (see :func:`rectify.llm.distribution.answer_table`) with a ``status`` column."""
        return answer_table(self.raw, options, scores=scores, index=index, status=self.status)


def progress(iterable: Iterable, total: int, enabled: bool, desc: str) -> Iterable:
    """Wrap in a tqdm progress bar when ``enabled`` and tqdm is installed."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with transformers
        print(f"{desc}: {total} requests", file=sys.stderr)
        return iterable
    return tqdm(iterable, total=total, desc=desc)
