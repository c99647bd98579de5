"""Boundary checks shared by every public entry point: column names, frames, settings, URLs, text.

Each check raises a :mod:`rectify.errors` error whose message names the argument or column at
fault and says what to do; nothing is coerced silently. What is accepted and what is refused:

======================================  ====================================================
input                                   decision
======================================  ====================================================
a column name (``y``, ``predicted``,    a string. A list or tuple holding exactly one string
``strata``, ``by``, ...)                is unambiguous and is read as that name. A Series, an
                                        array, a list of several names, a number or ``None``
                                        is refused (a Series is not matched to rows by
                                        position: put it in the frame and pass its name).
column labels of a frame                strings; a non-string label used by a verb (``0``,
                                        ``1.5``) is refused: rename with
                                        ``df.columns = df.columns.astype(str)``.
a duplicated column name                refused where the column is used (which copy was
                                        meant cannot be known).
numbers stored as text                  refused where a number is expected (outcome,
                                        prediction, a bare formula term); ``C(x)`` in a
                                        formula asks for categories explicitly.
datetimes (with or without a zone)      refused in a formula or as a number: convert to a
                                        number (e.g. the year) or to categories first.
a numeric setting                       a real (not bool, not NaN) number in its range.
a URL                                   no credentials anywhere: user:password, a query
                                        parameter with a secret-like name *or* a key-like
                                        value, any fragment, a key-like path segment.
text for a tokenizer                    none of the tokenizer's special or added tokens.
======================================  ====================================================

Examples
--------
>>> as_label(["trust"], "y")
'trust'
>>> try:
...     as_label(["trust", "age"], "y")
... except InputError as err:
...     print(str(err)[:59])
argument 'y' must name one column (a string), got a list of
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import urllib.parse
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError

__all__ = ["as_label", "check_labels", "check_unique", "check_numeric_text", "check_not_datetime",
           "check_number", "check_url_secrets", "refuse_special_tokens", "looks_like_numbers", "as_pair"]


def _kind(value: Any) -> str:
    if isinstance(value, pd.Series):
        return "a pandas Series"
    if isinstance(value, pd.DataFrame):
        return "a DataFrame"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"{type(value).__name__} {value!r}"


def as_label(value: Any, argument: str) -> str:
    """The one column name that ``value`` unambiguously gives, or an :class:`InputError`.

    A string is returned as is; a list or tuple of exactly one string gives that string.

    Examples
    --------
    >>> as_label("trust", "y"), as_label(("trust",), "y")
    ('trust', 'trust')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if isinstance(value, pd.Series):
        hint = f" (e.g. {value.name!r})" if isinstance(value.name, str) else ""
        raise InputError(f"argument {argument!r} must name a column (a string), got a pandas Series; put the values "
                         f"in the frame as a column and pass its name{hint}")
    if isinstance(value, (list, tuple, np.ndarray, pd.Index)):
        raise InputError(f"argument {argument!r} must name one column (a string), got {_kind(value)}; pass one "
                         f"column name (call the function once per column for several)")
    raise InputError(f"argument {argument!r} must be a column name (a string), got {_kind(value)}; column labels "
                     f"must be strings: rename the columns with df.columns = df.columns.astype(str) and pass the "
                     f"name as a string")


def check_labels(columns: Iterable[Any], frame: str) -> None:
    """Refuse a non-string column label among ``columns`` (named by the caller).

    Examples
    --------
    >>> check_labels(["a", "b"], "pilot")
    """
    for c in columns:
        if not isinstance(c, str):
            raise InputError(f"a column of the {frame} must be named by one string, got {_kind(c)}; pass the column's "
                             f"name as a string (column labels must be strings: rename them with "
                             f"df.columns = df.columns.astype(str))")


def check_unique(df: pd.DataFrame, columns: Iterable[str], frame: str) -> None:
    """Refuse a used column whose name appears more than once in ``df``.

    Examples
    --------
    >>> df = pd.DataFrame([[1, 2]], columns=["a", "a"])
    >>> try:
    ...     check_unique(df, ["a"], "pilot")
    ... except InputError as err:
    ...     print(str(err)[:44])
    column 'a' appears 2 times in the pilot data
    """
    if df.columns.is_unique:
        return
    counts = df.columns.value_counts()
    for c in columns:
        if isinstance(c, str) and counts.get(c, 0) > 1:
            raise InputError(f"column {c!r} appears {int(counts[c])} times in the {frame} data; which copy is meant "
                             f"cannot be known: give each column a unique name (or keep the first with "
                             f"df.loc[:, ~df.columns.duplicated()])")


