"""Tests of the pymc-based Bayesian models: hierarchical calibration and misclassification (NUTS).

Budget: the whole module under 3 minutes on a cold 2-core machine. Each run compiles into its own
PyTensor cache folder (compilation is not safe across concurrent processes sharing one cache), set
before pymc (and so pytensor) is first imported.
"""

import atexit
import os
import shutil
import tempfile
import warnings

if "pytensor" not in __import__("sys").modules:  # pytensor reads its flags once, at import
    _flags = os.environ.get("PYTENSOR_FLAGS", "")
    _dir = tempfile.mkdtemp(prefix="rectify-pytensor-")
    atexit.register(shutil.rmtree, _dir, ignore_errors=True)
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (_flags, f"base_compiledir={_dir}") if f)

import numpy as np
import pytest
from scipy.special import expit

import pymc as pm  # noqa: E402

import pandas as pd  # noqa: E402

from rectify.bayes import BayesianCalibrator  # noqa: E402
from rectify.errors import InputError, UnseenLevelError  # noqa: E402
from rectify.estimators.bayes_chain import PriorOnlyWarning, chain_rule  # noqa: E402
from rectify.estimators.bayes_hier import (  # noqa: E402
    HierarchicalCalibrator,
    cumulative_logit_probs,
)
from rectify.estimators.bayes_misclass import MisclassificationModel  # noqa: E402

pytestmark = pytest.mark.bayes

FAST = dict(chains=2, draws=300, tune=300, rhat_threshold=1.05)
CUT = np.array([-2.0, -0.7, 0.7, 2.0])


def simulate_population(seed, N=20_000, G=20):
    """20 cells whose LLM bias and fidelity vary; binary covariate x; 5-point answers."""
    rng = np.random.default_rng(seed)
    cell = rng.integers(0, G, N)
    u = rng.normal(0.0, 0.6, G)  # cell intercepts (LLM bias by cell)
    v = rng.normal(0.0, 0.3, G)  # cell slopes (LLM fidelity by cell)
    x = rng.integers(0, 2, N).astype(float)
    a = np.clip(np.round(2 + rng.normal(0.0, 1.3, N) + 0.5 * u[cell]), 0, 4).astype(int)
    s = a - 2.0
    eta = (1.0 + v[cell]) * s + u[cell] + 0.6 * x
    probs = cumulative_logit_probs(eta[None, :], CUT[None, :])[0]
    y = (rng.random(N)[:, None] > probs.cumsum(axis=1)).sum(axis=1).clip(0, 4)
    return dict(cell=cell, x=x, a=a, y=y, probs=probs, rng=rng)


@pytest.fixture(scope="module")
def pop():
    return simulate_population(42)


@pytest.fixture(scope="module")
def fitted(pop):
    idx = pop["rng"].choice(pop["y"].shape[0], 300, replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriorOnlyWarning)  # every cell has pilot rows here
        model = HierarchicalCalibrator(5, random_state=3, **FAST)
        model.fit(pop["y"][idx], pop["a"][idx], pop["x"][idx, None], {"cell": pop["cell"][idx]})
    res = model.poststratify(pop["a"], pop["x"][:, None], {"cell": pop["cell"]})
    return model, res, idx


def test_hierarchical_fit_converges_and_covers_population_truth(pop, fitted):
    model, res, _ = fitted
    d = res.diagnostics
    assert d["r_hat_max"] < 1.05 and d["divergences"] == 0
    assert d["ess_bulk_min"] > 100
    assert res.posterior is not None and "cutpoints" in res.posterior.posterior
    tab = res.tidy()
    overall = tab[tab["group"] == "all"]
    truth_shares = np.bincount(pop["y"], minlength=5) / pop["y"].shape[0]
    truth_mean = (pop["y"] + 1).mean()
    row = overall[overall["term"] == "mean"].iloc[0]
    assert row.conf_low <= truth_mean <= row.conf_high
    sh = overall[overall["term"] != "mean"]
    inside = (sh.conf_low.to_numpy() <= truth_shares) & (truth_shares <= sh.conf_high.to_numpy())
    assert inside.sum() >= 4
    # posterior mean close to the truth: within 2.5 posterior sds
    assert abs(row.estimate - truth_mean) < 2.5 * row.std_error
    # subgroup (cell) means: most of the 20 intervals cover their cell's truth
    cells = tab[(tab["group"] != "all") & (tab["term"] == "mean")]
    hits = 0
    for _, r in cells.iterrows():
        g = int(r.group.split("=")[1])
        t = (pop["y"][pop["cell"] == g] + 1).mean()
        hits += r.conf_low <= t <= r.conf_high
    assert hits >= 17


