"""The outcome of a comparison (:class:`Comparison`) and its summaries: :func:`summarize` over
repeats, the :func:`headline` overview and the families x axes table (:func:`axes_table`).

Examples
--------
>>> HEADLINE[0][:2]
('W1 (norm.)', ('estimate',))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd

from .compare_spec import ITEM_MEAN
from .registry import ALL, Spec


# ---------------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Outcome of :func:`compare`.

    Attributes
    ----------
    table : DataFrame
        Tidy metrics, columns :data:`TABLE_COLUMNS`.
    estimates : DataFrame
        Every method's population estimates per cell, with the human ``truth``.
    coefficients : DataFrame
        Every method's formula coefficients per cell, with the human OLS value.
    failures : DataFrame
        Cells whose method raised an error (method, n_pilot, repeat, error).
    skipped : dict
        Methods not available here -> reason.
    spec : Spec
    methods : dict
        name -> (family, description) of the methods run.
    pilot_sizes, repeats, random_state
    meta : dict
        ``n_frame``; ``planning`` (see :func:`_planning`); ``checkpoint``: the folder and the
        numbers of cells ``resumed`` from it and ``computed`` in this run, and the ``damaged``
        cells (files cut short or altered) that were computed again.
    """

    table: pd.DataFrame
    estimates: pd.DataFrame
    coefficients: pd.DataFrame
    failures: pd.DataFrame
    skipped: dict
    spec: Spec
    methods: dict
    pilot_sizes: tuple
    repeats: int
    random_state: int
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean, SD, min and max over repeats per (method, n_pilot, source, axis, metric, item, group)."""
        return summarize(self.table)

    def headline(self, n_pilot: int | None = None, design: str | None = None) -> pd.DataFrame:
        """The fidelity overview at one pilot size (default the largest): see :func:`headline`."""
        return headline(self.table, n_pilot, list(self.methods), design=design)

    def widths(self, term: str = "mean") -> pd.DataFrame:
        """Interval width per design and the width saved against SRS
        (:func:`rectify.compare_designs.width_table`); empty without pilot designs."""
        from .compare_designs import width_table

        return width_table(self.estimates, term=term)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Summaries over repeats: mean, sd, min, max, number of repeats and of estimable repeats.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "m", "family": "f", "n_pilot": 50, "repeat": [0, 1],
    ...     "source": "estimate", "axis": "marginal", "metric": "x", "item": "i", "grouping": "all",
    ...     "group": "all", "value": [1.0, 3.0], "n": 10, "note": ""})
    >>> s = summarize(t)
    >>> float(s["mean"].iloc[0]), round(float(s["sd"].iloc[0]), 4), int(s["n_repeats"].iloc[0])
    (2.0, 1.4142, 2)
    """
    keys = ["method", "family", "n_pilot", "source", "axis", "metric", "item", "grouping", "group"]
    if "design" in table.columns:  # a comparison with pilot designs: one summary per design
        keys.insert(2, "design")
    g = table.groupby(keys, sort=False, dropna=False)["value"]
    out = g.agg(mean="mean", sd="std", min="min", max="max", n_estimable="count", n_repeats="size").reset_index()
    return out


def one_design(table: pd.DataFrame, design: str | None = None) -> pd.DataFrame:
    """The rows of one pilot design (``design``; default ``"srs"`` if present, else the first); the table
    itself when it has no ``design`` column.

    Examples
    --------
    >>> one_design(pd.DataFrame({"design": ["active", "srs"], "value": [1, 2]}))["value"].tolist()
    [2]
    """
    if "design" not in table.columns or table.empty:
        return table
    names = list(pd.unique(table["design"]))
    pick = design if design is not None else ("srs" if "srs" in names else names[0])
    return table[table["design"] == pick]


#: the overview's columns: (label, source preference, axis, metric, item)
HEADLINE = [
    ("W1 (norm.)", ("estimate",), "marginal", "wasserstein1_norm", ITEM_MEAN),
    ("|mean diff|", ("estimate",), "marginal", "mean_abs_difference", ITEM_MEAN),
    ("SD ratio", ("estimate",), "marginal", "sd_ratio", ITEM_MEAN),
    ("mean coverage", ("estimate",), "marginal", "mean_coverage", ITEM_MEAN),
    ("CCC", ("estimate", "respondents"), "structural", "lins_ccc", None),
    ("attenuation", ("estimate", "respondents"), "structural", "attenuation_slope", None),
    ("coef coverage", ("estimate", "respondents"), "structural", "coverage", None),
    ("r (scale)", ("respondents",), "individual", "pearson_r", None),
    ("kappa", ("respondents",), "individual", "weighted_kappa", ITEM_MEAN),
    ("log-loss", ("respondents",), "individual", "log_loss", ITEM_MEAN),
]


