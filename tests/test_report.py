"""rectify.report: a self-contained HTML file with inline PNGs, escaped text, CSV beside it; and a
headless-Chromium rendering check (`make test` installs Debian's `chromium` package)."""

import base64
import html
import math
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import matplotlib  # noqa: E402,F401

from rectify.comparison import compare  # noqa: E402
from rectify.demo import comparison_frame  # noqa: E402
from rectify.errors import InputError  # noqa: E402
from rectify.report import write_report  # noqa: E402

EVIL = "<script>alert('x')</script>"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    df = comparison_frame()
    df["camp"] = np.where(df["ideology"] == "conservative", "<b>right</b>", "left & centre")
    cmp = compare(df, ["f01", "f05", "t01", "t09"], methods=["classical", "simulator", "ppi++"], pilot_sizes=[60, 150],
                  repeats=2, groups="camp", formula="disc ~ age + education + ideology",
                  scales={"disc": (["t01", "t09"], ["f01", "f05"])}, probabilities="{item}_p{k}", random_state=4,
                  progress=False)
    folder = tmp_path_factory.mktemp("report")
    path = write_report(cmp, str(folder), title=EVIL, intro="pilot & <frame>")
    return cmp, folder, path


def test_files_and_self_contained_html(report):
    cmp, folder, path = report
    assert os.path.basename(path) == "report.html"
    text = open(path, encoding="utf-8").read()
    # no external resource: every src is an inline data URI
    srcs = re.findall(r"src=['\"]([^'\"]+)", text)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<link" not in text and "http://" not in text and "https://" not in text
    from PIL import Image

    for s in srcs:
        img = Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1])))
        img.verify()
        assert img.format == "PNG"
    tidy = pd.read_csv(folder / "fidelity.csv")
    assert list(tidy.columns) == list(cmp.table.columns)
    assert len(tidy) == len(cmp.table)
    assert (folder / "estimates.csv").exists() and (folder / "coefficients.csv").exists()
    assert "href='fidelity.csv'" in text


def test_user_text_is_escaped(report):
    _, _, path = report
    text = open(path, encoding="utf-8").read()
    assert EVIL not in text and html.escape(EVIL) in text
    assert "pilot &amp; &lt;frame&gt;" in text
    assert "<b>right</b>" not in text and "&lt;b&gt;right&lt;/b&gt;" in text


def test_overview_table_matches_the_comparison(report):
    cmp, _, path = report
    text = open(path, encoding="utf-8").read()
    head = cmp.headline()
    for method in head.index:
        assert f"<td>{method}</td>" in text
    val = head.loc["ppi++", "W1 (norm.)"]
    assert html.escape(val) in text


def test_refuses_other_objects(tmp_path):
    with pytest.raises(InputError, match="Comparison"):
        write_report(pd.DataFrame(), str(tmp_path))


def test_report_renders_in_headless_chromium(report, tmp_path):
    assert CHROMIUM is not None, "Debian's chromium is missing: make test installs it (apt-get install chromium)"
    _, _, path = report
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--window-size=1280,4000", f"--screenshot={shot}", "file://" + os.path.abspath(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (4000, 1280)
    # the figures are colourful (heatmaps, coloured markers); a page whose images failed to render
    # would be text on white: require many saturated pixels
    saturated = (img.max(axis=2) - img.min(axis=2)) > 80
    assert saturated.mean() > 0.01


# ------------------------------------------------------------------ What to conclude, labels, planning, curves
def test_what_to_conclude_is_the_first_section(report):
    from rectify.conclusions import conclusions

    cmp, _, path = report
    text = open(path, encoding="utf-8").read()
    body = text[text.index("<body>"):]
    first_h2 = re.search(r"<h2>([^<]*)</h2>", body).group(1)
    assert first_h2 == "What to conclude"
    section = body[body.index("<section id='conclude'>"):body.index("</section>")]
    found = conclusions(cmp)
    assert found[0]["n_pilot"] == 150  # the largest pilot size, and the text says so
    for f in found:
        assert html.escape(f["text"]) in section
    kinds = {f["kind"] for f in found}
    assert kinds == {"setting", "best", "tradeoff", "worst_subgroup", "trust"}
    # the trust sentence is about the one simulator of this comparison
    assert "simulator (prompting) can be trusted for" in section


