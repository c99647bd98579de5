"""Pilot designs as an axis of :func:`rectify.compare`: which designs, how each cell draws its pilot,
which methods can use it, and the width each design saves against simple random pilots.

A design is named by a string -- ``"srs"`` (today's simple random pilot, the default and the
baseline, estimated by each method's own SRS estimator), ``"srs:design"`` (simple random pilots too, but
estimated by the design-based estimators the other designs use: the like-for-like baseline that
separates the design's gain from the estimator's), ``"neyman"`` (stratified over quantile bins of the LLM's uncertainty, Neyman allocation),
``"active"`` (inclusion probabilities proportional to the LLM's expected error with a 20% uniform floor,
fixed size) or ``"active:poisson"`` (the same, Poisson sampling) -- or by a dict of
:func:`rectify.design_pilot`'s options: ``{"design": "active", "sampling": "poisson", "uniform": 0.3,
"error": "err_col", "n_bins": 4, "strata": ["region"], "name": "my-active"}``. The expected error is by
default the LLM's own uncertainty (:func:`rectify.llm_uncertainty`: the sd of its answer distribution,
root mean square over the items, from the spec's probability columns); ``error`` names a frame column
instead (e.g. a calibrated error model).

Every non-SRS cell draws its pilot with :func:`rectify.design_pilot`, seeded from the cell's key
(comparison seed, pilot size, repeat and the design's token, which holds its name and options), so every
backend gives the same numbers; SRS cells are drawn exactly as before designs existed. Methods declare how
they treat unequal probabilities (:class:`rectify.registry.Method` ``design_support``): ``"weights"``
(design-based estimators), ``"ignores"`` (the estimate never reads the pilot's answers) or ``"no"`` --
those are not run under the design and :func:`not_run` says why.

Examples
--------
>>> [d.label for d in parse_designs(["srs", "active:poisson", {"design": "neyman", "n_bins": 3}])]
['srs', 'active:poisson', 'neyman']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError

__all__ = ["DesignSpec", "parse_designs", "design_error", "draw_design_pilot", "not_run", "width_table",
           "PI_COLUMN", "STRATUM_COLUMN"]

PI_COLUMN = "_rectify_pi_"
STRATUM_COLUMN = "_rectify_stratum_"
_NAMES = ("srs", "neyman", "active")
_KEYS = ("design", "sampling", "uniform", "error", "n_bins", "strata", "name")


@dataclass(frozen=True)
class DesignSpec:
    """One pilot design of a comparison (see the module notes).

    Examples
    --------
    >>> d = DesignSpec("active", sampling="poisson")
    >>> d.label, d.is_srs, d.token
    ('active:poisson', False, 'active:poisson|u=0.2|e=llm')
    """

    design: str
    sampling: str = "fixed"
    uniform: float = 0.2
    error: str | None = None
    n_bins: int = 4
    strata: tuple = ()
    name: str | None = None
    design_based: bool = False

    @property
    def is_srs(self) -> bool:
        """Today's simple random pilot, estimated by each method's own estimator."""
        return self.design == "srs" and not self.design_based

    @property
    def label(self) -> str:
        """The design's name in the tables."""
        if self.name:
            return self.name
        if self.design == "srs":
            return "srs:design" if self.design_based else "srs"
        return self.design + (":poisson" if self.sampling == "poisson" and self.design == "active" else "")

    @property
    def token(self) -> str:
        """The design and its options: part of every cell's seed and checkpoint key."""
        if self.is_srs:
            return "srs"
        parts = [self.label]
        if self.design == "srs":
            return "|".join(parts + ["design-based"])
        if self.design == "active":
            parts.append(f"u={self.uniform:g}")
        else:
            parts.append(f"bins={self.n_bins}" + (f"|strata={','.join(self.strata)}" if self.strata else ""))
        parts.append(f"e={self.error or 'llm'}")
        return "|".join(parts)


