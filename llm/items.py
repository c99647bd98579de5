"""Survey items and scales.

An :class:`Item` is one question with ordered answer options (and optional missing codes such as
"Have not seen it"); a :class:`Scale` combines items with a sign each, e.g. a misinformation
discernment score = mean belief in true claims - mean belief in false claims.

Examples
--------
>>> from rectify.llm.items import Item, Scale
>>> acc = ["Not at all accurate", "Not very accurate", "Somewhat accurate", "Very accurate"]
>>> t = Item("true1", "Claim A is ...", acc, missing=["Have not seen it"])
>>> f = Item("false1", "Claim B is ...", acc)
>>> t.encode(["Very accurate", "Have not seen it"]).tolist()
[4.0, nan]
>>> s = Scale("discernment", [t, f], signs=[1, -1])
>>> s.score({"true1": [4, 3], "false1": [1, 3]}).tolist()
[3.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from rectify.errors import InputError

__all__ = ["Item", "Scale"]


def _as_str_tuple(values: Any, arg: str, item: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise InputError(f"item {item!r}: argument {arg!r} must be a list of strings, not one string")
    try:
        out = tuple(values)
    except TypeError:
        raise InputError(f"item {item!r}: argument {arg!r} must be a list of strings") from None
    for v in out:
        if not isinstance(v, str) or not v.strip():
            raise InputError(f"item {item!r}: every entry of {arg!r} must be a non-empty string, got {v!r}")
    return out


@dataclass(frozen=True)
class Item:
    """One survey question with ordered answer options.

    Parameters
    ----------
    name : str
        Short identifier (a column name in answer tables).
    wording : str
        The question as shown to respondents.
    options : sequence of str
        Answer options in their substantive order (at least 2, unique).
    missing : sequence of str, optional
        Codes that mean "no substantive answer" (e.g. "Don't know"); they are not options.
    scores : sequence of float, optional
        Numeric score of each option (default ``1, 2, ..., K``); strictly increasing or
        decreasing is not required, but they must be finite.

    Examples
    --------
    >>> it = Item("trust", "How much do you trust scientists?", ["None", "Some", "A lot"])
    >>> it.n_options, it.score_values.tolist()
    (3, [1.0, 2.0, 3.0])
    >>> it.index_of("Some")
    1
    """

    name: str
    wording: str
    options: tuple[str, ...]
    missing: tuple[str, ...] = ()
    scores: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(f"Item name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.wording, str) or not self.wording.strip():
            raise InputError(f"item {self.name!r}: argument 'wording' must be a non-empty string")
        opts = _as_str_tuple(self.options, "options", self.name)
        if len(opts) < 2:
            raise InputError(
                f"item {self.name!r}: needs at least 2 options, got {len(opts)}; "
                "list every answer option in order"
            )
        dup = sorted({o for o in opts if opts.count(o) > 1})
        if dup:
            raise InputError(f"item {self.name!r}: options must be unique, repeated: {dup}")
        miss = _as_str_tuple(self.missing, "missing", self.name)
        clash = sorted(set(miss) & set(opts))
        if clash:
            raise InputError(f"item {self.name!r}: missing codes {clash} are also options; keep them apart")
        object.__setattr__(self, "options", opts)
        object.__setattr__(self, "missing", miss)
        if self.scores is not None:
            try:
                sc = tuple(float(s) for s in self.scores)
            except (TypeError, ValueError):
                raise InputError(f"item {self.name!r}: 'scores' must be numbers") from None
            if len(sc) != len(opts):
                raise InputError(
                    f"item {self.name!r}: 'scores' has {len(sc)} values for {len(opts)} options; give one "
                    "score per option, in the options' order"
                )
            if not np.all(np.isfinite(sc)):
                raise InputError(f"item {self.name!r}: 'scores' must be finite")
            object.__setattr__(self, "scores", sc)

    @property
    def n_options(self) -> int:
        """Number of substantive options ``K``."""
        return len(self.options)

    @property
    def score_values(self) -> np.ndarray:
        """Scores of the options as a float array (default ``1..K``)."""
        if self.scores is None:
            return np.arange(1, self.n_options + 1, dtype=float)
        return np.asarray(self.scores, dtype=float)

    def index_of(self, option: str) -> int:
        """Position (0-based) of ``option``; raises :class:`InputError` for an unknown option."""
        try:
            return self.options.index(option)
        except ValueError:
            raise InputError(
                f"item {self.name!r}: {option!r} is not one of its options {list(self.options)}"
            ) from None

    def to_index(self, answers: Iterable[Any]) -> np.ndarray:
        """Map answers (option labels or option scores) to 0-based option positions.

        Missing codes and NaN become ``-1``; anything else unknown raises :class:`InputError`.

        Examples
        --------
        >>> it = Item("q", "Q?", ["no", "yes"], missing=["dk"])
        >>> it.to_index(["yes", "dk", 1, 2.0]).tolist()
        [1, -1, 0, 1]
        """
        vals = self.score_values
        out = []
        bad = []
        for a in answers:
            if a is None or (isinstance(a, float) and np.isnan(a)) or a is pd.NA:
                out.append(-1)
            elif isinstance(a, str):
                if a in self.options:
                    out.append(self.options.index(a))
                elif a in self.missing:
                    out.append(-1)
                else:
                    bad.append(a)
            elif isinstance(a, (int, float, np.integer, np.floating)) and not isinstance(a, bool):
                hit = np.flatnonzero(np.isclose(vals, float(a)))
                if hit.size:
                    out.append(int(hit[0]))
                else:
                    bad.append(a)
            else:
                bad.append(a)
        if bad:
            raise InputError(
                f"item {self.name!r}: {len(bad)} answers are neither options, scores "
                f"{vals.tolist()} nor missing codes, e.g. {bad[:3]!r}; recode them first"
            )
        return np.asarray(out, dtype=int)

    def encode(self, answers: Iterable[Any]) -> np.ndarray:
        """Map answers to option scores; missing codes and NaN become NaN.

        Examples
        --------
        >>> Item("q", "Q?", ["no", "yes"], scores=[0, 1]).encode(["yes", "no"]).tolist()
        [1.0, 0.0]
        """
        idx = self.to_index(answers)
        out = np.full(idx.shape, np.nan)
        ok = idx >= 0
        out[ok] = self.score_values[idx[ok]]
        return out


@dataclass(frozen=True)
class Scale:
    """Items combined into one score with a sign per item.

    The score of a respondent is ``mean(items with sign +1) - mean(items with sign -1)``, each
    mean over the items the respondent answered (missing answers skipped); a group with no
    answered item gives NaN. With all signs +1 this is the plain mean score.

    Parameters
    ----------
    name : str
    items : sequence of Item
    signs : sequence of {+1, -1}, optional
        Direction of each item (default all +1).

    Examples
    --------
    >>> a = Item("a", "A?", ["1", "2", "3"]); b = Item("b", "B?", ["1", "2", "3"])
    >>> Scale("mean", [a, b]).score({"a": [1, 3], "b": [3, float("nan")]}).tolist()
    [2.0, 3.0]
    """

    name: str
    items: tuple[Item, ...]
    signs: tuple[int, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        items = tuple(self.items)
        if not items:
            raise InputError(f"scale {self.name!r}: needs at least one item")
        for it in items:
            if not isinstance(it, Item):
                raise InputError(f"scale {self.name!r}: every entry of 'items' must be an Item, got {type(it).__name__}")
        names = [it.name for it in items]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"scale {self.name!r}: item names must be unique, repeated: {dup}")
        signs = (1,) * len(items) if self.signs is None else tuple(self.signs)
        if len(signs) != len(items):
            raise InputError(f"scale {self.name!r}: {len(signs)} signs for {len(items)} items")
        if any(s not in (1, -1) for s in signs):
            raise InputError(f"scale {self.name!r}: signs must be +1 or -1, got {list(signs)}")
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "signs", tuple(int(s) for s in signs))

    def score(self, answers: Mapping[str, Sequence[Any]] | pd.DataFrame) -> np.ndarray | pd.Series:
        """Scale score per respondent from a table with one column per item.

        Values may be option labels, option scores or missing codes. A DataFrame input gives a
        Series aligned to its index; a mapping gives an array.
        """
        is_df = isinstance(answers, pd.DataFrame)
        missing = [it.name for it in self.items if it.name not in answers]
        if missing:
            raise InputError(f"scale {self.name!r}: answer columns missing for items {missing}; pass a table "
                             "with one column per item, named like the items")
        cols = np.column_stack([it.encode(list(answers[it.name])) for it in self.items])
        signs = np.asarray(self.signs)
        out = np.zeros(cols.shape[0])
        for s in (1, -1):
            sel = signs == s
            if sel.any():
                block = cols[:, sel]
                cnt = np.sum(~np.isnan(block), axis=1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.where(cnt > 0, np.nansum(block, axis=1) / np.maximum(cnt, 1), np.nan)
                out = out + s * mean
        if is_df:
            return pd.Series(out, index=answers.index, name=self.name)
        return out
