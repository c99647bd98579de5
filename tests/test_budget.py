"""The human/LLM budget split (issue 15) against brute force."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from rectify.budget import cheapest_split, split_cost
from rectify.errors import InputError


def _brute(ch, cl, h, sd, rho, max_sim, n_max, N_max):
    """Cheapest (n, N) on a full grid whose PPI++ variance reaches the target."""
    v = (h / norm.ppf(0.975)) ** 2
    n = np.arange(1, n_max + 1)[:, None].astype(float)
    N = np.arange(0, N_max + 1)[None, :].astype(float)
    var = sd**2 / n * (1 - rho**2 * N / (N + n))
    ok = var <= v * (1 + 1e-12)
    if max_sim is not None:
        ok &= N <= max_sim
    cost = np.where(ok, ch * n + cl * (n + N), np.inf)
    i, j = np.unravel_index(np.argmin(cost), cost.shape)
    return cost[i, j], int(n[i, 0]), int(N[0, j])


@pytest.mark.parametrize("ch, cl, h, sd, rho, max_sim", [
    (5.0, 0.01, 0.2, 1.0, 0.6, None),
    (1.0, 0.05, 0.25, 1.2, 0.8, None),
    (2.0, 0.002, 0.3, 1.0, 0.9, 400),
    (1.0, 0.5, 0.2, 1.0, 0.5, None),  # LLM calls expensive: few or none
    (1.0, 0.01, 0.2, 1.0, 0.0, None),  # a useless LLM: humans only
])
def test_cheapest_split_matches_brute_force(ch, cl, h, sd, rho, max_sim):
    s = cheapest_split(ch, cl, h, sd, rho, max_simulated=max_sim)
    nc = math.ceil((norm.ppf(0.975) * sd / h) ** 2)
    cost, n, N = _brute(ch, cl, h, sd, rho, max_sim, nc + 3, 4000 if max_sim is None else max_sim)
    assert s["cost"] == pytest.approx(cost)
    assert s["std_error"] <= h / norm.ppf(0.975) * (1 + 1e-9)
    assert s["cost"] == pytest.approx(split_cost(s["n_humans"], s["n_simulated"], ch, cl))
    if rho == 0:
        assert (s["n_humans"], s["n_simulated"]) == (nc, 0)
    assert s["cost"] <= s["cost_classical"] + cl * s["n_classical"]


def test_continuous_optimum_is_the_closed_form_and_near_the_integer_one():
    ch, cl, h, sd, rho = 4.0, 0.01, 0.05, 1.0, 0.7
    s = cheapest_split(ch, cl, h, sd, rho)
    nc = (norm.ppf(0.975) * sd / h) ** 2
    a, b = nc * (1 - rho**2), nc * rho**2
    assert s["n_continuous"] == pytest.approx(a + math.sqrt(cl * a * b / ch))
    assert abs(s["n_humans"] - s["n_continuous"]) <= 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(cost_human=0), "'cost_human'"), (dict(cost_llm=-1), "'cost_llm'"), (dict(half_width=0), "'half_width'"),
    (dict(sd="x"), "'sd'"), (dict(rho=1.5), "'rho'"), (dict(level=1.0), "'level'"),
    (dict(max_simulated=-3), "'max_simulated'"), (dict(cost_human=float("inf")), "'cost_human'"),
])
def test_refuses_bad_inputs(kwargs, match):
    args = dict(cost_human=1.0, cost_llm=0.01, half_width=0.1, sd=1.0, rho=0.5)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        cheapest_split(**args)


def test_no_simulation_allowed_means_humans_only():
    s = cheapest_split(1.0, 0.0, 0.1, 1.0, 0.9, max_simulated=0)
    nc = math.ceil((norm.ppf(0.975) / 0.1) ** 2)
    assert (s["n_humans"], s["n_simulated"], s["cost"]) == (nc, 0, float(nc))