def test_planning_csv_beside_the_report_and_linked(report):
    from rectify.report import planning_summary

    cmp, folder, path = report
    text = open(path, encoding="utf-8").read()
    plan = pd.read_csv(folder / "planning.csv", keep_default_na=False, na_values=[""])
    ref = cmp.meta["planning"]
    assert list(plan["item"]) == list(ref["item"])
    np.testing.assert_allclose(plan["needed_classical"], ref["needed_classical"])
    assert text.count("href='planning.csv'") == 2  # under the summary and in the data section
    for line in planning_summary(ref, cmp.spec.level):
        assert html.escape(line) in text
    assert "needed_ppi++_pessimistic" not in text  # the full table is in the CSV, not in the page


def test_readable_labels_not_raw_column_names(report):
    _, _, path = report
    text = open(path, encoding="utf-8").read()
    for raw in ("wasserstein1_norm", "mean_abs_difference", "worst_group", "pearson_r", "W1n"):
        assert f">{raw}<" not in text
    assert "<td>W1 normalised</td>" in text and "<th>worst group</th>" in text


def test_curves_are_small_multiples_by_family_with_coverage_capped(report):
    from matplotlib import pyplot as plt

    from rectify.report import fig_curves

    cmp, _, _ = report
    fig = fig_curves(cmp)
    try:
        axes = np.array(fig.axes).reshape(-1, 3)
        assert [ax.get_title() for ax in axes[0]] == ["pilot only", "prompting", "rectification"]
        row = [i for i in range(axes.shape[0]) if axes[i][0].get_ylabel().startswith("coverage")]
        assert len(row) == 1
        for ax in axes[row[0]]:
            assert ax.get_ylim()[1] == 1.0
            for coll in ax.collections:  # error bars never reach above 1
                for seg in coll.get_segments():
                    assert np.max(seg[:, 1]) <= 1.0 + 1e-12
        # the classical method is drawn in the pilot-only panel only
        labels = [[ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")] for ax in axes[0]]
        assert "classical" not in labels[1] + labels[2]
    finally:
        plt.close(fig)


def test_planning_summary_by_hand():
    from rectify.report import planning_summary

    plan = pd.DataFrame({"item": ["a", "b", "c"], "n_pilot": [100, 100, 100], "rho": [0.5, 0.1, math.nan],
                         "rho_low": [0.4, 0.0, math.nan], "rho_high": [0.6, 0.2, math.nan],
                         "n_eff": [130.0, 101.0, math.nan], "needed_classical": [400, 300, math.nan],
                         "needed_ppi++": [300, 297, math.nan], "needed_ppi++_pessimistic": [320, 300, math.nan],
                         "note": ["", "", "not estimable: no variation"]})
    plan.attrs["half_width"] = 0.05
    lines = planning_summary(plan, 0.9)
    assert lines[0] == ("rho between human answers and the simulator's predictions: median 0.30, range 0.10-0.50 "
                        "over 2 items.")
    assert lines[1].startswith("Humans needed for a 90% interval of an item mean of half-width 0.05: classical "
                               "median 350 (300-400), PPI++ median 298 (297-300)")
    assert lines[2] == "PPI++ saves the most on item a: 100 fewer humans (25%)."
    assert lines[3] == "Not estimable: c (not estimable: no variation)."
    assert planning_summary(pd.DataFrame()) == []


def test_conclusions_html_escapes_and_orders():
    from rectify.report import conclusions_html

    found = [{"kind": "trust", "text": "<script>x</script>"}, {"kind": "setting", "text": "at n & m"},
             {"kind": "best", "text": "b1"}]
    out = conclusions_html(found)
    assert "<script>" not in out and "&lt;script&gt;x&lt;/script&gt;" in out and "at n &amp; m" in out
    assert out.index("b1") < out.index("&lt;script&gt;")  # best per axis before trust


def test_report_of_a_comparison_where_nothing_finished(report, tmp_path):
    import dataclasses

    cmp, _, _ = report
    empty = dataclasses.replace(cmp, table=cmp.table.iloc[:0])
    text = open(write_report(empty, str(tmp_path)), encoding="utf-8").read()
    assert "Nothing: no method finished a cell" in text
    assert "src='data:image/png" not in text
