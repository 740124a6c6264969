import anndata as ad
import numpy as np
import pytest

from sc_syncot import tl
from sc_syncot.tl.time_warp import TimeWarp, fit_time_warp, select_strength, warp_from_callable


def saturating(t, tau=1.0):
    """Progress of a response that is fast early and saturates: speed exp(-t / tau)."""
    return 1 - np.exp(-np.asarray(t, float) / tau)


def true_fraction(progress, t, t0, t1):
    return (progress(t) - progress(t0)) / (progress(t1) - progress(t0))


def test_exponential_speed_is_recovered_exactly_from_interval_lengths():
    # log v linear in t is the model's own family: lengths of an exponential profile give it back exactly
    tp = np.array([0.0, 0.5, 2.0, 3.0, 5.0])
    for tau in (0.7, -2.0):  # decelerating and accelerating
        warp = fit_time_warp(tp, np.abs(np.diff(saturating(tp, tau))))
        t = np.linspace(0, 5, 41)
        k = np.clip(np.searchsorted(tp, t, side="right") - 1, 0, 3)
        expected = true_fraction(lambda x, tau=tau: saturating(x, tau), t, tp[k], tp[k + 1])
        assert np.allclose(warp.fractions(t), expected, atol=2e-3)
        assert np.allclose(warp(tp), tp) and np.allclose(warp.inverse(warp(t)), t, atol=1e-9)


def test_constant_speed_gives_the_identity_and_two_intervals_suffice():
    tp = np.array([0.0, 1.0, 3.0, 4.0])
    warp = fit_time_warp(tp, 0.6 * np.diff(tp))
    t = np.linspace(0, 4, 33)
    assert np.allclose(warp(t), t, atol=1e-6)
    assert fit_time_warp([0.0, 1.0, 2.0], [2.0, 1.0]).fraction(0.5, 0) > 0.5  # slowing down: ahead of the clock


def test_callable_warp_and_round_trip():
    tp = np.array([0.0, 1.0, 2.0])
    warp = warp_from_callable(np.sqrt, tp)
    assert warp.fraction(0.25, 0) == pytest.approx(0.5, abs=1e-3)
    assert warp.fraction(1.5, 1) == pytest.approx((np.sqrt(1.5) - 1) / (np.sqrt(2) - 1), abs=1e-3)
    back = TimeWarp.from_uns(warp.to_uns())
    assert back.kind == "callable" and np.array_equal(back.tau, warp.tau)
    # a fitted warp is itself a callable: it can be passed on to another fit
    assert np.allclose(warp_from_callable(warp, tp).tau, warp.tau)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: fit_time_warp([0.0, 1.0], [1.0]), "at least 3"),
        (lambda: fit_time_warp([0.0, 1.0, 1.0], [1.0, 1.0]), "increasing"),
        (lambda: fit_time_warp([0.0, 1.0, 2.0], [1.0, -1.0]), "lengths"),
        (lambda: fit_time_warp([0.0, 1.0, 2.0], [1.0, np.nan]), "lengths"),
        (lambda: fit_time_warp([0.0, 1.0, 2.0], [0.0, 0.0]), "length 0"),
        (lambda: warp_from_callable(lambda t: -t, [0.0, 1.0, 2.0]), "nondecreasing"),
        (lambda: warp_from_callable(lambda t: np.minimum(t, 1.0), [0.0, 1.0, 2.0]), "strictly"),
    ],
)
def test_bad_warps_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def course(times, progress, n=300, extent=3.0, seed=0):
    """One blob moving along x by ``extent * progress(t)``: the same cells shifted, so lengths are exact."""
    base = np.random.default_rng(seed).normal(0, 0.25, (n, 2))
    x = np.concatenate([base + [extent * progress(t), 0.0] for t in times])
    adata = ad.AnnData(np.zeros((len(x), 1), np.float32))
    adata.obs["time"] = np.repeat(np.asarray(times, float), n)
    adata.obsm["X_pca"] = x
    return adata


FIT = {"delta": None, "n_bins": 32, "n_time": 8, "progress": False}