def test_poststratification_equals_average_of_row_predictions(pop, fitted):
    model, res, _ = fitted
    rows = slice(0, 3000)
    r = model.poststratify(pop["a"][rows], pop["x"][rows, None], {"cell": pop["cell"][rows]},
                           estimand="shares")
    p_rows = model.predict_proba(pop["a"][rows], pop["x"][rows, None], {"cell": pop["cell"][rows]})
    np.testing.assert_allclose(r.estimate[:5], p_rows.mean(axis=0), atol=1e-10)
    np.testing.assert_allclose(p_rows.sum(axis=1), 1.0, atol=1e-12)
    # duplicating the population changes cell counts, not the post-stratified posterior
    dup = np.r_[np.arange(3000), np.arange(3000)]
    r2 = model.poststratify(pop["a"][dup], pop["x"][dup, None], {"cell": pop["cell"][dup]},
                            estimand="shares")
    np.testing.assert_allclose(r2.draws, r.draws, atol=1e-12)
    assert r.diagnostics["n_cells"] <= 200  # 20 cells x 2 values of x x 5 LLM answers


def test_predict_proba_is_calibrated_out_of_pilot(pop, fitted):
    model, _, idx = fitted
    test = np.setdiff1d(np.arange(5000), idx)
    p = model.predict_proba(pop["a"][test], pop["x"][test, None], {"cell": pop["cell"][test]})
    y = pop["y"][test]
    ll_model = -np.mean(np.log(p[np.arange(y.size), y]))
    ll_true = -np.mean(np.log(pop["probs"][test][np.arange(y.size), y]))
    # the LLM answer taken at face value (smoothed one-hot) as a baseline
    naive = np.full((y.size, 5), 0.05)
    naive[np.arange(y.size), pop["a"][test]] = 0.8
    ll_naive = -np.mean(np.log(naive[np.arange(y.size), y]))
    assert ll_model < ll_true + 0.06
    assert ll_model < ll_naive - 0.1


def test_refit_reuses_compiled_model_and_tracks_data(pop, fitted):
    model, res, _ = fitted
    rng = np.random.default_rng(9)
    idx2 = rng.choice(pop["y"].shape[0], 200, replace=False)
    model2 = HierarchicalCalibrator(5, random_state=4, **FAST)  # a new object: the process keeps the compile
    model2.fit(pop["y"][idx2], pop["a"][idx2], pop["x"][idx2, None], {"cell": pop["cell"][idx2]})
    assert model2.diagnostics_["reused_compiled_model"] and model2.diagnostics_["compile_s"] < 5
    assert model2.diagnostics_["divergences"] == 0 and model2.diagnostics_["r_hat_max"] < 1.05
    r2 = model2.poststratify(pop["a"], pop["x"][:, None], {"cell": pop["cell"]}, estimand="mean")
    truth = (pop["y"] + 1).mean()
    lo, hi = r2.conf_int()
    assert lo[0] <= truth <= hi[0]
    assert r2.n_pilot == 200 and r2.estimate[0] != res.estimate[-1]


def test_bayesian_calibrator_refits_reuse_the_compiled_model(pop, fitted):
    """Issue 17: BayesianCalibrator builds a new HierarchicalCalibrator on every fit; with the same
    structure (here that of the fixture: 5 options, one covariate, the 20 cells) no fit compiles."""
    frame = pd.DataFrame({"y": pop["y"] + 1, "llm": pop["a"] + 1, "x": pop["x"], "cell": pop["cell"]})
    rng = np.random.default_rng(11)
    means = []
    for rep in range(2):
        idx = rng.choice(len(frame), 300, replace=False)
        cal = BayesianCalibrator("y", "llm", [1, 2, 3, 4, 5], formula="x", groups=["cell"], random_state=rep,
                                 **FAST)
        cal.fit(frame.iloc[idx])
        d = cal.model_.diagnostics_
        assert d["reused_compiled_model"] and d["compile_s"] < 5 and d["divergences"] == 0
        r = cal.poststratify(frame, estimand="mean")
        lo, hi = r.conf_int()
        assert lo[0] <= frame["y"].mean() <= hi[0]
        means.append(r.estimate[0])
    assert means[0] != means[1]  # the second fit saw its own pilot


