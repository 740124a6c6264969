"""A growth prior on the grid: ``delta^2 int (g - g_0)^2 rho`` against its closed form, batches and the errors;
and the per-cell rates of ``pp.growth_prior``: gene matching, organisms, the time unit and its refusals.

The graph's checks are in test_graph.py; the compiled iteration with a prior is in test_solve.py.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from sc_syncot import datasets, pp, tl
from sc_syncot.pp.growth import infer_time_unit
from sc_syncot.solvers import Grid, MongeSecondary, SyncOTProblem, solve
from sc_syncot.solvers.closed_forms import gaussian_density, wfr_pure_growth, wfr_pure_growth_with_prior

from .test_bad_input_entry_points import FIT, course, unchanged
from .test_datasets import _DATA, needs_data

DELTA, RATIO = 0.3, 2.5
GRIDS = {"1d": Grid([(0.0, 1.0)], (64,), 16), "2d": Grid([(0.0, 1.0), (0.0, 1.0)], (16, 16), 8)}
COARSE = Grid([(0.0, 1.0)], (32,), 8)  # for the problems that also transport (2,000-3,000 iterations at tol 1e-7)


def _bump(grid: Grid, centre: float = 0.5, width: float = 0.1) -> np.ndarray:
    return gaussian_density(grid, np.full(grid.ndim, centre), width**2 * np.eye(grid.ndim))


@pytest.mark.parametrize("prior", [0.5, np.log(RATIO), 1.5])
@pytest.mark.parametrize("name", GRIDS)
def test_pure_growth_with_a_growth_prior_matches_its_closed_form(name, prior):
    """Growing by 2.5 with a prior rate costs the closed form, zero at ``g_0 = log 2.5`` (then the rate is ``g_0``).

    At ``g_0 = log 2.5`` the cost is zero, so the relative change of the stopping rule never settles: 1,000
    iterations there (the rate and masses are as close after 500 as after 2,000).
    """
    grid = GRIDS[name]
    rho0 = _bump(grid)
    own = np.isclose(prior, np.log(RATIO))
    problem = SyncOTProblem(grid, rho0, RATIO * rho0, delta=DELTA, growth_prior=np.full(grid.shape, prior))
    res = solve(problem, tol=1e-7, max_iter=1000 if own else 5000)
    exact = wfr_pure_growth_with_prior(DELTA, RATIO, 1.0, prior)
    plain = wfr_pure_growth(DELTA, RATIO, 1.0)
    # measured (cost - exact) / plain: 1-D -1.8e-4, 1.4e-7, 5.5e-4; 2-D -6.6e-4, 1.6e-6, 2.3e-3 (time steps)
    assert abs(res.cost - exact) < 1e-2 * plain
    assert res.costs["primary_growth"] == pytest.approx(res.cost, abs=1e-4 * plain)
    assert res.costs["primary_transport"] < 1e-4 * plain
    if own:  # the prior's own exponential growth: the fitted rate is the prior's
        assert res.cost < 1e-5 * plain
        np.testing.assert_allclose(grid.mass(res.rho), np.exp(prior * grid.times()), rtol=1e-3)  # measured 1.5e-4
        mid = 0.5 * (res.rho[1:] + res.rho[:-1])
        bulk = mid > 0.01 * mid.max()
        np.testing.assert_allclose(res.growth[bulk], prior, atol=5e-3 * prior)  # measured 1.5e-3
        path = np.exp(prior * grid.times()).reshape(-1, *[1] * grid.ndim) * rho0
        np.testing.assert_allclose(res.rho, path, atol=2e-2 * path.max())  # measured 4e-3 (the tails, last)


def _moving_problem(grid: Grid, prior=None, ratio: float = 1.6) -> SyncOTProblem:
    """Transport and growth: a bump moves right and grows, under a prior that varies in space."""
    return SyncOTProblem(grid, _bump(grid, 0.4), ratio * _bump(grid, 0.6), delta=DELTA, growth_prior=prior)


def _ramp(grid: Grid, low: float, high: float) -> np.ndarray:
    """A prior rising along the first axis."""
    return low + (high - low) * grid.points()[..., 0]


def test_a_zero_prior_is_no_prior():
    grid = COARSE
    without = solve(_moving_problem(grid), tol=1e-7)
    zero = solve(_moving_problem(grid, np.zeros(grid.shape)), tol=1e-7)
    assert zero.n_iter == without.n_iter
    assert zero.cost == pytest.approx(without.cost, rel=1e-12)
    for key, val in without.costs.items():
        assert zero.costs[key] == pytest.approx(val, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(zero.rho, without.rho, rtol=0, atol=1e-12 * without.rho.max())


def test_the_reported_growth_cost_is_the_departure_from_the_prior():
    """``costs["primary_growth"]`` is ``delta^2 sum (g - g_0)^2 rho`` of the fitted path, and the fit follows the
    prior: where it is higher the fitted rate is higher than without it."""
    grid = COARSE
    prior = _ramp(grid, -0.5, 1.5)
    res = solve(_moving_problem(grid, prior), tol=1e-7)
    assert res.converged
    mid = 0.5 * (res.rho[1:] + res.rho[:-1])
    by_hand = DELTA**2 * np.sum((res.growth - prior) ** 2 * mid) * grid.dt * grid.cell_volume
    assert res.costs["primary_growth"] == pytest.approx(by_hand, rel=1e-2)  # prox point vs iterate: measured 2e-4
    assert res.costs["total"] == pytest.approx(res.cost)
    assert res.cost == pytest.approx(res.costs["primary_transport"] + res.costs["primary_growth"])
    plain = solve(_moving_problem(grid), tol=1e-7)
    bulk = mid > 0.05 * mid.max()
    right = bulk & (grid.points()[..., 0] > 0.6)
    left = bulk & (grid.points()[..., 0] < 0.4)
    assert res.growth[right].mean() > plain.growth[right].mean()
    assert res.growth[left].mean() < plain.growth[left].mean()


def test_a_monge_secondary_pays_its_growth_from_the_prior_too():
    """``g_Y = g``: the secondary's growth term is ``delta_Y^2 (g - g_0)^2 rho`` as well, so the costs add up."""
    grid = COARSE
    base = _moving_problem(grid, _ramp(grid, 0.0, 1.0))
    secondary = MongeSecondary(lambda x: np.concatenate([x, x**2], axis=1), weight=0.5, delta=0.2)
    problem = SyncOTProblem(
        grid, base.rho0[0], base.rho1[0], delta=DELTA, secondaries=[secondary], growth_prior=base.growth_prior[0]
    )
    res = solve(problem, tol=1e-7)
    parts = res.costs["primary_transport"] + res.costs["primary_growth"] + res.costs["secondary_0"]
    assert res.cost == pytest.approx(parts)
    # the objective the iteration minimized is the reported total
    assert res.history["objective"][-1] == pytest.approx(res.cost, rel=1e-6)


