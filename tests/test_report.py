"""rectify.report: a self-contained HTML file with inline PNGs, escaped text, CSV beside it; and a
headless-Chromium rendering check (`make test` installs Debian's `chromium` package)."""

import base64
import html
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