def test_fitted_warp_recovers_a_saturating_course():
    times = [0.0, 1.0, 2.0, 3.0]
    adata = course(times, saturating)
    tl.syncot(adata, "time", "X_pca", **FIT)
    warp = TimeWarp.from_uns(adata.uns["syncot"]["time_warp"])
    assert adata.uns["syncot"]["params"]["time_warp"] == "auto" and warp.kind == "auto"
    mids = np.array([0.5, 1.5, 2.5])
    expected = true_fraction(saturating, mids, mids - 0.5, mids + 0.5)  # 0.62 each; constant speed says 0.5
    assert np.allclose(warp.fractions(mids), expected, atol=0.05)
    # interpolate places t = 0.5 where the cells are at that time, not halfway
    density, _ = tl.interpolate(adata, 0.5)
    grid = adata.uns["syncot"]["grid"]
    (lo, hi), nx = grid["bounds"][0], grid["shape"][0]
    centres = lo + (hi - lo) * (np.arange(nx) + 0.5) / nx
    mean_x = (density.sum(1) * centres).sum() / density.sum()
    truth = 3.0 * saturating(0.5) + adata.obsm["X_pca"][:300, 0].mean()
    assert mean_x == pytest.approx(truth, abs=0.06)
    # trajectories stamp each step with the physical time the warp places it at: early steps are short in time
    tl.trajectories(adata, n_particles=20)
    steps = np.diff(adata.uns["syncot_trajectories"]["times"][:9])
    assert np.all(np.diff(steps) > 0) and adata.uns["syncot_trajectories"]["times"][8] == pytest.approx(1.0)
    tl.syncot(adata, "time", "X_pca", time_warp=None, key_added="constant", **FIT)
    assert adata.uns["constant"]["time_warp"]["kind"] == "identity"


def test_constant_speed_course_keeps_the_identity():
    times = [0.0, 1.0, 3.0, 4.0]
    adata = course(times, lambda t: np.asarray(t) / 4.0)
    tl.syncot(adata, "time", "X_pca", **FIT)
    warp = TimeWarp.from_uns(adata.uns["syncot"]["time_warp"])
    t = np.linspace(0, 4, 41)
    k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, 2)
    physical = (t - np.take(times, k)) / (np.take(times, k + 1) - np.take(times, k))
    assert np.abs(warp.fractions(t) - physical).max() < 0.05


def test_heldout_warp_is_fitted_without_the_heldout_time_point():
    times = [0.0, 1.0, 2.0, 3.0]
    adata = course(times, saturating)
    table = tl.evaluate_heldout(adata, "time", 1.0, "X_pca", n_sample=300, n_repeats=3, **FIT)
    w1 = table[table.space == "primary"].set_index("method")["w1"]
    fractions = adata.uns["syncot_heldout"]["fractions"]
    truth = true_fraction(saturating, 1.0, 0.0, 2.0)  # 0.73: the cells are well past halfway at t = 1
    assert fractions["physical"] == pytest.approx(0.5)
    for method in ("syncot", "primary_only", "static_ot"):
        assert fractions[f"{method}_warped"] == pytest.approx(truth, abs=0.05)
        assert w1[f"{method}_warped"] < 0.6 * w1[method]
        # three held-in time points: too few to check the strength by leave-one-out, so the full warp, said so
        assert adata.uns["syncot_heldout"]["warp_strengths"][method] == 1.0
        assert "too few for the leave-one-out check" in adata.uns["syncot_heldout"]["warp_reasons"][method]