def test_a_batch_with_different_priors_gives_the_separate_solves():
    grid = COARSE
    priors = np.stack([_ramp(grid, -0.5, 1.0), _ramp(grid, 1.0, 0.2)])
    single = [solve(_moving_problem(grid, p), tol=1e-7) for p in priors]
    problem = SyncOTProblem(
        grid, np.stack([_bump(grid, 0.4)] * 2), 1.6 * np.stack([_bump(grid, 0.6)] * 2), delta=DELTA,
        growth_prior=priors,
    )  # fmt: skip
    both = solve(problem, tol=1e-7)
    assert both.rho.shape == (2, grid.n_time + 1, *grid.shape)
    for b, one in enumerate(single):  # they stop at different iterations: measured 1.5e-5 (cost), 3.4e-5 (rho)
        assert abs(one.cost - both.cost[b]) < 2e-4 * one.cost
        np.testing.assert_allclose(both.rho[b], one.rho, atol=2e-4 * one.rho.max())
    # one prior for the whole batch acts as that prior given to every problem
    shared = SyncOTProblem(grid, problem.rho0, problem.rho1, delta=DELTA, growth_prior=priors[0])
    assert shared.growth_prior.shape == (1, *grid.shape)
    each = SyncOTProblem(grid, problem.rho0, problem.rho1, delta=DELTA, growth_prior=np.stack([priors[0]] * 2))
    np.testing.assert_array_equal(solve(shared, max_iter=100).rho, solve(each, max_iter=100).rho)