def _one(d: Any) -> DesignSpec:
    if isinstance(d, DesignSpec):
        return d
    if isinstance(d, str):
        name, _, samp = d.partition(":")
        if d == "srs:design":
            return DesignSpec("srs", design_based=True)
        if name not in _NAMES or (samp and (name != "active" or samp not in ("fixed", "poisson"))):
            raise ConfigError(f"unknown design {d!r}; use 'srs', 'srs:design', 'neyman', 'active' or 'active:poisson' "
                              f"(or a dict of rectify.design_pilot's options, e.g. {{'design': 'active', "
                              f"'uniform': 0.3}})")
        return DesignSpec(name, sampling=samp or "fixed")
    if isinstance(d, Mapping):
        extra = sorted(set(d) - set(_KEYS))
        if extra or d.get("design") not in _NAMES:
            raise ConfigError(f"design {dict(d)!r}: 'design' must be one of {_NAMES}"
                              + (f" and the keys {extra} are unknown (allowed: {_KEYS})" if extra else ""))
        if d.get("sampling", "fixed") not in ("fixed", "poisson"):
            raise ConfigError(f"design {dict(d)!r}: 'sampling' must be 'fixed' or 'poisson'")
        if d.get("sampling") == "poisson" and d["design"] != "active":
            raise ConfigError(f"design {dict(d)!r}: Poisson sampling is only for 'active' ('neyman' is stratified "
                              "fixed-size, 'srs' is today's simple random pilot)")
        u = d.get("uniform", 0.2)
        if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0 < u <= 1:
            raise ConfigError(f"design {dict(d)!r}: 'uniform' must be a number in (0, 1]")
        nb = d.get("n_bins", 4)
        if isinstance(nb, bool) or not isinstance(nb, int) or nb < 1:
            raise ConfigError(f"design {dict(d)!r}: 'n_bins' must be a positive whole number")
        st = d.get("strata", ())
        st = (st,) if isinstance(st, str) else tuple(st)
        err = d.get("error")
        if err is not None and not isinstance(err, str):
            raise ConfigError(f"design {dict(d)!r}: 'error' must name a frame column of expected errors")
        name = d.get("name")
        if name is not None and (not isinstance(name, str) or not name or name == "srs"):
            raise ConfigError(f"design {dict(d)!r}: 'name' must be a non-empty label other than 'srs'")
        # a named simple random design is estimated like the other designs (see "srs:design")
        return DesignSpec(d["design"], d.get("sampling", "fixed"), float(u), err, nb, st, name,
                          design_based=d["design"] == "srs" and name is not None)
    raise ConfigError(f"a design must be a name ('srs', 'neyman', 'active', 'active:poisson') or a dict, got {d!r}")


def parse_designs(designs: Any) -> list[DesignSpec]:
    """Check ``compare``'s ``designs`` argument; :class:`~rectify.errors.ConfigError` names a bad one.

    Examples
    --------
    >>> parse_designs("active")
    Traceback (most recent call last):
    ...
    rectify.errors.ConfigError: argument 'designs' must be a list of designs, e.g. ["srs", "active"], got 'active'
    """
    if isinstance(designs, (str, Mapping)) or not isinstance(designs, Sequence) or not len(designs):
        raise ConfigError(f"argument 'designs' must be a list of designs, e.g. [\"srs\", \"active\"], got {designs!r}")
    out = [_one(d) for d in designs]
    labels = [d.label for d in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"designs {dup} are given twice; give each a distinct 'name'")
    return out


def design_error(frame: pd.DataFrame, spec: Any, d: DesignSpec) -> np.ndarray:
    """Expected error of the LLM's prediction per frame row for design ``d`` (see the module notes).

    Examples
    --------
    >>> from rectify.comparison import make_spec
    >>> from rectify.datasets import load_anes96_llm
    >>> from rectify.pilot_design import llm_uncertainty
    >>> df = load_anes96_llm(); spec = make_spec(df, ["self_lr"], probabilities="{item}_p{k}")
    >>> e = design_error(df, spec, DesignSpec("active"))
    >>> bool(np.allclose(e, llm_uncertainty(df[[f"self_lr_p{k}" for k in range(1, 8)]].to_numpy())))
    True
    """
    from .pilot_design import llm_uncertainty

    if d.design == "srs":
        return np.ones(len(frame))  # (not used: every row has pi = n / N)
    if d.error is not None:
        if d.error not in frame.columns:
            raise ConfigError(f"design {d.label!r}: error column {d.error!r} is not in the frame")
        e = frame[d.error].to_numpy(dtype=float)
        if not np.isfinite(e).all() or (e < 0).any():
            raise ConfigError(f"design {d.label!r}: error column {d.error!r} must be finite and >= 0 in every row")
        return e
    missing = [it for it in spec.items if it not in spec.probabilities]
    if missing:
        raise ConfigError(f"design {d.label!r} needs the LLM's uncertainty: give 'probabilities' (the LLM's option "
                          f"probability columns) for items {missing}, or an 'error' column in the design")
    var = np.zeros(len(frame))
    for it in spec.items:
        P = frame[list(spec.probabilities[it])].to_numpy(dtype=float)
        if not np.isfinite(P).all():
            raise ConfigError(f"design {d.label!r}: the LLM's probabilities of item {it!r} are missing for some "
                              "rows; every frame row needs them to compute its inclusion probability")
        var += llm_uncertainty(P, spec.scores) ** 2
    return np.sqrt(var / len(spec.items))


