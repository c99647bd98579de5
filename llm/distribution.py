"""Answer distributions from token log-probabilities or sampled answers.

A model answers an item by emitting one option label ("1".."K"). The probability of each option
is the probability of its label token at the answer position. The mass the model puts on other
tokens is reported (``mass_on_options``) and the option probabilities are renormalised
explicitly, never silently.

Examples
--------
>>> import numpy as np
>>> from rectify.llm.distribution import probs_from_logprobs, answer_table
>>> raw = probs_from_logprobs({"1": np.log(0.2), "2": np.log(0.2), "The": np.log(0.5)}, ("1", "2", "3"))
>>> np.round(raw, 3).tolist()
[0.2, 0.2, 0.0]
>>> answer_table(raw[None, :], ["No", "Maybe", "Yes"]).round(3).to_dict("records")
[{'No': 0.5, 'Maybe': 0.5, 'Yes': 0.0, 'mass_on_options': 0.4, 'expected': 1.5, 'mode': 'No'}]
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from rectify.errors import InputError

__all__ = [
    "probs_from_logprobs",
    "probs_from_samples",
    "parse_answer",
    "renormalize",
    "expected_score",
    "mode_index",
    "answer_table",
]


def _norm_token(tok: str) -> str:
    # byte-level BPE spaces and sentencepiece underscores both mean a leading space
    return tok.replace("\u0120", " ").replace("\u2581", " ").strip()


def probs_from_logprobs(logprobs: Mapping[str, float], labels: Sequence[str]) -> np.ndarray:
    """Raw (not renormalised) option probabilities from a token -> log-prob mapping.

    Tokens equal to a label after stripping whitespace (``"1"``, ``" 1"``) add up; other tokens
    are mass outside the options. Tokens absent from ``logprobs`` (e.g. beyond ``top_logprobs``)
    count as 0, which is a lower bound.

    Examples
    --------
    >>> probs_from_logprobs({"1": math.log(0.3), " 1": math.log(0.1), "2": math.log(0.2)}, ("1", "2")).round(3).tolist()
    [0.4, 0.2]
    """
    pos = {str(lab): j for j, lab in enumerate(labels)}
    out = np.zeros(len(labels))
    for tok, lp in logprobs.items():
        j = pos.get(_norm_token(str(tok)))
        if j is not None and lp is not None and math.isfinite(lp):
            out[j] += math.exp(lp)
    return np.minimum(out, 1.0)


_ANSWER_RE = re.compile(r"^\s*(?:answer\s*[:\-]?\s*)?\(?([A-Za-z0-9]+)\)?[\s\.\):,]*", re.IGNORECASE)


def parse_answer(text: str | None, labels: Sequence[str]) -> int | None:
    """Position of the label a sampled answer starts with, or None if it is off-scale.

    Examples
    --------
    >>> parse_answer("3. Somewhat", ("1", "2", "3")), parse_answer("I cannot answer", ("1", "2"))
    (2, None)
    """
    if not text:
        return None
    m = _ANSWER_RE.match(text)
    if not m:
        return None
    tok = m.group(1)
    for j, lab in enumerate(labels):
        if tok == str(lab):
            return j
    return None


def probs_from_samples(texts: Sequence[str | None], labels: Sequence[str]) -> np.ndarray:
    """Raw option probabilities from ``k`` sampled answers: share of samples per option.

    Unparsable answers are mass outside the options.

    Examples
    --------
    >>> probs_from_samples(["1", "2", "2", "no idea"], ("1", "2", "3")).tolist()
    [0.25, 0.5, 0.0]
    """
    if len(texts) == 0:
        raise InputError("no sampled answers to parse")
    counts = np.zeros(len(labels))
    for t in texts:
        j = parse_answer(t, labels)
        if j is not None:
            counts[j] += 1
    return counts / len(texts)


def renormalize(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split raw option probabilities ``(n, K)`` into renormalised rows and the mass on options.

    Rows with zero mass (or NaN) come back as NaN rows with mass 0 (or NaN): the model gave no
    usable answer there.

    Examples
    --------
    >>> p, m = renormalize(np.array([[0.1, 0.3], [0.0, 0.0]]))
    >>> p.round(2).tolist(), m.round(2).tolist()
    ([[0.25, 0.75], [nan, nan]], [0.4, 0.0])
    """
    raw = np.asarray(raw, dtype=float)
    if raw.ndim != 2:
        raise InputError(f"raw probabilities must be a 2-D (n, K) array, got shape {raw.shape}")
    if np.any(raw[~np.isnan(raw)] < 0):
        raise InputError("raw probabilities must be non-negative")
    mass = raw.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = raw / mass[:, None]
    p[~(mass > 0)] = np.nan
    return p, mass


def expected_score(probs: np.ndarray, scores: Sequence[float]) -> np.ndarray:
    """Expected score ``sum_k p_k s_k`` per row (NaN rows stay NaN).

    Examples
    --------
    >>> expected_score(np.array([[0.5, 0.5, 0.0]]), [1, 2, 3]).tolist()
    [1.5]
    """
    return np.asarray(probs, float) @ np.asarray(scores, float)


def mode_index(probs: np.ndarray) -> np.ndarray:
    """Most likely option (0-based) per row; -1 for NaN rows. Ties go to the lower option.

    Examples
    --------
    >>> mode_index(np.array([[0.2, 0.8], [np.nan, np.nan]])).tolist()
    [1, -1]
    """
    probs = np.asarray(probs, float)
    bad = np.isnan(probs).any(axis=1)
    out = np.argmax(np.where(np.isnan(probs), -np.inf, probs), axis=1)
    out[bad] = -1
    return out


def answer_table(
    raw: np.ndarray,
    options: Sequence[str],
    scores: Sequence[float] | None = None,
    index: Any = None,
    status: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Tidy answer distributions aligned to a frame's index.

    Parameters
    ----------
    raw : ndarray (n, K)
        Raw option probabilities in the item's canonical order (not renormalised).
    options : sequence of str
        Option labels (column names).
    scores : sequence of float, optional
        Option scores (default ``1..K``) for the expected score.
    index : pandas Index, optional
    status : sequence of str, optional
        Per-row request status (``"ok"``, ``"off_scale"``, ``"failed"``), added as a column.

    Returns
    -------
    DataFrame
        One column per option (renormalised probabilities), ``mass_on_options`` (raw mass the
        model put on the option tokens), ``expected`` (expected score), ``mode`` (most likely
        option label; NaN where no usable answer), and ``status`` if given.

    Examples
    --------
    >>> answer_table(np.array([[0.1, 0.1]]), ["no", "yes"], scores=[0, 1])["expected"].tolist()
    [0.5]
    """
    p, mass = renormalize(raw)
    K = p.shape[1]
    if len(options) != K:
        raise InputError(f"{len(options)} option names for {K} probability columns")
    scores = np.arange(1, K + 1, dtype=float) if scores is None else np.asarray(scores, float)
    df = pd.DataFrame(p, columns=list(options), index=index)
    df["mass_on_options"] = mass
    df["expected"] = expected_score(p, scores)
    mi = mode_index(p)
    df["mode"] = pd.Series([options[i] if i >= 0 else np.nan for i in mi], index=df.index, dtype=object)
    if status is not None:
        df["status"] = list(status)
    return df