def test_a_growth_prior_on_a_grid_is_checked_with_its_name():
    grid = Grid([(0.0, 1.0), (0.0, 1.0)], (8, 8), 4)
    rho = np.ones((8, 8))
    with pytest.raises(ValueError, match="growth_prior: a growth prior needs an unbalanced"):
        SyncOTProblem(grid, rho, rho, growth_prior=np.zeros((8, 8)))
    for bad in (np.zeros(64), np.zeros((8, 7)), np.zeros((3, 8, 8)), 0.5):
        with pytest.raises(ValueError, match=r"growth_prior: expected \(8, 8\) or \(1, 8, 8\) rates per grid cell"):
            SyncOTProblem(grid, rho, rho, delta=1.0, growth_prior=bad)
    nan = np.zeros((8, 8))
    nan[2, 3] = np.nan
    with pytest.raises(ValueError, match="growth_prior: expected finite values"):
        SyncOTProblem(grid, rho, rho, delta=1.0, growth_prior=nan)
    batch = SyncOTProblem(grid, np.stack([rho] * 2), np.stack([rho] * 2), delta=1.0, growth_prior=np.zeros((2, 8, 8)))
    assert batch.growth_prior.shape == (2, 8, 8)


# --- pp.growth_prior: genes, organisms and the time unit ------------------------------------------------------------

HUMAN = pp.gene_sets("human")
MOUSE = pp.gene_sets("mouse")
# 20 proliferation and 21 apoptosis genes: CASP10, which mouse lacks, left out; FASLG and TP53, whose mouse symbols
# are not the human ones in title case, in
PICKED = {
    "proliferation": HUMAN["proliferation"][:20],
    "apoptosis": [g for g in HUMAN["apoptosis"][:21] if g != "CASP10"] + ["TP53"],
}


