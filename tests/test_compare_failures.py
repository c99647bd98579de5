"""compare's failure handling and the fine-tuning family: failed cells retried on resume, partial
answers noted and measured on the answered rows, evaluation on the non-pilot rows, and PPI on
in-sample predictions (warned) against the cross-fitted version (checked against hand-built
references)."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from rectify import registry
from rectify.comparison import _cell_seed, _slug, compare, draw_cell_pilot, make_spec
from rectify.demo import comparison_frame
from rectify.errors import BackendError, InputError, InSamplePredictionWarning
from rectify.finetuning import covariate_estimator, finetune_methods

COV = ["age", "education", "ideology"]


@pytest.fixture(scope="module")
def frame():
    return comparison_frame().head(400)


def _val(table, **kw):
    sel = table
    for k, v in kw.items():
        sel = sel[sel[k] == v]
    return sel["value"].to_numpy(float)


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------
def test_transient_failure_is_retried_on_resume(frame, tmp_path):
    counter = tmp_path / "calls"

    def flaky(fr, pilot, spec, rng):
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        if n == 0:
            raise BackendError("HTTP 429 Too Many Requests after 6 attempts")
        return registry.get("classical").fn(fr, pilot, spec, rng)

    registry.register(registry.Method("flaky-test", "pilot only", flaky, default=False), replace=True)
    kw = dict(methods=["flaky-test"], pilot_sizes=[60], repeats=1, random_state=5, progress=False,
              checkpoint=str(tmp_path / "ck"))
    with pytest.warns(RuntimeWarning, match="rerunning retries this cell"):
        first = compare(frame, ["f01"], **kw)
    assert len(first.failures) == 1 and first.table.empty
    second = compare(frame, ["f01"], **kw)
    assert counter.read_text() == "2"
    assert second.failures.empty
    assert second.meta["checkpoint"]["retried"] == [_slug("flaky-test", 60, 0)]
    # the recomputed cell equals what the wrapped method gives directly (same pilot, same seed)
    ref = compare(frame, ["f01"], methods=["classical"], pilot_sizes=[60], repeats=1, random_state=5, progress=False)
    got = second.table.drop(columns=["method"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref.table.drop(columns=["method"]).reset_index(drop=True), check_dtype=False)
    third = compare(frame, ["f01"], **kw)  # now finished: resumed, not recomputed
    assert counter.read_text() == "2" and third.meta["checkpoint"]["resumed"] == 1


def test_input_error_is_final(frame, tmp_path):
    calls = []

    def bad_input(fr, pilot, spec, rng):
        calls.append(1)
        raise InputError("argument 'y' contains NaN")

    registry.register(registry.Method("bad-input-test", "pilot only", bad_input, default=False), replace=True)
    kw = dict(methods=["bad-input-test"], pilot_sizes=[60], repeats=1, progress=False, checkpoint=str(tmp_path / "ck"))
    with pytest.warns(RuntimeWarning, match="an input error"):
        compare(frame, ["f01"], **kw)
    again = compare(frame, ["f01"], **kw)
    assert len(calls) == 1 and len(again.failures) == 1 and again.meta["checkpoint"]["retried"] == []


# ---------------------------------------------------------------------------------------------
# partial answers
# ---------------------------------------------------------------------------------------------
class Flaky:
    """A backend that gives up on every prompt whose text hashes to 0 mod 5 (as after six 429s)."""

    name, model_id = "flaky", "none"

    def __init__(self, fail=True):
        self.fail = fail

    def score(self, prompts):
        from rectify.llm.base import Scores

        raw, status, errors = [], [], []
        for p in prompts:
            h = int(hashlib.sha256(repr(p.messages).encode()).hexdigest(), 16)
            K = len(p.labels)
            if self.fail and h % 5 == 0:
                raw.append([np.nan] * K), status.append("failed"), errors.append("gave up after 6 attempts: HTTP 429")
            else:
                r = np.arange(1.0, K + 1) ** (h % 3)
                raw.append(r / r.sum()), status.append("ok"), errors.append(None)
        return Scores(np.array(raw), status, errors)


def test_partial_answers_are_noted_and_measured_on_the_answered_rows(frame, tmp_path):
    from rectify.datasets import misinfo_items
    from rectify.fidelity import fidelity_report
    from rectify.llm.simulator import PromptSimulator

    items = ["f01", "t01"]
    its = [it for it in misinfo_items() if it.name in items]
    backend = Flaky()
    for m in registry.prompting_methods(backend, its, prefix="flaky", strategies=["zero-shot"]):
        registry.register(m, replace=True)
    kw = dict(methods=["flaky-zero-shot"], pilot_sizes=[60], repeats=1, covariates=COV, random_state=2,
              probabilities="{item}_p{k}", progress=False, checkpoint=str(tmp_path / "ck"))
    cmp = compare(frame, items, **kw)
    assert cmp.failures.empty
    # the reference: the same prompts, the failed rows found independently
    probs = {it.name: PromptSimulator(backend, it).fit().predict_proba(frame[COV]) for it in its}
    bad = {k: np.isnan(p).any(axis=1) for k, p in probs.items()}
    assert 0 < bad["f01"].sum() < len(frame) and not np.array_equal(bad["f01"], bad["t01"])
    t = cmp.table
    for it in items:
        assert t["note"].str.contains(f"{it}: {int(bad[it].sum())} of {len(frame)} rows").all()
    assert t["note"].str.contains("failed after retries").all()
    assert cmp.meta["partial"][0]["unanswered"] == {it: int(bad[it].sum()) for it in items}
    # population estimate: the mean predicted distribution over the answered rows of each item
    est = cmp.estimates[(cmp.estimates["grouping"] == "all") & (cmp.estimates["item"] == "f01")].set_index("term")
    p = probs["f01"][~bad["f01"]]
    np.testing.assert_allclose(est.loc[["share:1", "share:2", "share:3", "share:4"], "estimate"], p.mean(axis=0),
                               atol=1e-12)
    # individual metrics: the held-out people whose every item was answered
    pilot = draw_cell_pilot(frame, 60, 0, 2)
    keep = ~(bad["f01"] | bad["t01"]) & ~frame.index.isin(pilot.index)
    held = frame[keep]
    sc = np.arange(1.0, 5.0)
    preds = pd.DataFrame({k: probs[k][keep] @ sc for k in items}, index=held.index)
    rep = fidelity_report(held, preds, items, probabilities={k: probs[k][keep] for k in items}, scores=list(sc))
    for metric, item in (("weighted_kappa", "f01"), ("log_loss", "t01"), ("pearson_r", "mean_score")):
        want = rep[(rep["metric"] == metric) & (rep["item"] == item) & (rep["grouping"] == "all")]["value"].iloc[0]
        got = _val(t, source="respondents", metric=metric, item=item, grouping="all")[0]
        assert got == pytest.approx(want, rel=1e-12)
    # a rerun retries the partial cell: with every prompt answered now, the note is gone
    backend.fail = False
    again = compare(frame, items, **kw)
    assert again.meta["checkpoint"]["retried"] and not again.meta["partial"]
    assert not again.table["note"].str.contains("partial answers").any()


def test_every_prompt_failing_fails_the_cell(frame):
    from rectify.datasets import misinfo_items

    class Down:
        def score(self, prompts):
            from rectify.llm.base import Scores

            return Scores(np.full((len(prompts), 4), np.nan), ["failed"] * len(prompts), ["connection refused"] *
                          len(prompts))

    its = [it for it in misinfo_items() if it.name == "f01"]
    for m in registry.prompting_methods(Down(), its, prefix="down", strategies=["zero-shot"]):
        registry.register(m, replace=True)
    with pytest.warns(RuntimeWarning, match="all 400 prompts failed.*connection refused"):
        cmp = compare(frame, ["f01"], methods=["down-zero-shot"], pilot_sizes=[60], repeats=1, covariates=COV,
                      progress=False)
    assert cmp.failures["error"].str.startswith("BackendError").all()


# ---------------------------------------------------------------------------------------------
# evaluation on the non-pilot rows
# ---------------------------------------------------------------------------------------------
def test_evaluation_on_the_rest(frame):
    cmp = compare(frame, ["f01"], methods=["classical", "simulator"], pilot_sizes=[40], repeats=1, random_state=9,
                  probabilities="{item}_p{k}", evaluate="rest", progress=False)
    pilot = draw_cell_pilot(frame, 40, 0, 9)
    rest = frame.drop(index=pilot.index)
    h_rest, h_pil = rest["f01"].dropna(), pilot["f01"].dropna()
    t = cmp.table[(cmp.table["grouping"] == "all") & (cmp.table["item"] == "f01") & (cmp.table["source"] == "estimate")]
    assert _val(t, method="classical", metric="mean_difference")[0] == pytest.approx(h_pil.mean() - h_rest.mean())
    # the simulator's population is the rest: its estimated shares average the rest's probabilities
    est = cmp.estimates[(cmp.estimates["method"] == "simulator") & (cmp.estimates["grouping"] == "all")]
    share1 = est[est["term"] == "share:1"]
    assert share1["estimate"].iloc[0] == pytest.approx(rest["f01_p1"].mean())
    assert share1["truth"].iloc[0] == pytest.approx((h_rest == 1).mean())
    assert cmp.meta["evaluate"] == "rest"


# ---------------------------------------------------------------------------------------------
# fine-tuned classifier: cross-fitted PPI++ and the in-sample degeneracy case
# ---------------------------------------------------------------------------------------------
def test_in_sample_ppi_warns_and_cross_fit_matches_the_reference(frame):
    from rectify.estimators.crossfit import cross_fit, crossppi_shares
    from rectify.estimators.ppi import ppi_mean

    finetune_methods({"folds": 3}, make_estimator=covariate_estimator, prefix="cov-test", family="covariates")
    names = ["cov-test+ppi++ (in-sample)", "cov-test+xfit-ppi++"]
    with pytest.warns(InSamplePredictionWarning, match=r"cov-test\+xfit-ppi\+\+"):
        cmp = compare(frame, ["f01"], methods=names, pilot_sizes=[150], repeats=1, covariates=COV, random_state=4,
                      progress=False)
    assert cmp.failures.empty
    t = cmp.table
    assert t[t["method"] == names[0]]["note"].str.contains("in-sample predictions").all()
    assert not t[t["method"] == names[1]]["note"].str.contains("in-sample").any()
    est = cmp.estimates[(cmp.estimates["grouping"] == "all")].set_index(["method", "term"])["estimate"]
    spec = make_spec(frame, ["f01"], covariates=COV, predicted=None)
    pilot = draw_cell_pilot(frame, 150, 0, 4)
    sc = np.arange(1.0, 5.0)
    # in-sample: the classifier fitted on the pilot predicts the pilot itself, then PPI++
    seed = int(_cell_seed(4, 150, 0, names[0]).integers(0, 2**31 - 1))
    clf = covariate_estimator(spec, seed).fit(pilot[COV], pilot["f01"].to_numpy(float))
    ok = pilot["f01"].notna()
    m = ppi_mean(pilot.loc[ok, "f01"].to_numpy(float), clf.predict_proba(pilot.loc[ok, COV]) @ sc,
                 clf.predict_proba(frame[COV]) @ sc, "ppi++")
    assert est[(names[0], "mean")] == pytest.approx(float(np.asarray(m.estimate)[0]), rel=1e-10)
    # cross-fitted: out-of-fold pilot predictions, fold-averaged population predictions
    seed = int(_cell_seed(4, 150, 0, names[1]).integers(0, 2**31 - 1))
    cf = cross_fit(covariate_estimator(spec, seed), pilot[COV], pilot["f01"].to_numpy(float), X_population=frame[COV],
                   n_folds=3, random_state=seed, stratify=False)
    r = crossppi_shares(pilot.loc[ok, "f01"].to_numpy(float), cf.oof[ok.to_numpy()], cf.population_folds,
                        options=list(sc), lam="tune")
    got = [est[(names[1], f"share:{k}")] for k in range(1, 5)]
    np.testing.assert_allclose(got, np.asarray(r.estimate, float)[:4], rtol=1e-10)


def test_registered_fine_tuning_family():
    lora = registry.get("lora+ppi++ (in-sample)")
    assert "DEGENERACY CASE" in lora.description and "lora+xfit-ppi++" in lora.description
    assert registry.get("lora").family == "fine-tuning"
    assert "cross-fitted" in registry.get("lora+xfit-ppi++").description