def headline(table: pd.DataFrame, n_pilot: int | None = None, methods: Sequence[str] | None = None,
             numeric: bool = False, grouping: str = ALL, group: str = ALL,
             columns: Sequence[tuple] | None = None, design: str | None = None) -> pd.DataFrame:
    """One row per method: headline metrics (whole sample) as "mean ± sd" over repeats.

    With pilot designs (a ``design`` column), one design's cells: ``design`` (default ``"srs"`` if
    present, else the first design of the table).

    Structural metrics come from the method's own coefficients when it gives them, else from
    its per-person predictions. ``numeric=True`` returns the means as floats. ``grouping`` and
    ``group`` pick one subgroup (default: the whole sample); ``columns`` replaces :data:`HEADLINE`.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "m", "family": "f", "n_pilot": 50, "repeat": [0, 1],
    ...     "source": "estimate", "axis": "marginal", "metric": "sd_ratio", "item": ITEM_MEAN,
    ...     "grouping": "all", "group": "all", "value": [0.8, 1.0], "n": 10, "note": ""})
    >>> headline(t)["SD ratio"].tolist()
    ['0.90 ± 0.14']
    """
    if table.empty:
        return pd.DataFrame()
    table = one_design(table, design)
    n_pilot = int(table["n_pilot"].max()) if n_pilot is None else int(n_pilot)
    t = table[(table["n_pilot"] == n_pilot) & (table["grouping"] == grouping) & (table["group"] == group)]
    methods = list(methods) if methods is not None else list(pd.unique(t["method"]))
    rows = []
    for m in methods:
        tm = t[t["method"] == m]
        if tm.empty:
            continue
        row: dict[str, Any] = {"method": m, "family": tm["family"].iloc[0]}
        for label, sources, axis, metric, item in (HEADLINE if columns is None else columns):
            cell = math.nan if numeric else ""
            for src in sources:
                sel = tm[(tm["source"] == src) & (tm["axis"] == axis) & (tm["metric"] == metric)]
                if item is not None:
                    sel = sel[sel["item"] == item]
                elif axis == "individual":
                    sel = sel[sel["item"] != ITEM_MEAN]
                v = sel["value"].dropna()
                if len(v):
                    if numeric:
                        cell = float(v.mean())
                    else:
                        cell = f"{v.mean():.2f}" + (f" ± {v.std():.2f}" if len(v) > 1 else "")
                    break
            row[label] = cell
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


#: the families x axes table of the seed design: (label, source preference, axis, metric, item);
#: the headline's metrics of each axis, plus the structural magnitude ratio
AXES = [(f"{axis}: {label}", src, axis, metric, item) for label, src, axis, metric, item in HEADLINE
        if metric in ("wasserstein1_norm", "mean_abs_difference", "mean_coverage", "lins_ccc", "attenuation_slope",
                      "pearson_r", "weighted_kappa")]
AXES.insert(5, ("structural: magnitude", ("estimate", "respondents"), "structural", "magnitude_ratio", None))


def axes_table(table: pd.DataFrame, n_pilot: int | None = None, methods: Sequence[str] | None = None,
               grouping: str = ALL, group: str = ALL, design: str | None = None) -> pd.DataFrame:
    """Families x axes: one row per (family, method), the mean over repeats of each axis's metrics
    (:data:`AXES`) in the whole sample or one subgroup; NaN where a method has no such metric.

    Examples
    --------
    >>> t = pd.DataFrame({"method": "m", "family": "f", "n_pilot": 50, "repeat": [0, 1],
    ...     "source": "estimate", "axis": "marginal", "metric": "wasserstein1_norm", "item": ITEM_MEAN,
    ...     "grouping": "all", "group": "all", "value": [0.1, 0.3], "n": 10, "note": ""})
    >>> round(float(axes_table(t).loc[("f", "m"), "marginal: W1 (norm.)"]), 3)
    0.2
    """
    h = headline(table, n_pilot, methods, numeric=True, grouping=grouping, group=group, columns=AXES, design=design)
    if h.empty:
        return h
    return h.reset_index().set_index(["family", "method"]).sort_index(level=0, sort_remaining=False)