def draw_design_pilot(frame: pd.DataFrame, n: int, d: DesignSpec, error: np.ndarray,
                      rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """The cell's pilot under design ``d`` (columns :data:`PI_COLUMN`, and :data:`STRATUM_COLUMN` for
    ``"neyman"``) and the record ``spec.design`` carries to the adapters.

    Examples
    --------
    >>> f = pd.DataFrame({"x": range(100)})
    >>> p, rec = draw_design_pilot(f, 10, DesignSpec("active"), np.linspace(0.1, 1, 100), np.random.default_rng(0))
    >>> len(p), rec["sampling"], round(float((1 / p[PI_COLUMN]).sum()))
    (10, 'fixed', 83)
    """
    from .pilot_design import design_pilot

    if d.strata:
        absent = [c for c in d.strata if c not in frame.columns]
        if absent:
            raise ConfigError(f"design {d.label!r}: strata columns {absent} are not in the frame")
    try:
        pilot = design_pilot(frame, int(n), d.design, error=error, strata=list(d.strata) or None, n_bins=d.n_bins,
                             uniform=d.uniform, sampling=d.sampling, random_state=rng, column=PI_COLUMN,
                             stratum_column=STRATUM_COLUMN)
    except InputError as err:
        raise ConfigError(f"design {d.label!r}: {err}") from None
    rec = pilot.attrs["rectify_design"]
    return pilot, {"name": d.label, "design": d.design, "sampling": rec["sampling"], "pi": PI_COLUMN,
                   "strata": STRATUM_COLUMN if rec.get("strata") else None}


#: reasons for methods registered elsewhere without one (the fine-tuning family, rectify.finetuning)
_REASONS = {
    "lora": "the LoRA classifier is fine-tuned on the pilot unweighted and its average prediction is the estimate",
    "lora+xfit-ppi++": "cross-fitted PPI++ averages the pilot's residuals unweighted (no 1/pi)",
    "lora+ppi++ (in-sample)": "PPI++ on in-sample predictions averages the pilot's residuals unweighted (no 1/pi)",
}


def not_run(method: Any, d: DesignSpec) -> str | None:
    """Why ``method`` is not run under design ``d`` (None: it runs).

    Examples
    --------
    >>> from rectify.registry import get
    >>> not_run(get("ppi++"), DesignSpec("active")) is None
    True
    >>> not_run(get("bayes-chain"), DesignSpec("active"))[:40]
    "not run under design 'active': its poste"
    """
    if d.is_srs or getattr(method, "design_support", "no") in ("weights", "ignores"):
        return None
    why = getattr(method, "design_note", "") or _REASONS.get(method.name) or (
        "it does not use inclusion probabilities: its estimate would treat the designed pilot as a simple random one")
    return f"not run under design {d.label!r}: {why}"


def width_table(estimates: pd.DataFrame, term: str = "mean", grouping: str = "all",
                tolerance: float = 0.01) -> pd.DataFrame:
    """Interval width per (item, method, design, pilot size) and the width saved against SRS.

    From a comparison's ``estimates`` (with a ``design`` column): over repeats, the mean width of the
    ``term`` interval (whole frame), its ratio to the SRS width of the same item, method and pilot size,
    ``width_saved = 1 - ratio`` (the ratio the verdict uses) and the coverage of the frame's true value. When the comparison also ran
    ``"srs:design"`` (simple random pilots through the design-based estimators), ``ratio_to_srs_design``
    is the ratio to those: the design's own gain, without the difference between a method's SRS estimator
    and its design-based one, and the verdict uses it. ``verdict``: "narrower" (ratio < 1 - margin), "wider"
    (ratio > 1 + margin) or "no gain (within margin)", where the margin is the larger of ``tolerance`` and two
    Monte-Carlo standard errors of the ratio (the pilots of two designs are drawn independently, so with few
    repeats only a large difference counts); a design without an SRS cell to compare with says so.
    Rows averaged over items have item ``"(mean over items)"``.

    Examples
    --------
    >>> e = pd.DataFrame({"item": "q", "method": "m", "design": ["srs", "srs", "active", "active"],
    ...     "n_pilot": 50, "repeat": [0, 1, 0, 1], "grouping": "all", "group": "all", "term": "mean",
    ...     "estimate": 2.0, "conf_low": [1.5, 1.52, 1.75, 1.76], "conf_high": [2.5, 2.48, 2.25, 2.24], "truth": 2.1})
    >>> width_table(e)[["design", "width", "ratio_to_srs", "width_saved", "coverage", "verdict"]].round(3).values.tolist()[:2]
    [['srs', 0.98, 1.0, 0.0, 1.0, 'baseline'], ['active', 0.49, 0.5, 0.5, 1.0, 'narrower']]
    """
    from .compare_spec import ITEM_MEAN

    cols = ["item", "method", "design", "n_pilot", "repeats", "width", "ratio_to_srs", "width_saved", "coverage",
            "verdict"]
    like = "srs:design" in set(estimates.get("design", pd.Series(dtype=object)))
    if like:
        cols.insert(7, "ratio_to_srs_design")
    if estimates.empty or "design" not in estimates.columns:
        return pd.DataFrame(columns=cols)
    e = estimates[(estimates["term"] == term) & (estimates["grouping"] == grouping)]
    e = e.assign(width=e["conf_high"] - e["conf_low"],
                 covered=((e["conf_low"] <= e["truth"]) & (e["truth"] <= e["conf_high"])).astype(float))
    e = e[np.isfinite(e["width"])]
    if e.empty:
        return pd.DataFrame(columns=cols)
    g = e.groupby(["item", "method", "design", "n_pilot"], sort=False)
    t = g.agg(repeats=("width", "size"), width=("width", "mean"), coverage=("covered", "mean"),
              sd=("width", "std")).reset_index()
    t["rse"] = (t["sd"].fillna(0.0) / np.sqrt(t["repeats"]) / t["width"]) ** 2  # squared relative MC s.e.
    key = pd.MultiIndex.from_frame(t[["item", "method", "n_pilot"]])
    ratios = {"ratio_to_srs": "srs", "ratio_to_srs_design": "srs:design"} if like else {"ratio_to_srs": "srs"}
    used = "ratio_to_srs_design" if like else "ratio_to_srs"
    for col, ref in ratios.items():
        base = t[t["design"] == ref].set_index(["item", "method", "n_pilot"])
        t[col] = t["width"].to_numpy() / base["width"].reindex(key).to_numpy()
        if col == used:
            t["margin"] = np.maximum(tolerance, 2 * np.sqrt(t["rse"].to_numpy() + base["rse"].reindex(key).to_numpy()))
    if t["item"].nunique() > 1:
        avg = t.groupby(["method", "design", "n_pilot"], sort=False).agg(
            repeats=("repeats", "min"), width=("width", "mean"), coverage=("coverage", "mean"),
            margin=("margin", "mean"), **{c: (c, "mean") for c in ratios}).reset_index().assign(item=ITEM_MEAN)
        t = pd.concat([t, avg], ignore_index=True)
    t["width_saved"] = 1.0 - t[used]

    def verdict(row) -> str:
        if row["design"] in ratios.values():
            return "baseline"
        r, m = row[used], row["margin"]
        if not math.isfinite(r):
            return "no SRS cell to compare"
        return "narrower" if r < 1 - m else ("wider" if r > 1 + m else f"no gain (within {m:.0%})")

    t["verdict"] = t.apply(verdict, axis=1)
    return t[cols].sort_values(["item", "n_pilot", "method"], kind="stable").reset_index(drop=True)