def _cells(organism: str = "human", n: int = 90, seed: int = 0) -> ad.AnnData:
    """Half the cells express 20 proliferation genes; 21 apoptosis genes and 60 others at one level, at 0, 1, 3 h.

    The mouse version spells the same genes as mouse symbols (``Mki67``, ``Trp53``, ``Fasl``) and its others as
    ``Gm0``, ``Gm1``, ... .
    """
    names = PICKED["proliferation"] + PICKED["apoptosis"]
    if organism == "mouse":
        renamed = {"TP53": "Trp53", "FASLG": "Fasl"}
        names = [renamed.get(g, g.capitalize()) for g in names] + [f"Gm{i}" for i in range(60)]
    else:
        names = names + [f"LOC{i}" for i in range(60)]
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 0.2, size=(n, len(names)))
    x[: n // 2, :20] += 2.0
    adata = ad.AnnData(x)
    adata.var_names = names
    adata.obs["time_h"] = np.repeat([0.0, 1.0, 3.0], n // 3)
    return adata


def test_the_bundled_sets_are_human_and_mouse_symbols():
    """93 / 62 human genes, upper case; the mouse sets are their MGI symbols (title case, Trp53, Trp53i3, Fasl, no
    Casp10), without repeats."""
    assert (len(HUMAN["proliferation"]), len(HUMAN["apoptosis"])) == (93, 62)
    assert (len(MOUSE["proliferation"]), len(MOUSE["apoptosis"])) == (93, 61)
    for sets in (HUMAN, MOUSE):
        every = sets["proliferation"] + sets["apoptosis"]
        assert len({g.upper() for g in every}) == len(every)
    assert all(g == g.upper() for g in HUMAN["proliferation"] + HUMAN["apoptosis"])
    assert all(g[0].isupper() and g[1:] == g[1:].lower() for g in MOUSE["proliferation"] + MOUSE["apoptosis"])
    assert MOUSE["proliferation"][0] == "Mki67"
    assert {"Trp53", "Trp53i3", "Fasl"} <= set(MOUSE["apoptosis"])
    assert not {"Tp53", "Faslg", "Casp10"} & set(MOUSE["apoptosis"])


def test_the_hour_unit_gives_a_24th_of_the_daily_rates():
    """The scores do not depend on the unit; the rates are the daily ones times the days per unit."""
    day, hour, week = _cells(), _cells(), _cells()
    pp.growth_prior(day, time_unit="day")
    pp.growth_prior(hour, time_unit="hour")
    pp.growth_prior(week, time_unit=7)
    per_day = day.obs["growth_prior"].to_numpy()
    assert np.ptp(per_day) > 0.5  # the rates differ between the halves: the comparison below means something
    np.testing.assert_array_equal(hour.obs["growth_prior_proliferation"], day.obs["growth_prior_proliferation"])
    np.testing.assert_allclose(hour.obs["growth_prior"], per_day / 24, rtol=1e-15, atol=0)
    np.testing.assert_allclose(week.obs["growth_prior"], per_day * 7, rtol=1e-15, atol=0)
    assert hour.uns["growth_prior"]["time_unit"] == "hour"
    assert hour.uns["growth_prior"]["days_per_unit"] == 1 / 24
    assert week.uns["growth_prior"]["time_unit"] == 7.0 and week.uns["growth_prior"]["time_unit_source"] == "given"
    inferred = _cells()
    pp.growth_prior(inferred, time_key="time_h")  # the column's name says hours
    np.testing.assert_array_equal(inferred.obs["growth_prior"], hour.obs["growth_prior"])
    u = inferred.uns["growth_prior"]
    assert u["time_unit"] == "hour" and u["time_key"] == "time_h" and "time_h" in u["time_unit_source"]


def _labelled(values, name: str = "time", ordered: bool | None = None) -> ad.AnnData:
    adata = ad.AnnData(np.zeros((len(values), 1)))
    col = pd.Series(list(values), index=adata.obs_names)
    if ordered is not None:
        col = pd.Categorical(col, categories=list(dict.fromkeys(values)), ordered=ordered)
    adata.obs[name] = col
    return adata


@pytest.mark.parametrize(
    ("adata", "key", "unit"),
    [
        pytest.param(_labelled([0.0, 1.0, 3.0], "time_h"), "time_h", "hour", id="name-h"),
        pytest.param(_labelled([0.0, 1.0], "timeHours"), "timeHours", "hour", id="name-camel"),
        pytest.param(_labelled([0.0, 2.0], "hours_post_treatment"), "hours_post_treatment", "hour", id="name-words"),
        pytest.param(_labelled([0, 7], "day"), "day", "day", id="name-day"),
        pytest.param(_labelled([0.0, 30.0], "time_min"), "time_min", "minute", id="name-min"),
        pytest.param(_labelled([1, 2], "age_weeks"), "age_weeks", "week", id="name-weeks"),
        pytest.param(_labelled(["0h", "12h", "24h"], "stage", ordered=True), "stage", "hour", id="labels-ordered"),
        pytest.param(_labelled(["day7", "day0", "day3"], "sample"), "sample", "day", id="labels-text"),
        pytest.param(_labelled(["D0", "D2"], "sample", ordered=False), "sample", "day", id="labels-unordered"),
        pytest.param(_labelled(["12 h", "48 hours"], "time_h"), "time_h", "hour", id="name-and-labels"),
        # no unit, or no single one: time_unit is then required
        pytest.param(_labelled([0.0, 1.0, 2.0], "time"), "time", None, id="no-unit"),
        pytest.param(_labelled(["early", "mid", "late"], "day", ordered=True), "day", None, id="steps"),
        pytest.param(_labelled(["day2", "day1"], "day", ordered=True), "day", None, id="steps-decreasing"),
        # a zero names no unit and needs none: the other labels' unit is the times'
        pytest.param(_labelled(["0", "12h"], "time"), "time", "hour", id="zero-without-unit"),
        pytest.param(_labelled(["1", "12h"], "time"), "time", None, id="label-without-unit"),
        # labels in two units are read as times in one (pp.inputs.times: 0.5 and 1 day), which is their unit
        pytest.param(_labelled(["12h", "1d"], "time"), "time", "day", id="labels-two-units"),
        pytest.param(_labelled(["12h", "1d"], "time_h"), "time_h", "hour", id="labels-two-units-name-hours"),
        pytest.param(_labelled(["hESC_d0", "hESC_d2"], "sample"), "sample", None, id="labels-words-name-two-units"),
        pytest.param(_labelled([0.0, 1.0], "hour_of_day"), "hour_of_day", None, id="name-two-units"),
        pytest.param(_labelled(["12h", "24h"], "time_d"), "time_d", None, id="name-and-labels-differ"),
        pytest.param(_labelled([0.0, 1.0], "t_s"), "t_s", None, id="seconds-not-a-choice"),
    ],
)
def test_the_time_unit_is_inferred_only_from_one_named_unit(adata, key, unit):
    found, why = infer_time_unit(adata, key)
    assert found == unit, why
    if unit is None:
        with unchanged(adata), pytest.raises(ValueError, match=rf"time_unit: required: .* time_key={key!r}"):
            pp.growth_prior(adata, time_key=key)


def test_a_time_unit_given_against_the_time_key_is_used_with_a_warning():
    adata = _cells()
    with pytest.warns(UserWarning, match=r"time_unit='day' \(1 days per unit\), but time_key='time_h'.* hours"):
        pp.growth_prior(adata, time_unit="day", time_key="time_h")
    assert adata.uns["growth_prior"]["days_per_unit"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({}, r"time_unit: required: .* not known \(pass time_key=", id="no-unit"),
        pytest.param({"time_unit": "days"}, r"time_unit: expected 'day', 'hour', 'minute', 'week' or a", id="name"),
        pytest.param({"time_unit": 0}, r"time_unit: expected .* got 0", id="zero"),
        pytest.param({"time_unit": np.inf}, r"time_unit: expected .* got inf", id="inf"),
        pytest.param({"time_unit": True}, r"time_unit: expected .* got True", id="bool"),
        pytest.param({"time_key": "nope"}, r"time_key='nope': not in \.obs", id="time-key"),
        pytest.param({"time_unit": "day", "gene_symbols": "symbol"}, r"gene_symbols='symbol': expected", id="col"),
        pytest.param({"time_unit": "day", "min_genes": 0}, r"min_genes: expected an integer >= 1", id="min"),
        pytest.param(
            {"time_key": "time_h", "key_added": "time_h"},
            r"key_added='time_h': would overwrite .obs\['time_h'\]",
            id="overwrite",
        ),
        pytest.param(
            {"time_unit": "day", "proliferation_genes": "MKI67"}, r"proliferation_genes: expected a list", id="str"
        ),
        pytest.param(
            {"time_unit": "day", "organism": "mouse"},
            r"organism='mouse': the symbols in adata.var_names look human \(100% of 101 symbols in upper case",
            id="human-data-mouse-sets",
        ),
        pytest.param(
            {"time_unit": "day", "min_genes": 21},
            r"proliferation_genes: only 20 of 93 genes found \(need min_genes=21\): MKI67, TOP2A, .*, CDT1 "
            r"\(apoptosis_genes: 21 of 62 found\)\. Symbols are matched ignoring case in adata\.var_names .*"
            r"gene_symbols= .*organism='mouse' picks the mouse ones.*your own gene sets",
            id="few-genes",
        ),
    ],
)
def test_growth_prior_refuses_and_leaves_the_anndata_untouched(kwargs, match):
    adata = _cells()
    with unchanged(adata), pytest.raises(ValueError, match=match):
        pp.growth_prior(adata, **kwargs)


def test_symbols_are_matched_ignoring_case_and_from_a_var_column():
    """Lower-case symbols, and Ensembl IDs as var_names with the symbols in .var: the same genes, the same rates."""
    plain = _cells()
    pp.growth_prior(plain, time_unit="hour")
    lower = _cells()
    lower.var_names = [g.lower() for g in lower.var_names]
    pp.growth_prior(lower, time_unit="hour")
    assert list(lower.uns["growth_prior"]["proliferation"]["found"]) == [g.lower() for g in PICKED["proliferation"]]
    assert lower.uns["growth_prior"]["organism"] == "human"  # lower case does not tell: the default
    assert "by default" in lower.uns["growth_prior"]["organism_source"]
    ids = _cells()
    ids.var["symbol"] = list(ids.var_names)
    ids.var_names = [f"ENSG{i:011d}" for i in range(ids.n_vars)]
    ensembl = r"they look like Ensembl IDs, e.g. 'ENSG00000000000'.*'symbol'"
    with unchanged(ids), pytest.raises(ValueError, match=ensembl):
        pp.growth_prior(ids, time_unit="hour")
    pp.growth_prior(ids, time_unit="hour", gene_symbols="symbol")
    for adata in (lower, ids):
        np.testing.assert_allclose(adata.obs["growth_prior"], plain.obs["growth_prior"], rtol=1e-12)
        for name, picked in PICKED.items():
            assert adata.uns["growth_prior"][name]["n_found"] == len(picked)
    assert ids.uns["growth_prior"]["gene_symbols"] == "symbol"
    # own sets too; repeats that differ in case count once, found genes are named as the data spells them
    own = _cells()
    spelled = ["top2a", "MKI67", "Top2a", "NOPE"] + PICKED["proliferation"][2:]
    pp.growth_prior(own, proliferation_genes=spelled, apoptosis_genes=PICKED["apoptosis"], time_unit="hour")
    u = own.uns["growth_prior"]["proliferation"]
    assert (u["n_genes"], u["n_found"]) == (21, 20) and list(u["found"][:3]) == ["TOP2A", "MKI67", "PCNA"]
    np.testing.assert_allclose(own.obs["growth_prior"], plain.obs["growth_prior"], rtol=1e-12)


def test_the_organism_is_read_from_the_symbols_case():
    """Mouse symbols pick the mouse sets (Trp53 and Fasl found); the human sets are refused on them, while the
    user's own sets are matched without that check (TP53 does not match Trp53)."""
    mouse = _cells("mouse")
    pp.growth_prior(mouse, time_unit="day")
    u = mouse.uns["growth_prior"]
    assert u["organism"] == "mouse" and u["organism_source"].startswith("inferred from the symbols: 100% of")
    assert {"Trp53", "Fasl"} <= set(u["apoptosis"]["found"]) and u["apoptosis"]["n_found"] == 21
    with unchanged(mouse), pytest.raises(ValueError, match=r"organism='human': the symbols .* look mouse"):
        pp.growth_prior(mouse, organism="human", time_unit="day")
    pp.growth_prior(mouse, proliferation_genes=HUMAN["proliferation"], apoptosis_genes=HUMAN["apoptosis"], time_unit=1)
    assert mouse.uns["growth_prior"]["organism"] == "none"
    assert mouse.uns["growth_prior"]["apoptosis"]["n_found"] == 19  # all but TP53 and FASLG
    human = _cells()
    pp.growth_prior(human, time_unit="day")
    assert human.uns["growth_prior"]["organism"] == "human"
    # the same expression under either organism's symbols gives the same rates
    np.testing.assert_allclose(human.obs["growth_prior"], _rates(_cells("mouse")), rtol=1e-12)


def _rates(adata: ad.AnnData) -> np.ndarray:
    pp.growth_prior(adata, time_unit="day")
    return adata.obs["growth_prior"].to_numpy()


def test_what_growth_prior_writes_survives_an_h5ad_file(tmp_path):
    adata = _cells()
    pp.growth_prior(adata, time_key="time_h")
    adata.write_h5ad(tmp_path / "a.h5ad")
    u = ad.read_h5ad(tmp_path / "a.h5ad").uns["growth_prior"]
    assert u["time_unit"] == "hour" and u["days_per_unit"] == pytest.approx(1 / 24) and u["time_key"] == "time_h"
    assert list(u["proliferation"]["found"]) == PICKED["proliferation"]


@pytest.mark.filterwarnings("ignore:the solver stopped after:RuntimeWarning")
def test_syncot_warns_when_the_rates_were_written_for_another_time_column(recwarn):
    """tl.syncot reads the rates per unit of its own time key: rates that pp.growth_prior wrote for another time
    column are warned about, rates written for the same one (or without a record) are not."""
    adata = course()
    adata.obs["growth_prior"] = 0.1
    adata.uns["growth_prior"] = {"time_unit": "hour", "days_per_unit": 1 / 24, "time_key": "time_h"}
    other = (
        r"growth_key='growth_prior': pp.growth_prior wrote these rates per hour, the unit of time_key='time_h', and "
        r"the fit reads its times from time_key='time'"
    )
    with pytest.warns(UserWarning, match=other):
        tl.syncot(adata, "time", "X_pca", masses="growth_prior", **FIT)
    recwarn.clear()
    adata.uns["growth_prior"]["time_key"] = "time"
    tl.syncot(adata, "time", "X_pca", masses="growth_prior", **FIT)
    assert not [w for w in recwarn if "pp.growth_prior wrote" in str(w.message)]


@needs_data
def test_sciCAR_genes_are_found_and_the_refusal_lists_them():
    """sci-CAR's RNA holds 1,185 selected genes, in upper case: 3 of the 93 proliferation genes are among them (not a
    matter of case: lower-cased symbols find the same ones), too few for min_genes=5. With min_genes=3 the rates
    are written per hour, read from the time column's name."""
    adata = datasets.sciCAR_A549(_DATA, paired=False)[0]
    found = r"RRM2, HJURP, ECT2 \(apoptosis_genes: 9 of 62 found\)"
    with unchanged(adata), pytest.raises(ValueError, match=rf"proliferation_genes: only 3 of 93 genes found .*{found}"):
        pp.growth_prior(adata, time_key="time_h")
    lower = adata.copy()
    lower.var_names = [g.lower() for g in adata.var_names]
    with unchanged(lower), pytest.raises(ValueError, match=found.lower()):
        pp.growth_prior(lower, time_key="time_h")
    pp.growth_prior(adata, time_key="time_h", min_genes=3)
    u = adata.uns["growth_prior"]
    assert u["organism"] == "human" and u["time_unit"] == "hour"
    assert list(u["proliferation"]["found"]) == ["RRM2", "HJURP", "ECT2"] and u["apoptosis"]["n_found"] == 9
    assert np.all(np.abs(adata.obs["growth_prior"]) < 1.4 / 24)