def looks_like_numbers(s: pd.Series) -> bool:
    """True when a text column's non-missing values all read as numbers (``"1"``, ``"2.5"``).

    Examples
    --------
    >>> looks_like_numbers(pd.Series(["1", "2.5", None])), looks_like_numbers(pd.Series(["a", "1"]))
    (True, False)
    """
    if not (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)):
        return False
    vals = s.dropna()
    if len(vals) == 0 or not all(isinstance(v, str) for v in vals):
        return False
    return bool(pd.to_numeric(vals, errors="coerce").notna().all())


def check_numeric_text(s: pd.Series, col: str, frame: str, categories_hint: bool = False) -> None:
    """Refuse numbers stored as text where a number is expected.

    Examples
    --------
    >>> try:
    ...     check_numeric_text(pd.Series(["1", "2"]), "trust", "pilot")
    ... except InputError as err:
    ...     print(str(err)[:56])
    column 'trust' of the pilot holds numbers stored as text
    """
    also = " (or write C(" + col + ") in the formula to treat its values as categories)" if categories_hint else ""
    if pd.api.types.is_object_dtype(s):
        vals = s.dropna()
        text = [v for v in vals if isinstance(v, str)]
        if text and any(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals):
            raise InputError(f"column {col!r} of the {frame} mixes numbers and text (e.g. {text[0]!r}); code missing "
                             f"values as NaN and convert it with pd.to_numeric(df[{col!r}], errors='coerce'){also}")
    if looks_like_numbers(s):
        raise InputError(f"column {col!r} of the {frame} holds numbers stored as text (e.g. "
                         f"{s.dropna().iloc[0]!r}); convert it with pd.to_numeric(df[{col!r}]){also}")


def check_not_datetime(s: pd.Series, col: str, frame: str) -> None:
    """Refuse a datetime column (timezone-aware or not) where a number or a category is expected.

    Examples
    --------
    >>> s = pd.Series(pd.date_range("2020-01-01", periods=2, tz="UTC"))
    >>> try:
    ...     check_not_datetime(s, "when", "pilot")
    ... except InputError as err:
    ...     print(str(err)[:63])
    column 'when' of the pilot holds timezone-aware datetimes (UTC)
    """
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        what = f"timezone-aware datetimes ({s.dtype.tz})"
    elif pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        what = f"dates or times ({s.dtype})"
    else:
        return
    raise InputError(f"column {col!r} of the {frame} holds {what}; rectify models numbers and categories: convert "
                     f"it first, e.g. df[{col!r}].dt.year for a number or df[{col!r}].dt.strftime('%Y-%m') for "
                     f"categories")


def check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False,
                 error: type[Exception] = InputError, hint: str = "") -> float:
    """A real number (not a bool, not NaN) within ``[low, high]`` (ends open if asked).

    Examples
    --------
    >>> check_number(3, "epochs", low=1, integer=True)
    3
    >>> try:
    ...     check_number(-1.0, "timeout", low=0, low_open=True)
    ... except InputError as err:
    ...     print(err)
    argument 'timeout' must be a number > 0, got -1.0
    """
    ok_type = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        want = "a whole number" if integer else "a number"
        raise error(f"argument {name!r} must be {want}, got {_kind(value)}{hint}")
    if not math.isfinite(float(value)):
        raise error(f"argument {name!r} must be a finite number, got {value!r}{hint}")
    parts = []
    if low is not None and (value < low or (low_open and value == low)):
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None and (value > high or (high_open and value == high)):
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    if parts:
        rng = [f"{'>' if low_open else '>='} {low:g}"] if low is not None else []
        rng += [f"{'<' if high_open else '<='} {high:g}"] if high is not None else []
        raise error(f"argument {name!r} must be a {'whole ' if integer else ''}number {' and '.join(rng)}, "
                    f"got {value!r}{hint}")
    return value


# ------------------------------------------------------------------------------------------ URLs
_SECRET_NAME = re.compile(r"(?i)key|token|secret|pass|pwd|auth|sig|cred|session|bearer|access")
_KEY_PREFIX = re.compile(r"^(?:sk|pk|rk|gsk|hf|xai|ghp|gho|glpat|key|api|tok)[-_][A-Za-z0-9_-]{8,}$|^AIza[0-9A-Za-z_-]{20,}$"
                         r"|^(?i:bearer)\s")
_HEX = re.compile(r"^[0-9a-fA-F]{32,}$")


def _looks_like_key(text: str) -> bool:
    """A value that has the shape of an API key: a known key prefix, a long hex string, or a long
    token mixing upper case, lower case and digits without dots or spaces."""
    text = urllib.parse.unquote(text)
    if _KEY_PREFIX.search(text) or _HEX.match(text):
        return True
    return (len(text) >= 24 and re.fullmatch(r"[A-Za-z0-9_\-+/=]+", text) is not None
            and any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text))


