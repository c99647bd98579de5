"""A self-contained HTML report of a :class:`~rectify.comparison.Comparison`.

``write_report(cmp, folder)`` writes ``folder/report.html`` (every figure inlined as a base64 PNG,
no external file, script or font) and ``folder/fidelity.csv`` (the tidy table), plus
``estimates.csv``, ``coefficients.csv`` and ``planning.csv``. Sections: **What to conclude** first
(:mod:`rectify.conclusions`: per axis the best family and method with the spread over repeated
pilots, the trade-off between families, the worst subgroup per family and whether each simulator
can be trusted, from thresholds stated in the report), then the fidelity overview per method and
axis, pilot-size curves as small multiples (one panel per family, coverage capped at 1), a
subgroup heatmap, human vs simulated coefficients with intervals, answer-distribution bars, the
planning table summarised in a few lines (the full table in ``planning.csv``), methods skipped or
failed. Metric names are shown through a label dictionary (:data:`rectify.conclusions.LABELS`). All text that comes from the user's data or
configuration is escaped with :func:`html.escape`, and text drawn in the figures is never parsed as
matplotlib mathtext (a ``$`` in a group name is shown as written).

Needs matplotlib (the ``report`` extra); it is imported only when a report is written.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from typing import Any

import numpy as np
import pandas as pd

from .conclusions import LABELS, conclusions, conclusions_text
from .errors import InputError

__all__ = ["write_report", "figures", "conclusions", "conclusions_text", "conclusions_html", "planning_summary"]

ALL = "all"
ITEM_MEAN = "(mean over items)"
CURVES = [  # (row label, source preference, axis, metric, item or None = the scale/formula response)
    ("W1 normalised\n(mean over items)", ("estimate",), "marginal", "wasserstein1_norm", ITEM_MEAN),
    ("|mean difference|\n(mean over items)", ("estimate",), "marginal", "mean_abs_difference", ITEM_MEAN),
    ("coverage of the\nhuman mean", ("estimate",), "marginal", "mean_coverage", ITEM_MEAN),
    ("attenuation slope\n(1 = none)", ("estimate", "respondents"), "structural", "attenuation_slope", None),
    ("magnitude ratio\n(1 = same size)", ("estimate", "respondents"), "structural", "magnitude_ratio", None),
    ("CCC of\ncoefficients", ("estimate", "respondents"), "structural", "lins_ccc", None),
    ("Pearson r of\nthe scale score", ("respondents",), "individual", "pearson_r", None),
]
#: metrics that are rates: their axis is capped at 1
RATES = {"mean_coverage", "coverage", "share_coverage"}


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the HTML report needs matplotlib: pip install 'rectify[report]'") from err
    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _select(table: pd.DataFrame, sources, axis, metric, item) -> pd.DataFrame:
    for src in sources:
        sel = table[(table["source"] == src) & (table["axis"] == axis) & (table["metric"] == metric)]
        if item is not None:
            sel = sel[sel["item"] == item]
        elif axis == "individual":
            sel = sel[sel["item"] != ITEM_MEAN]
        if sel["value"].notna().any():
            return sel
    return table.iloc[:0]


def _methods(cmp) -> list[str]:
    return [m for m in cmp.methods if m in set(cmp.table["method"])]


def _label_cells(ax, table: pd.DataFrame, missing: str) -> None:
    """Write each value of a heatmap's table in its cell (``missing`` for NaN) and label the axes."""
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            v = table.iat[i, j]
            ax.text(j, i, missing if pd.isna(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=8)


def fig_overview(cmp) -> Any:
    """Heatmap: methods x headline metrics at the largest pilot size (colour = rank within column)."""
    from .comparison import headline

    plt = _plt()
    num = headline(cmp.table, None, _methods(cmp), numeric=True).drop(columns=["family"])
    num = num.loc[:, num.notna().any()]
    fig, ax = plt.subplots(figsize=(1.2 * max(4, num.shape[1]) + 2, 0.5 * max(3, num.shape[0]) + 1.5))
    level = cmp.spec.level
    # fixed colour scales (1 = good, 0 = bad), so that tiny differences are not exaggerated
    scales = {
        "W1 (norm.)": lambda v: 1 - v / 0.1,
        "|mean diff|": lambda v: 1 - v / 0.3,
        "SD ratio": lambda v: 1 - np.abs(np.log(np.clip(v, 1e-9, None))) / np.log(2),
        "mean coverage": lambda v: 1 - np.abs(v - level) / 0.2,
        "CCC": lambda v: v,
        "attenuation": lambda v: 1 - np.abs(v - 1) / 0.6,
        "magnitude ratio": lambda v: 1 - np.abs(np.log(np.clip(v, 1e-9, None))) / np.log(2),
        "coef coverage": lambda v: 1 - np.abs(v - level) / 0.3,
        "r (scale)": lambda v: v,
        "kappa": lambda v: v,
        "log-loss": lambda v: 1 - v / math.log(max(2, len(cmp.spec.scores))),
    }
    score = np.full(num.shape, np.nan)
    for j, col in enumerate(num.columns):
        v = num[col].to_numpy(float)
        score[:, j] = np.clip(scales.get(col, lambda x: x)(v), 0, 1)
    ax.imshow(np.ma.masked_invalid(score), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    _label_cells(ax, num, "–")
    ax.set_title(f"Fidelity at n_pilot = {int(cmp.table['n_pilot'].max())} (colour: fixed scale per metric, "
                 "green = good, red = bad)",
                 fontsize=9)
    return fig


def _families(cmp) -> list[str]:
    """Families in the order of the methods run."""
    fam = cmp.table.drop_duplicates("method").set_index("method")["family"]
    return list(dict.fromkeys(fam[m] for m in _methods(cmp)))


def fig_curves(cmp) -> Any:
    """Pilot-size curves as small multiples: one column of panels per family, one row per metric.

    Each panel shows the family's methods (mean over repeats, bars = ±1 SD, colours shared across
    panels); rows share their y axis; rates (coverage) are capped at 1, with the nominal level
    dashed; slopes and ratios have 1 dashed. Rows that no method gives are left out.
    """
    plt = _plt()
    t = cmp.table[cmp.table["grouping"] == ALL]
    methods = _methods(cmp)
    fam_of = t.drop_duplicates("method").set_index("method")["family"]
    families = _families(cmp)
    colour = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    rows = []
    for spec in CURVES:
        per = {m: _select(t[t["method"] == m], *spec[1:]) for m in methods}
        per = {m: sel for m, sel in per.items() if not sel.empty}
        if per:
            rows.append((spec, per))
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), len(families), figsize=(2.5 * len(families) + 1.2, 1.9 * len(rows) + 1.0),
                             sharey="row", sharex=True, squeeze=False)
    for i, ((label, _, _, metric, _), per) in enumerate(rows):
        for j, fam in enumerate(families):
            ax = axes[i][j]
            shown = False
            for m, sel in per.items():
                if fam_of.get(m) != fam:
                    continue
                g = sel.groupby("n_pilot")["value"].agg(["mean", "std"]).reset_index()
                mean, sd = g["mean"].to_numpy(float), np.nan_to_num(g["std"].to_numpy(float))
                up = np.minimum(sd, 1.0 - mean) if metric in RATES else sd
                ax.errorbar(g["n_pilot"], mean, yerr=np.vstack([sd, np.clip(up, 0, None)]), marker="o", ms=4,
                            capsize=2, color=colour[m], label=m, clip_on=False)
                shown = True
            if metric in ("attenuation_slope", "magnitude_ratio"):
                ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            if metric in RATES:
                ax.axhline(cmp.spec.level, color="grey", lw=0.8, ls="--")
            if not shown:
                ax.text(0.5, 0.5, "not given", ha="center", va="center", transform=ax.transAxes, color="grey",
                        fontsize=8)
            if i == 0:
                ax.set_title(fam, fontsize=10)
            if j == 0:
                ax.set_ylabel(label, fontsize=8)
            if i == len(rows) - 1:
                ax.set_xlabel("humans in the pilot", fontsize=8)
            ax.tick_params(labelsize=7)
        if metric in RATES:  # capped at 1: a rate above 1 does not exist, and bars must not suggest one
            lo = min([cmp.spec.level] + [float(np.nanmin(sel["value"])) for sel in per.values()
                                         if sel["value"].notna().any()])
            axes[i][0].set_ylim(max(lo - 0.05, 0.0), 1.0)
    for j, fam in enumerate(families):  # one legend per family, under its column's first panel
        handles = [plt.Line2D([], [], color=colour[m], marker="o", label=m) for m in methods if fam_of.get(m) == fam]
        if handles:
            axes[0][j].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def fig_subgroups(cmp) -> Any | None:
    """Heatmap methods x subgroups of the marginal error (and of the individual r when available)."""
    plt = _plt()
    t = cmp.table[(cmp.table["n_pilot"] == cmp.table["n_pilot"].max()) & (cmp.table["grouping"] != ALL)]
    if t.empty:
        return None
    panels = [("Wasserstein-1 (norm.), mean over items", ("estimate",), "marginal", "wasserstein1_norm", ITEM_MEAN,
               "Reds"),
              ("Pearson r of the scale (per-person methods)", ("respondents",), "individual", "pearson_r", None,
               "Greens")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(cmp.methods) + 2.5))
    for ax, (title, sources, axis, metric, item, cmap) in zip(axes, panels):
        sel = _select(t, sources, axis, metric, item)
        if sel.empty:
            ax.axis("off")
            ax.set_title(title + ": none", fontsize=9)
            continue
        sel = sel.assign(col=sel["grouping"].astype(str) + "=" + sel["group"].astype(str))
        piv = sel.groupby(["method", "col"], sort=False)["value"].mean().unstack("col")
        piv = piv.reindex([m for m in _methods(cmp) if m in piv.index])
        im = ax.imshow(np.ma.masked_invalid(piv.to_numpy(float)), cmap=cmap, aspect="auto")
        _label_cells(ax, piv, "n.e.")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def fig_coefficients(cmp) -> Any | None:
    """Coefficients of the formula: each method's estimate and interval (first repeat, largest pilot) vs human."""
    plt = _plt()
    c = cmp.coefficients
    if c is None or c.empty:
        return None
    n = c["n_pilot"].max()
    c = c[(c["n_pilot"] == n) & (c["repeat"] == c["repeat"].min()) & (c["term"] != "Intercept")]
    if c.empty:
        return None
    terms = list(pd.unique(c["term"]))
    methods = [m for m in _methods(cmp) if m in set(c["method"])]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(terms) * max(1, len(methods)) / 2 + 2))
    width = 0.8 / max(1, len(methods))
    colour = {m: f"C{i % 10}" for i, m in enumerate(_methods(cmp))}
    for k, m in enumerate(methods):
        cm = c[c["method"] == m].set_index("term").reindex(terms)
        y = np.arange(len(terms)) + (k - (len(methods) - 1) / 2) * width
        est = cm["estimate"].to_numpy(float)
        lo = est - cm["conf_low"].to_numpy(float)
        hi = cm["conf_high"].to_numpy(float) - est
        ax.errorbar(est, y, xerr=np.vstack([np.nan_to_num(lo), np.nan_to_num(hi)]), fmt="o", ms=4, capsize=2, label=m,
                    color=colour[m])
    human = c.drop_duplicates("term").set_index("term").reindex(terms)["human"].to_numpy(float)
    ax.scatter(human, np.arange(len(terms)), marker="D", color="black", zorder=5, s=30, label="human (whole frame)")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(range(len(terms)), terms, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(f"{cmp.spec.formula}: coefficients with {100 * cmp.spec.level:g}% intervals "
                 f"(n_pilot = {n}, first pilot)", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def fig_distributions(cmp, max_items: int = 4) -> Any | None:
    """Answer-distribution bars: human shares vs each method's estimated shares (first pilot, largest n)."""
    plt = _plt()
    e = cmp.estimates
    if e is None or e.empty:
        return None
    n = e["n_pilot"].max()
    e = e[(e["n_pilot"] == n) & (e["repeat"] == e["repeat"].min()) & (e["grouping"] == ALL)
          & e["term"].astype(str).str.startswith("share:")]
    items = list(cmp.spec.items)[:max_items]
    methods = [m for m in _methods(cmp) if m in set(e["method"])]
    colour = {m: f"C{i % 10}" for i, m in enumerate(_methods(cmp))}
    fig, axes = plt.subplots(1, len(items), figsize=(4.2 * len(items), 3.6), squeeze=False)
    labels = [f"{s:g}" for s in cmp.spec.scores]
    for ax, it in zip(axes[0], items):
        ei = e[e["item"] == it]
        width = 0.8 / (len(methods) + 1)
        x = np.arange(len(labels))
        truth = ei.drop_duplicates("term").set_index("term").reindex([f"share:{l}" for l in labels])["truth"]
        ax.bar(x - 0.4 + width / 2, truth.to_numpy(float), width, color="black", label="human")
        for k, m in enumerate(methods):
            em = ei[ei["method"] == m].set_index("term").reindex([f"share:{l}" for l in labels])
            est = em["estimate"].to_numpy(float)
            err = np.vstack([est - em["conf_low"].to_numpy(float), em["conf_high"].to_numpy(float) - est])
            ax.bar(x - 0.4 + width * (k + 1.5), est, width, yerr=np.nan_to_num(np.clip(err, 0, None)),
                   capsize=1.5, label=m, color=colour[m])
        ax.set_xticks(x, labels)
        ax.set_title(f"item {it}", fontsize=9)
        ax.set_xlabel("answer", fontsize=8)
    axes[0][0].set_ylabel("share")
    h, lab = axes[0][0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=min(len(lab), 9), fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def figures(cmp) -> dict[str, str]:
    """All figures as base64 PNG strings (a figure that has nothing to show is left out).

    Labels come from the user's data (group values, item and term names): matplotlib's mathtext is
    switched off, so a ``$`` in them is shown as written and never parsed (``"$\\frac$"`` would
    otherwise abort the report).
    """
    out = {}
    with _plt().rc_context({"text.parse_math": False}):
        for key, fn in (("overview", fig_overview), ("curves", fig_curves), ("subgroups", fig_subgroups),
                        ("coefficients", fig_coefficients), ("distributions", fig_distributions)):
            fig = fn(cmp)
            if fig is not None:
                out[key] = _png(fig)
    return out


def _table_html(df: pd.DataFrame, index: bool = True) -> str:
    """An HTML table with every cell escaped."""
    e = html.escape
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    body = []
    for idx, row in df.iterrows():
        cells = ([idx] if index else []) + list(row)
        body.append("<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.3g}"
    return str(v)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}h3{font-size:1em}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;display:block;margin:0.5em 0}
.note{color:#555;font-size:0.9em}#conclude{background:#f7f9fc;border:1px solid #d5deea;padding:0.2em 1em 0.8em}
#conclude li{margin:0.25em 0}
"""

#: the "What to conclude" subsections: finding kind -> heading
CONCLUDE_HEADS = {"best": "Best family and method per axis", "tradeoff": "Trade-offs between families",
                  "worst_subgroup": "Worst subgroup per family", "trust": "Can each simulator be trusted, and for what?"}


def conclusions_html(found: list[dict]) -> str:
    """The "What to conclude" section from :func:`rectify.conclusions.conclusions` (text escaped).

    Examples
    --------
    >>> from rectify.conclusions import example_table
    >>> html_ = conclusions_html(conclusions(example_table()))
    >>> html_.startswith("<section id='conclude'><h2>What to conclude</h2>"), "<li>" in html_
    (True, True)
    """
    e = html.escape
    out = ["<section id='conclude'><h2>What to conclude</h2>"]
    out += [f"<p class='note'>{e(f['text'])}</p>" for f in found if f["kind"] == "setting"]
    for kind, head in CONCLUDE_HEADS.items():
        items = [f for f in found if f["kind"] == kind]
        if items:
            out.append(f"<h3>{e(head)}</h3><ul>" + "".join(f"<li>{e(f['text'])}</li>" for f in items) + "</ul>")
    out.append("</section>")
    return "".join(out)


def planning_summary(plan: pd.DataFrame, level: float = 0.95) -> list[str]:
    """A few plain lines summarising the planning table (``Comparison.meta["planning"]``).

    The correlation rho between human answers and the simulator's predictions, the humans needed
    for an interval of the item mean of the table's half-width (classical vs PPI++, median and
    range over items) and the item where PPI++ saves the most.

    Examples
    --------
    >>> plan = pd.DataFrame({"item": ["a", "b"], "n_pilot": [100, 100], "rho": [0.5, 0.1],
    ...     "rho_low": [0.4, 0.0], "rho_high": [0.6, 0.2], "n_eff": [130.0, 101.0],
    ...     "needed_classical": [400, 300], "needed_ppi++": [300, 297], "needed_ppi++_pessimistic": [320, 300],
    ...     "note": ["", ""]})
    >>> plan.attrs["half_width"] = 0.1
    >>> for line in planning_summary(plan): print(line)
    rho between human answers and the simulator's predictions: median 0.30, range 0.10-0.50 over 2 items.
    Humans needed for a 95% interval of an item mean of half-width 0.1: classical median 350 (300-400), PPI++ median 298 (297-300), PPI++ at the pessimistic end of rho median 310 (300-320).
    PPI++ saves the most on item a: 100 fewer humans (25%).
    """
    if plan is None or not len(plan):
        return []
    hw = plan.attrs.get("half_width", 0.1)
    ok = plan[plan["rho"].notna()] if "rho" in plan.columns else plan.iloc[:0]
    lines = []
    if len(ok):
        lines.append(f"rho between human answers and the simulator's predictions: median {ok['rho'].median():.2f}, "
                     f"range {ok['rho'].min():.2f}-{ok['rho'].max():.2f} over {len(ok)} item"
                     f"{'s' if len(ok) != 1 else ''}.")
        cols = [("needed_classical", "classical"), ("needed_ppi++", "PPI++"),
                ("needed_ppi++_pessimistic", "PPI++ at the pessimistic end of rho")]
        parts = [f"{name} median {ok[c].median():.0f} ({ok[c].min():.0f}-{ok[c].max():.0f})"
                 for c, name in cols if c in ok.columns and ok[c].notna().any()]
        if parts:
            lines.append(f"Humans needed for a {100 * level:g}% interval of an item mean of half-width {hw:g}: "
                         + ", ".join(parts) + ".")
        if {"needed_classical", "needed_ppi++"} <= set(ok.columns):
            save = (ok["needed_classical"] - ok["needed_ppi++"]).astype(float)
            k = save.idxmax()
            if save[k] > 0:
                lines.append(f"PPI++ saves the most on item {ok.loc[k, 'item']}: {save[k]:.0f} fewer humans "
                             f"({100 * save[k] / ok.loc[k, 'needed_classical']:.0f}%).")
            else:
                lines.append("PPI++ saves no humans on any item: the simulator's predictions add nothing here.")
    bad = plan[plan["rho"].isna()] if "rho" in plan.columns else plan
    if len(bad):
        lines.append("Not estimable: " + ", ".join(f"{r['item']} ({r.get('note', '')})" for _, r in bad.iterrows())
                     + ".")
    return lines


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Readable column names and metric names (:data:`rectify.conclusions.LABELS`)."""
    out = df.copy()
    if "metric" in out.columns:
        out["metric"] = out["metric"].map(lambda m: LABELS.get(m, m))
    return out.rename(columns=lambda c: LABELS.get(c, PLAN_LABELS.get(c, c)))


PLAN_LABELS = {"rho": "rho", "rho_low": "rho (low)", "rho_high": "rho (high)", "n_eff": "effective n (PPI++)",
               "needed_classical": "humans needed: classical", "needed_ppi++": "humans needed: PPI++",
               "needed_ppi++_pessimistic": "humans needed: PPI++ (pessimistic)", "note": "note"}


def _worst_section(cmp) -> list[str]:
    from .fidelity import group_summary

    sub = cmp.table[(cmp.table["n_pilot"] == cmp.table["n_pilot"].max()) & (cmp.table["grouping"] != ALL)]
    # one source per axis: the population estimate for the marginal axis, per-person predictions otherwise
    sub = sub[(sub["axis"] == "marginal") == (sub["source"] == "estimate")]
    rows = []
    for m, part in sub.groupby("method", sort=False):
        gs = group_summary(part.groupby(["source", "axis", "metric", "item", "grouping", "group"], sort=False)
                           ["value"].mean().reset_index().assign(n=0, note="")
                           .drop(columns="source"))
        gs = gs[(gs["item"] == ITEM_MEAN) | ~gs["item"].isin(list(cmp.spec.items))]
        gs = gs[gs["metric"].isin(["wasserstein1_norm", "mean_abs_difference", "pearson_r", "weighted_kappa",
                                   "attenuation_slope", "magnitude_ratio"])]
        rows.append(gs.assign(method=m))
    if not rows:
        return []
    worst = pd.concat(rows, ignore_index=True)[["method", "axis", "metric", "item", "grouping", "worst_group",
                                                "worst_value", "best_group", "best_value", "spread"]]
    return ["<h2>Worst subgroup per method and metric</h2>", _table_html(_labelled(worst), index=False)]


def _planning_section(cmp, folder: str) -> list[str]:
    plan = cmp.meta.get("planning")
    if plan is None or not len(plan):
        return []
    plan.to_csv(os.path.join(folder, "planning.csv"), index=False)
    e = html.escape
    lines = planning_summary(plan, cmp.spec.level)
    return ["<h2>Planning: humans needed</h2>",
            "<p class='note'>From the first pilot of the largest size, per item: the correlation rho between human "
            "answers and the simulator's predictions (80% Fisher-z interval), PPI++'s effective sample size and "
            "the humans needed for an interval of the item mean, classical vs PPI++ (see rectify.planning).</p>",
            "<ul>" + "".join(f"<li>{e(x)}</li>" for x in lines) + "</ul>",
            "<p>Full table, one row per item: <a href='planning.csv'>planning.csv</a>.</p>"]


def _designs_section(cmp, folder: str) -> list[str]:
    """The width each pilot design saves against simple random pilots, and the methods not run under a design."""
    w = cmp.widths()
    if w.empty:
        return []
    w.to_csv(os.path.join(folder, "widths.csv"), index=False)
    shown = w.assign(**{c: w[c].round(3) for c in ("width", "ratio_to_srs", "width_saved", "coverage")})
    out = ["<h2>Pilot designs: the width saved</h2>",
           "<p class='note'>Mean width of each method's interval of the item mean (whole frame) over the repeated "
           "pilots, per design and pilot size; ratio to the SRS width of the same method, item and pilot size "
           "(width saved = 1 - ratio; within 1% either way: no gain); coverage of the frame's true mean over the "
           "repeats. A design that is not narrower than SRS is listed as such. The other sections of this report "
           "show the SRS pilots only.</p>",
           _table_html(shown, index=False), "<p>Full table: <a href='widths.csv'>widths.csv</a>.</p>"]
    nr = cmp.meta.get("not_run")
    if nr is not None and len(nr):
        out += ["<h3>Methods not run under a design</h3>", _table_html(nr, index=False)]
    return out


def _srs_view(cmp):
    """The comparison restricted to its SRS pilots (or its first design), for the sections made for one design."""
    from dataclasses import replace

    from .compare_tables import one_design

    if "design" not in cmp.table.columns:
        return cmp
    return replace(cmp, table=one_design(cmp.table), estimates=one_design(cmp.estimates),
                   coefficients=one_design(cmp.coefficients))


def write_report(cmp, folder: str = "rectify-report", title: str = "rectify comparison",
                 intro: str = "") -> str:
    """Write ``report.html`` and the CSV tables into ``folder``; return the report's path.

    The page opens with **What to conclude** (:func:`rectify.conclusions.conclusions` at the
    largest pilot size); ``planning.csv`` (the full planning table) is written beside the report
    and linked from its planning summary.

    Parameters
    ----------
    cmp : Comparison
        From :func:`rectify.comparison.compare`.
    folder : str
        Created if needed.
    title : str
        Page title (escaped).
    intro : str
        A paragraph of plain text shown under the title (escaped).

    Returns
    -------
    str
        Path of ``report.html``.

    Examples
    --------
    Writing the figures takes a few seconds, so this example shows only the check at the door
    (``write_report(compare(...), "folder")`` is the real use; see tests/test_report.py):

    >>> write_report(pd.DataFrame(), "unused")
    Traceback (most recent call last):
    ...
    rectify.errors.InputError: argument 'cmp' must be a Comparison (from rectify.comparison), got DataFrame
    """
    from .comparison import Comparison, headline

    if not isinstance(cmp, Comparison):
        raise InputError(f"argument 'cmp' must be a Comparison (from rectify.comparison), got {type(cmp).__name__}")
    os.makedirs(folder, exist_ok=True)
    cmp.table.to_csv(os.path.join(folder, "fidelity.csv"), index=False)
    cmp.summary().to_csv(os.path.join(folder, "fidelity_summary.csv"), index=False)
    cmp.estimates.to_csv(os.path.join(folder, "estimates.csv"), index=False)
    cmp.coefficients.to_csv(os.path.join(folder, "coefficients.csv"), index=False)
    full, cmp = cmp, _srs_view(cmp)
    e = html.escape
    spec = cmp.spec
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    if intro:
        parts.append(f"<p>{e(intro)}</p>")
    if cmp.table.empty:
        parts.append("<section id='conclude'><h2>What to conclude</h2><p>Nothing: no method finished a cell "
                     "(see Methods not run below).</p></section>")
    else:
        parts.append(conclusions_html(conclusions(cmp)))
    figs = figures(cmp) if not cmp.table.empty else {}
    parts.append(
        "<h2>Setting</h2><p class='note'>"
        f"{len(spec.items)} items; pilot sizes {e(', '.join(map(str, cmp.pilot_sizes)))}; {cmp.repeats} seeded "
        f"random pilots per size (seed {cmp.random_state}); groups: {e(', '.join(spec.groups) or 'none')}; "
        f"formula: {e(spec.formula or 'none')}; run time {cmp.seconds:.0f} s. "
        "Population estimates are compared with the human answers of the whole frame; per-person "
        "predictions with the held-out humans (the frame minus the pilot).</p>")
    fam = pd.DataFrame([{"method": m, "family": f, "description": d} for m, (f, d) in cmp.methods.items()])
    parts += ["<h2>Methods</h2>", _table_html(fam.set_index("method"))]
    if not cmp.table.empty:
        parts += ["<h2>Fidelity overview per method and axis</h2>",
                  "<p class='note'>Mean ± SD over the repeated pilots at the largest pilot size, whole sample. "
                  "Marginal: the method's population answer distribution vs the humans (mean over items). "
                  "Structural: coefficients of the formula vs the human ones. Individual: per-person "
                  "predictions vs held-out humans (only for methods that predict each person).</p>",
                  _table_html(headline(cmp.table, None, _methods(cmp)))]
    captions = {
        "overview": "Headline metrics (numbers: means over repeats; colour: a fixed scale per metric -- "
                    "distances near 0, ratios and slopes near 1, coverage near the nominal level, "
                    "correlations near 1 are green).",
        "curves": "Pilot-size curves, one column per family: mean over repeats, bars = ±1 SD across pilot "
                  "draws; coverage is capped at 1 (dashed: the nominal level); dashed at 1 for the attenuation "
                  "slope and the magnitude ratio.",
        "subgroups": "Subgroups at the largest pilot size (n.e. = not estimable: group too small).",
        "coefficients": "Human vs simulated / corrected coefficients with intervals.",
        "distributions": "Answer distributions: human shares vs each method's estimate (first pilot).",
    }
    heads = {"overview": "Overview heatmap", "curves": "Pilot-size curves by family", "subgroups": "Subgroup heatmap",
             "coefficients": "Coefficients: human vs methods", "distributions": "Answer distributions"}
    for key, b64 in figs.items():
        parts += [f"<h2>{e(heads[key])}</h2>", f"<p class='note'>{e(captions[key])}</p>",
                  f"<img alt='{e(heads[key])}' src='data:image/png;base64,{b64}'>"]
    parts += _designs_section(full, folder)
    parts += _worst_section(cmp)
    planning = _planning_section(cmp, folder)
    planned = bool(planning)
    parts += planning
    if cmp.skipped or len(full.failures):
        parts.append("<h2>Methods not run</h2>")
        if cmp.skipped:
            sk = pd.DataFrame([{"method": k, "reason": v} for k, v in cmp.skipped.items()])
            parts.append(_table_html(sk, index=False))
        if len(full.failures):
            parts.append(_table_html(full.failures, index=False))
    parts += ["<h2>Data</h2>",
              "<p>The tidy table: <a href='fidelity.csv'>fidelity.csv</a> (one row per method, pilot size, repeat, "
              "metric, item and group); summaries over repeats: <a href='fidelity_summary.csv'>fidelity_summary.csv"
              "</a>; estimates: <a href='estimates.csv'>estimates.csv</a>; coefficients: "
              "<a href='coefficients.csv'>coefficients.csv</a>"
              + ("; planning: <a href='planning.csv'>planning.csv</a>" if planned else "") + ".</p>",
              "</body></html>"]
    path = os.path.join(folder, "report.html")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    return path