def test_shrinking_scales_each_intervals_log_speed_change():
    tp = np.array([0.0, 1.0, 2.0, 3.0])
    full = fit_time_warp(tp, np.diff(saturating(tp)))
    assert full.strength == 1.0
    none = full.shrunk(0.0, "test")
    assert none.is_identity and none.kind == "auto" and np.allclose(none.fractions([0.5, 1.5]), 0.5)
    half = full.shrunk(0.5, "test", (0.0, 1.0), (1.0, 0.5))
    # per unit interval the full warp's log speed falls by 1; half of it puts the midpoint at 1 / (1 + e^-0.25)
    assert half.fraction(0.5, 0) == pytest.approx(1 / (1 + np.exp(-0.25)), abs=2e-3)
    assert np.allclose(np.diff(half.log_speed), 0.5 * np.diff(full.log_speed))
    back = TimeWarp.from_uns(half.to_uns())
    assert back.strength == 0.5 and back.reason == "test" and np.array_equal(back.scores, [1.0, 0.5])
    with pytest.raises(ValueError, match="strength"):
        full.shrunk(1.5)


def noisy_course(times, progress, n=200, extent=3.0, seed=0):
    """One blob moving along x by ``extent * progress(t)``, a fresh sample at each time point (noisy lengths)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 0.4, (n, 2)) + [extent * progress(t), 0.0] for t in times])
    adata = ad.AnnData(np.zeros((len(x), 1), np.float32))
    adata.obs["time"] = np.repeat(np.asarray(times, float), n)
    adata.obsm["X_pca"] = x
    return adata


@pytest.mark.parametrize("times", [[0.0, 0.5, 2.0, 3.0, 5.0], [0.0, 2.0, 5.0]])
def test_noisy_constant_speed_keeps_the_identity(times):
    # Fresh samples make the interval lengths noisy, so the full warp bends a little. With five time points the
    # leave-one-out check finds no clear gain and keeps constant speed; with three it cannot run, and the full
    # warp, fitted to two speeds that differ by noise only, stays close to the identity.
    adata = noisy_course(times, lambda t: np.asarray(t) / 5.0)
    tl.syncot(adata, "time", "X_pca", **FIT)
    record = adata.uns["syncot"]["time_warp"]
    warp = TimeWarp.from_uns(record)
    t = np.linspace(0, 5, 51)
    k = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    physical = (t - np.take(times, k)) / (np.take(times, k + 1) - np.take(times, k))
    assert np.abs(warp.fractions(t) - physical).max() < 0.05
    if len(times) >= 4:
        assert warp.strength == 0.0 and warp.is_identity and "no clear gain" in record["reason"]
        assert len(record["scores"]) == 5 and record["scores"][0] == 1.0
    else:
        assert warp.strength == 1.0 and "too few" in record["reason"]


def test_strength_selection_recovers_a_clearly_non_constant_speed():
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    adata = noisy_course(times, saturating)
    strength, reason, scores = select_strength(adata.obsm["X_pca"], adata.obs["time"].to_numpy(), times)
    assert strength == 1.0 and "clear gain" in reason and scores[-1] < 0.6 and np.all(np.diff(scores) < 0)
    tl.syncot(adata, "time", "X_pca", **FIT)
    warp = TimeWarp.from_uns(adata.uns["syncot"]["time_warp"])
    assert warp.strength == 1.0 and warp.reason == reason
    # every midpoint is ahead of the clock as in the truth (0.62 each); the late intervals' lengths (moves of
    # 0.1-0.3 against a spread of 0.4) carry sampling noise, so each fraction is checked only for its side
    mids = np.array([0.5, 1.5, 2.5, 3.5])
    truth = true_fraction(saturating, mids, mids - 0.5, mids + 0.5)
    assert np.all(warp.fractions(mids) > 0.53) and abs(warp.fractions(mids).mean() - truth.mean()) < 0.05


def test_an_unchecked_warp_says_so_in_the_log(caplog):
    # with three time points the strength cannot be checked by leaving one out: the full warp is used, and the info
    # line says so and how to turn it off (the record holds the same reason)
    import logging

    from sc_syncot.tl.time_warp import resolve_time_warp

    with caplog.at_level(logging.INFO, logger="sc_syncot"):
        warp = resolve_time_warp("auto", [0.0, 1.0, 3.0], [1.0, 3.0])
    said = [r.getMessage() for r in caplog.records]
    assert any("too few for the leave-one-out check" in m and "time_warp=None" in m for m in said), said
    assert "too few for the leave-one-out check" in warp.reason