def test_compile_cache_dir_is_per_user_and_leaves_a_chosen_folder_alone(tmp_path):
    import subprocess
    import sys

    code = ("import os, sys; from rectify.estimators.bayes_hier import compile_cache_dir; d = compile_cache_dir(); "
            "print(d, os.environ.get('PYTENSOR_FLAGS'), oct(d.stat().st_mode & 0o777) if d else None)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTENSOR_FLAGS", "PYTENSORRC")}
    env.update(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    d, flags, mode = out.split()
    assert d == str(tmp_path / "cache" / "rectify" / f"pytensor-{os.getuid()}")
    assert flags == f"base_compiledir={d}" and mode == "0o700"
    env["PYTENSOR_FLAGS"] = "base_compiledir=/somewhere/else"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[:2] == ["None", "base_compiledir=/somewhere/else"]


def test_binary_logistic_with_unseen_group_level_falls_back_to_pooling():
    rng = np.random.default_rng(5)
    N, G = 8000, 6
    g = rng.integers(0, G, N)
    u = np.array([-0.8, -0.3, 0.0, 0.2, 0.5, 0.9])
    a = (rng.random(N) < expit(u[g])).astype(int)
    p_true = expit(-0.5 + 1.8 * (a - 0.5) + u[g])
    y = (rng.random(N) < p_true).astype(int)
    pilot = np.flatnonzero(g != 5)[:250]  # group 5 has no pilot rows
    lab = np.array(["no", "yes"], dtype=object)
    pop = pd.DataFrame({"human": lab[y], "llm": lab[a], "g": g})
    cal = BayesianCalibrator("human", "llm", ["no", "yes"], groups=["g"], random_state=1, **FAST)
    with pytest.warns(PriorOnlyWarning, match="without pilot rows"):
        cal.fit(pop.iloc[pilot], population=pop)
    res = cal.poststratify(pop)
    assert res.diagnostics["divergences"] == 0 and res.diagnostics["r_hat_max"] < 1.05
    assert res.diagnostics["no_pilot_levels"] == {"g": [5]}
    tab = res.tidy()
    row = tab[(tab.group == "all") & (tab.term == "human=yes")].iloc[0]
    assert row.conf_low <= y.mean() <= row.conf_high
    for lev in range(G):
        r = tab[(tab.group == f"g={lev}") & (tab.term == "human=yes")].iloc[0]
        assert r.conf_low - 0.02 <= y[g == lev].mean() <= r.conf_high + 0.02
    # the group without pilot rows is far less certain than a pilot group of similar size
    width = {lev: float(tab[(tab.group == f"g={lev}") & (tab.term == "human=yes")].eval("conf_high - conf_low").iloc[0])
             for lev in (4, 5)}
    assert width[5] > 1.5 * width[4]
    proba = cal.predict_proba(pop.iloc[:50])  # (n, K) over classes_, as the other simulators
    assert list(cal.classes_) == ["no", "yes"] and proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(cal.predict(pop.iloc[:50])) == list(cal.classes_[np.argmax(proba, axis=1)])
    np.testing.assert_allclose(cal.predict_score(pop.iloc[:50]), proba @ [1.0, 2.0])
    with pytest.raises(InputError, match="constant column"):
        HierarchicalCalibrator(2, **FAST).fit(y[pilot], a[pilot], np.ones((250, 1)))


def test_bad_inputs_are_refused_before_sampling(pop, fitted):
    model, _, _ = fitted
    with pytest.raises(UnseenLevelError, match="never saw"):
        model.predict_proba([0, 1], [[0.0], [1.0]], {"cell": np.array([0, 99])})
    p = model.predict_proba([0, 1], [[0.0], [1.0]], {"cell": np.array([0, 99])},
                            allow_new_groups=True, random_state=0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    with pytest.raises(InputError, match="'y'.*outside"):
        HierarchicalCalibrator(5, **FAST).fit([0, 7], [0, 1])
    with pytest.raises(InputError, match="'llm'.*NaN"):
        HierarchicalCalibrator(5, **FAST).fit([0, 1], [0, np.nan])
    with pytest.raises(InputError, match="'pop_llm'.*NaN"):
        model.poststratify(np.array([0, np.nan]), [[0.0], [1.0]], {"cell": np.array([0, 1])})
    with pytest.raises(InputError, match="grouping factors"):
        model.poststratify(pop["a"][:10], pop["x"][:10, None])


def test_misclassification_nuts_recovers_shifted_prevalence_and_matches_importance():
    rng = np.random.default_rng(11)
    K = 3
    M = np.array([[0.75, 0.2, 0.05], [0.15, 0.7, 0.15], [0.05, 0.25, 0.7]])
    y = rng.integers(0, K, 240)  # balanced quota pilot
    yh = (rng.random(240)[:, None] > M[y].cumsum(1)).sum(1)
    p_pop = np.array([0.6, 0.3, 0.1])  # the population differs from the pilot
    yp = rng.choice(K, 3000, p=p_pop)
    yhp = (rng.random(3000)[:, None] > M[yp].cumsum(1)).sum(1)
    truth = np.bincount(yp, minlength=K) / yp.size
    nuts = MisclassificationModel(K, sampler="nuts", random_state=2, **FAST).fit(y, yh, yhp)
    r = nuts.result(estimand="shares")
    assert r.diagnostics["divergences"] == 0 and r.diagnostics["r_hat_max"] < 1.05
    lo, hi = r.conf_int()
    assert np.all((lo <= truth) & (truth <= hi))
    imp = MisclassificationModel(K, sampler="importance", chains=4, draws=2000,
                                 random_state=2).fit(y, yh, yhp).result(estimand="shares")
    # both samplers target the same posterior: means agree within Monte Carlo error
    np.testing.assert_allclose(r.estimate, imp.estimate, atol=4 * r.std_error.max() / np.sqrt(150))
    np.testing.assert_allclose(r.std_error, imp.std_error, rtol=0.25)
    # the chain rule transports P(y | yhat) from the quota pilot and misses the truth
    c = chain_rule(y, yh, yhp, n_options=K, estimand="shares", random_state=0)
    assert abs(c.estimate[0] - truth[0]) > abs(r.estimate[0] - truth[0]) + 0.05


def test_nutpie_and_pymc_samplers_agree_on_the_same_posterior(pop, fitted):
    """The default sampler (nutpie, installed by the ``bayes`` extra) and pymc's NUTS target the same
    posterior: the population mean and the cut points agree within 5 Monte Carlo standard errors."""
    model, _, idx = fitted
    assert model.diagnostics_["sampler"] == "nutpie"  # "auto" picks nutpie when it is installed
    sub = idx[:150]
    fits = {}
    for sampler in ("nutpie", "pymc"):
        m = HierarchicalCalibrator(5, sampler=sampler, random_state=11, varying_slopes=False,
                                   target_accept=0.95, **FAST)
        m.fit(pop["y"][sub], pop["a"][sub], groups={"cell": pop["cell"][sub] % 8})
        assert m.diagnostics_["sampler"] == sampler and m.diagnostics_["divergences"] == 0
        r = m.poststratify(pop["a"], groups_pop={"cell": pop["cell"] % 8}, estimand="mean")
        fits[sampler] = (r, m)
    (rn, mn), (rp, mp) = fits["nutpie"], fits["pymc"]
    dn, dp = rn.draws[:, 0], rp.draws[:, 0]
    ess = min(mn.diagnostics_["ess_bulk_min"], mp.diagnostics_["ess_bulk_min"])
    mcse = np.sqrt(dn.var() / ess + dp.var() / ess)
    assert abs(dn.mean() - dp.mean()) < 5 * mcse
    assert abs(dn.std() - dp.std()) < 0.3 * dp.std()
    cn = mn.draws_["cut"].mean(axis=0)
    cp = mp.draws_["cut"].mean(axis=0)
    sd = mp.draws_["cut"].std(axis=0)
    np.testing.assert_array_less(np.abs(cn - cp), 5 * sd * np.sqrt(2.0 / ess))


def test_unknown_sampler_name_is_refused():
    with pytest.raises(InputError, match="'sampler'"):
        HierarchicalCalibrator(5, sampler="gibbs", **FAST).fit([0, 1, 2], [0, 1, 2])