def check_url_secrets(url: Any, argument: str = "base_url") -> str:
    """Refuse a URL that carries a credential anywhere; the message never repeats the URL.

    Refused: ``user:password@host``; a query parameter whose name looks secret (``key``,
    ``token``, ``sig``, ...) or whose value looks like a key (``sk-...``, 32+ hex digits, a long
    mixed-case token), whatever its name; any fragment (a base URL has no use for one); a path
    segment that looks like a key. Kept: ``?api-version=2024-06-01`` and model names in the path.

    Examples
    --------
    >>> _ = check_url_secrets("http://127.0.0.1:8000/v1?api-version=2024-06-01")  # kept
    >>> bad = "https://example.org/v1?x=sk-abcdefghijklmnop"
    >>> try:
    ...     check_url_secrets(bad)
    ... except ConfigError as err:
    ...     msg = str(err)
    >>> "key-like value in query parameter 'x'" in msg, "sk-" in msg
    (True, False)
    """
    if not isinstance(url, str):
        raise InputError(f"argument {argument!r} must be a URL string, got {type(url).__name__}")
    try:
        p = urllib.parse.urlsplit(url)
        has_user = bool(p.username or p.password or "@" in p.netloc)
    except ValueError:
        raise ConfigError(f"argument {argument!r} is not a valid URL; write it as http(s)://host[:port]/path") from None
    what = None
    if has_user:
        what = "credentials (user:password@host)"
    elif p.fragment:
        what = "a fragment (#...); a base URL has none"
    else:
        for k, v in urllib.parse.parse_qsl(p.query, keep_blank_values=True):
            if _SECRET_NAME.search(k):
                what = f"a secret-like query parameter {k!r}"
                break
            if _looks_like_key(v):
                what = f"a key-like value in query parameter {k!r}"
                break
        else:
            if any(_looks_like_key(seg) for seg in p.path.split("/") if seg):
                what = "a key-like segment in its path"
    if what is None:
        return url
    raise ConfigError(f"argument {argument!r} carries {what}; remove it from the URL and export the key in the "
                      "environment variable named by api_key_env (rectify sends it as a bearer token)")


# ------------------------------------------------------------------------------------------ tokenizer text
def _special_tokens(tokenizer: Any) -> list[str]:
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    try:
        found |= set(tokenizer.get_added_vocab())
    except (AttributeError, TypeError):
        pass
    return sorted((t for t in found if isinstance(t, str) and t.strip()), key=len, reverse=True)


@functools.lru_cache(maxsize=8)
def _special_pattern(specials: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(re.escape(t) for t in specials))


def refuse_special_tokens(tokenizer: Any, texts: Sequence[str], where: str | Sequence[str]) -> None:
    """Refuse text holding any of the tokenizer's special or added tokens (not only chat-turn
    markers: e.g. SmolLM2's ``<file_sep>``), which the tokenizer would read as control tokens.

    Examples
    --------
    >>> class Tok:
    ...     all_special_tokens = ["<|im_start|>"]
    ...     def get_added_vocab(self):
    ...         return {"<file_sep>": 5}
    >>> refuse_special_tokens(Tok(), ["age 34"], "persona")
    >>> try:
    ...     refuse_special_tokens(Tok(), ["age <file_sep> 34"], "persona")
    ... except InputError as err:
    ...     print(str(err)[:52])
    persona 1 contains the tokenizer's special token '<f
    """
    specials = _special_tokens(tokenizer)
    if not specials:
        return
    pat = _special_pattern(tuple(specials))
    for i, t in enumerate(texts):
        m = pat.search(t)
        if m is not None:
            name = f"{where} {i + 1}" if isinstance(where, str) else where[i]
            raise InputError(f"{name} contains the tokenizer's special token {m.group(0)!r}; the model would "
                             f"read it as a control token, not as text. Remove or rewrite it in the data")


def as_pair(value: Any, name: str, error: type[Exception] = InputError) -> tuple[float, float]:
    """A ``(lower, upper)`` pair of numbers (infinite ends allowed) with ``lower < upper``.

    Examples
    --------
    >>> as_pair((0.5, float("inf")), "trim")
    (0.5, inf)
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)) or len(value) != 2:
        raise error(f"argument {name!r} must be a pair (lower, upper), got {_kind(value)}; write e.g. (0.5, 3.0) "
                    f"(use -inf or inf for an open end)")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(float(v)):
            raise error(f"argument {name!r} must hold two numbers (lower, upper), got {tuple(value)!r}")
        out.append(float(v))
    if not out[0] < out[1]:
        raise error(f"argument {name!r} must have lower < upper, got {tuple(value)!r}; swap or widen them")
    return out[0], out[1]
