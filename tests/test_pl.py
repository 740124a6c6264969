import anndata as ad
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402
from PIL import Image  # noqa: E402

from sc_syncot import pl, tl  # noqa: E402

N = 60  # cells per time point
TIMES = [0.0, 2.0, 3.0]
A = np.array([[1.0, 0.0], [0.5, 2.0], [0.0, -1.0]])  # the secondary is a linear image of the primary


def blob(n=N, dims=2, seed=0):
    """A blob moving along the first axis over three time points, with a secondary view and two groups."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (n, dims))
    shift = np.zeros(dims)
    shift[0] = 1.0
    adata = ad.AnnData(np.zeros((3 * n, 1), np.float32))
    adata.obs["time"] = np.repeat(TIMES, n)
    adata.obsm["X_pca"] = np.concatenate([base + k * shift for k in range(3)])
    adata.obs["side"] = pd.Categorical(np.where(np.tile(base[:, -1], 3) > 0, "up", "down"))
    if dims == 2:
        adata.obsm["X_sec"] = adata.obsm["X_pca"] @ A.T
    return adata


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny grids: thread start-up costs more than it saves on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def monge():
    adata = blob()
    tl.syncot(adata, "time", "X_pca", "X_sec", coupling="monge", n_bins=16, n_time=4)
    tl.trajectories(adata, n_particles=20)
    tl.push(adata, "side", "up", time=2.0)  # NaN before that time
    tl.pull(adata, "side", "down")
    return adata


@pytest.fixture(scope="module")
def kantorovich(monge):
    # A Kantorovich result as tl.syncot stores it: the plot reads only the support points and the induced
    # secondary mass per interval and time node, so they are built here from the Monge solve's secondary cells.
    adata = monge.copy()
    res = dict(adata.uns["syncot"])
    support = adata.obsm["X_sec"][:: len(adata) // 15][:15]
    n_int, n_nodes = res["density"].shape[:2]
    mass = np.linspace(1.0, 2.0, n_int * n_nodes * 15).reshape(n_int, n_nodes, 15)
    res["coupling"] = {"scale": 1.0, "support": support, "secondary_density": mass}
    res["params"] = dict(res["params"]) | {"coupling": "kantorovich", "weight": 2.0}
    res["costs"] = {k: 0.5 * np.asarray(v) for k, v in res["costs"].items()}
    del adata.obsm["syncot_velocity_secondary"]
    adata.uns["kant"] = res
    return adata


def image_axes(fig):
    return [a for a in fig.axes if any(isinstance(c, AxesImage) for c in a.get_children())]


def n_points(ax):
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


def test_density_path_panels_share_one_scale(monge):
    fig = pl.density_path(monge, n_panels=4, return_fig=True)
    assert isinstance(fig, Figure)
    panels = image_axes(fig)
    assert len(panels) == 4
    assert len({a.images[0].get_clim() for a in panels}) == 1
    # the shared scale tops at the 99th percentile of the positive densities drawn (one dense time point no longer
    # darkens the rest), or at vmax
    drawn = np.concatenate([a.images[0].get_array().compressed() for a in panels])
    positive = drawn[drawn > 1e-3 * drawn.max()]
    assert panels[0].images[0].get_clim() == pytest.approx((0.0, np.percentile(positive, 99)), rel=1e-6)
    full = image_axes(pl.density_path(monge, n_panels=4, vmax="p100", return_fig=True))
    assert full[0].images[0].get_clim() == pytest.approx((0.0, drawn.max()), rel=1e-6)
    with pytest.raises(ValueError, match="vmax: expected a positive number or 'pNN'"):
        pl.density_path(monge, vmax="max", show=False)
    assert panels[0].get_title().startswith("t = 0,") and panels[-1].get_title().startswith("t = 3,")
    assert panels[0].get_xlabel() == "X_pca 1" and panels[0].get_ylabel() == "X_pca 2"
    assert [n_points(a) for a in panels] == [N] * 4  # the cells of the nearest time point
    # every observed time point (0, 2, 3) has a panel, the fourth halves the longest interval; a panel between
    # time points names the time of the cells it overlays
    titles = [a.get_title() for a in panels]
    assert [t.split(",")[0] for t in titles] == ["t = 0", "t = 1", "t = 2", "t = 3"]
    assert ["(cells: t =" in t for t in titles] == [False, True, False, False]


def test_panel_times_keep_the_observed_time_points():
    from types import SimpleNamespace

    from sc_syncot.pl._result import panel_times

    flow = SimpleNamespace(time_points=np.array([0.0, 1.0, 3.0, 7.0]))  # all that panel_times reads
    assert panel_times(flow, 2).tolist() == [0.0, 7.0]
    assert panel_times(flow, 4).tolist() == [0.0, 1.0, 3.0, 7.0]
    assert panel_times(flow, 6).tolist() == [0.0, 1.0, 2.0, 3.0, 5.0, 7.0]
    assert panel_times(flow, 3, times=[0.5]).tolist() == [0.5]


@pytest.mark.parametrize("dims", [1, 3])
def test_density_path_in_1d_and_3d(dims):
    adata = blob(n=40, dims=dims)
    tl.syncot(adata, "time", "X_pca", n_dims=dims, n_bins=12 if dims == 1 else 6, n_time=2, max_iter=50)
    fig = pl.density_path(adata, times=[0.0, 1.0, 3.0], return_fig=True)
    assert len(fig.axes) == 3 + (dims == 3)  # a colorbar for images
    assert len(image_axes(fig)) == (3 if dims == 3 else 0)
    if dims == 1:
        assert all(len(a.lines) == 2 for a in fig.axes)  # density curve and the cells' rug


def test_axes_given_and_returned(monge):
    fig, axs = plt.subplots(1, 2)
    out = pl.density_path(monge, n_panels=2, ax=axs, show=False)
    assert out == list(axs) and len(image_axes(fig)) == 2
    with pytest.raises(ValueError, match="ax: this plot draws 3 panel"):
        pl.density_path(monge, n_panels=3, ax=axs)
    single = pl.growth(monge, ax=axs[0])  # Agg: not shown, so the axes come back
    assert single is axs[0]


@pytest.fixture
def figdir(tmp_path):
    """``settings.figdir`` in a temporary folder, restored (with scanpy's) after the test."""
    import scanpy as sc

    from sc_syncot import settings

    before, scanpy_before = settings._figdir, sc.settings.figdir
    settings.figdir = tmp_path / "figs"
    yield settings.figdir
    settings.figdir, sc.settings.figdir = before, scanpy_before


def test_save_writes_to_figdir_as_scanpy(monge, figdir, tmp_path):
    import scanpy as sc

    from sc_syncot import settings

    keys = (set(monge.obs), set(monge.obsm), set(monge.uns), set(monge.uns["syncot"]))
    velocity = monge.obsm["syncot_velocity"].copy()
    axes = pl.density_path(monge, n_panels=2, save=True)  # Agg: not shown, so the axes come back
    assert (figdir / "density_path.pdf").read_bytes().startswith(b"%PDF")  # scanpy's default format
    assert len(axes) == 2 and not plt.fignum_exists(axes[0].figure.number)  # closed once saved
    pl.growth(monge, per_cell=True, save="_cells.png")  # a suffix, and the format from its extension
    assert (figdir / "growth_cells.png").read_bytes().startswith(b"\x89PNG")
    fig = pl.velocity(monge, return_fig=True, save=".svg")
    assert (figdir / "velocity.svg").stat().st_size > 0 and plt.fignum_exists(fig.number)  # returned: kept open
    # the plots write files, not the AnnData
    assert (set(monge.obs), set(monge.obsm), set(monge.uns), set(monge.uns["syncot"])) == keys
    np.testing.assert_array_equal(monge.obsm["syncot_velocity"], velocity)
    # unset, the folder is scanpy's
    settings.figdir = None
    sc.settings.figdir = tmp_path / "scanpy_figures"
    assert settings.figdir == tmp_path / "scanpy_figures"
    pl.trajectories(monge, save="_b.png")
    assert (tmp_path / "scanpy_figures" / "trajectories_b.png").exists()
    with pytest.raises(ValueError, match="save: expected True or a file name suffix"):
        pl.fates(monge, ["syncot_pull_down"], save=1)
    with pytest.raises(ValueError, match="figdir: expected a folder"):
        settings.figdir = 3


def test_velocity_streamlines_over_cells(monge):
    before = (set(monge.obs), set(monge.obsm), set(monge.uns))
    fig = pl.velocity(monge, color="side", time=2.0, return_fig=True)
    ax = fig.axes[0]
    assert any(isinstance(c, LineCollection) for c in ax.collections)  # the streamlines
    assert ax.patches  # their arrows
    assert n_points(ax) == monge.n_obs
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["down", "up"]
    assert ax.get_title() == "velocity at t = 2"
    fig = pl.velocity(monge, color="syncot_growth", return_fig=True)
    assert len(fig.axes) == 2  # numeric colour: a colorbar
    ax = pl.velocity(monge, show=False)  # by time; the cells' own velocities
    assert ax.collections[0].get_array().tolist() == monge.obs["time"].tolist()
    assert ax.get_title() == "velocity of the cells"
    assert any(isinstance(c, LineCollection) for c in ax.collections)
    assert (set(monge.obs), set(monge.obsm), set(monge.uns)) == before  # plots write nothing


def test_growth_map_and_per_cell(monge):
    fig = pl.growth(monge, time=1.0, return_fig=True)
    (ax, bar) = fig.axes
    vmin, vmax = ax.images[0].get_clim()
    assert vmin == -vmax  # centred at 0
    assert "per unit of time" in bar.get_ylabel()  # the rate's unit: the time key's
    fig = pl.growth(monge, per_cell=True, return_fig=True)
    assert n_points(fig.axes[0]) == monge.n_obs
    fig = pl.growth(monge, per_cell=True, time=2.0, return_fig=True)
    assert n_points(fig.axes[0]) == N
    sc = fig.axes[0].collections[0]
    rates = monge.obs["syncot_growth"][monge.obs["time"] == 2.0].to_numpy()
    assert np.allclose(sc.get_array(), rates)
    # the scale ends at the 99th percentile of |rate| (a few extreme cells washed out the rest), or where asked
    assert sc.norm.vmax == pytest.approx(np.percentile(np.abs(rates), 99)) and sc.norm.vmin == -sc.norm.vmax
    sc = pl.growth(monge, per_cell=True, time=2.0, vmax="p100", return_fig=True).axes[0].collections[0]
    assert sc.norm.vmax == pytest.approx(np.abs(rates).max())
    assert pl.growth(monge, per_cell=True, vmax=0.01, return_fig=True).axes[0].collections[0].norm.vmax == 0.01
    for bad in (0, -1.0, "p0", "p101", "99", True, np.nan):
        with pytest.raises(ValueError, match="vmax: expected a positive number or 'pNN'"):
            pl.growth(monge, per_cell=True, vmax=bad, show=False)


def test_trajectories_by_colour_or_width(monge):
    steps = monge.uns["syncot_trajectories"]["paths"].shape[1] - 1
    fig = pl.trajectories(monge, return_fig=True)
    (lines,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == 20 * steps and lines.get_array() is not None
    fig = pl.trajectories(monge, color_by_weight=False, cells=False, return_fig=True)
    (lines,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    assert len(lines.get_segments()) == 20 and len(lines.get_linewidths()) == 20
    assert n_points(fig.axes[0]) == 20  # the starting dots
    with pytest.raises(ValueError, match="'syncot_trajectories'"):
        pl.trajectories(blob_with_result())


def test_fates_one_panel_per_key(monge):
    keys = ["syncot_push_up", "syncot_pull_down"]
    fig = pl.fates(monge, keys, return_fig=True)
    titles = ["share of descent from up (push)", "share of descendants in down (pull)"]
    panels = [a for a in fig.axes if a.get_title() in titles]
    assert len(panels) == 2
    assert [n_points(a) for a in panels] == [monge.n_obs] * 2
    nan = monge.obs[keys[0]].isna().to_numpy()
    assert nan.sum() == N  # before the push
    assert len(panels[0].collections[0].get_offsets()) == N  # NaN cells come first, in grey
    assert np.allclose(panels[0].collections[1].get_array(), monge.obs[keys[0]][~nan])
    with pytest.raises(ValueError, match="'syncot_push_nope'"):
        pl.fates(monge, "syncot_push_nope")
    # one time point only: its cells, with the time in the title
    fig = pl.fates(monge, keys, times=2.0, return_fig=True)
    panels = [a for a in fig.axes if a.get_title().endswith("(t = 2)")]
    assert [n_points(a) for a in panels] == [N, N]
    with pytest.raises(ValueError, match=r"times: \[1.5\] are not observed"):
        pl.fates(monge, keys, times=[0.0, 1.5])


def test_secondary_path_monge(monge):
    fig = pl.secondary_path(monge, return_fig=True)
    ax = fig.axes[0]
    assert n_points(ax) == monge.n_obs
    assert any(isinstance(c, Quiver) for c in ax.collections)
    assert ax.get_xlabel() == "X_sec 1" and ax.get_ylabel() == "X_sec 2"


def test_secondary_path_axes_fit_the_bulk_of_the_cells(monge):
    far = monge.copy()
    far.obsm["X_sec"] = far.obsm["X_sec"].copy()
    far.obsm["X_sec"][0] = [1e3, -1e3, 0.0]  # one outlying cell
    bulk = np.percentile(np.delete(far.obsm["X_sec"], 0, axis=0)[:, :2], [0, 100], axis=0)
    ax = pl.secondary_path(far, return_fig=True).axes[0]
    assert ax.get_xlim()[1] < 2 * abs(bulk[1, 0]) + 1 and ax.get_ylim()[0] > -2 * abs(bulk[0, 1]) - 1
    ax = pl.secondary_path(far, robust=False, return_fig=True).axes[0]
    assert ax.get_xlim()[1] >= 1e3 and ax.get_ylim()[0] <= -1e3


def test_secondary_path_kantorovich(kantorovich):
    fig = pl.secondary_path(kantorovich, key="kant", n_panels=3, cells=False, return_fig=True)
    panels = [a for a in fig.axes if a.get_title().startswith("t = ")]
    assert len(panels) == 3
    assert all(n_points(a) == 15 for a in panels)  # the support points


def test_secondary_path_needs_a_secondary():
    with pytest.raises(ValueError, match="no secondary path"):
        pl.secondary_path(blob_with_result())


def test_tradeoff_from_table_and_results(monge, kantorovich):
    table = pd.DataFrame({"weight": [0.0, 1.0, 10.0], "primary": [1.0, 1.2, 2.0], "secondary": [3.0, 2.0, 1.5]})
    fig = pl.tradeoff(table, return_fig=True)
    ax = fig.axes[0]
    assert len(ax.lines[0].get_xdata()) == 3
    assert [t.get_text() for t in ax.texts] == ["λ = 0", "λ = 1", "λ = 10"]
    fig = pl.tradeoff([monge.uns["syncot"], kantorovich.uns["kant"]], return_fig=True)
    assert len(fig.axes[0].lines[0].get_xdata()) == 2
    with pytest.raises(ValueError, match="secondary"):
        pl.tradeoff(table.drop(columns="secondary"))
    one = pl.cost_table(monge)  # one AnnData is one result, not one row per cell
    assert len(one) == 1 and one.equals(pl.cost_table([monge.uns["syncot"]]))
    # a Monge fit at weight 0 measures its secondary action: the trade-off keeps its point, and a weight buys a
    # cheaper secondary path
    zero = tl.syncot(monge, "time", "X_pca", "X_sec", coupling="monge", n_bins=16, n_time=4, weight=0.0, copy=True)
    table = pl.cost_table([zero, monge])
    assert np.isfinite(table["secondary"]).all()
    assert table["secondary"][0] > table["secondary"][1] and table["primary"][0] < table["primary"][1]
    assert len(pl.tradeoff([zero, monge], return_fig=True).axes[0].lines[0].get_xdata()) == 2


def test_tradeoff_has_the_weight_zero_point_of_a_kantorovich_fit(monge):
    # a Kantorovich secondary at weight 0 stays out of the iteration but its action along the path is read, so the
    # trade-off starts at weight 0 for this coupling too; the primary fit is the one without a secondary
    kw = {"coupling": "kantorovich", "n_bins": 16, "n_time": 4, "n_support": 12, "copy": True}
    fits = [tl.syncot(monge, "time", "X_pca", "X_sec", weight=w, **kw) for w in (0.0, 4.0)]
    alone = tl.syncot(monge, "time", "X_pca", n_bins=16, n_time=4, copy=True)
    table = pl.cost_table(fits)
    assert np.isfinite(table["secondary"]).all()
    assert table["secondary"][0] > table["secondary"][1] and table["primary"][0] < table["primary"][1]
    costs = fits[0].uns["syncot"]["costs"]
    assert float(np.sum(costs["total"])) == pytest.approx(float(np.sum(alone.uns["syncot"]["costs"]["total"])))
    assert len(pl.tradeoff(fits, return_fig=True).axes[0].lines[0].get_xdata()) == 2


def test_animate_writes_a_gif(monge, tmp_path):
    out = pl.animate(monge, tmp_path / "path.gif", n_frames=3, dpi=40)
    assert out.exists()
    with Image.open(out) as gif:
        assert gif.n_frames == 3
    with pytest.raises(ValueError, match="gif"):
        pl.animate(monge, tmp_path / "path.mp4")


def blob_with_result():
    adata = blob(n=30)
    tl.syncot(adata, "time", "X_pca", n_bins=8, n_time=2, max_iter=30)
    return adata


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda a: pl.density_path(a, key="other"), "key='other'"),
        (lambda a: pl.velocity(a, color="nope"), "color='nope'"),
        (lambda a: pl.growth(a, time=9.0), "time"),
        (lambda a: pl.animate(a, "x.gif", key="other"), "key='other'"),
    ],
)
def test_bad_input_names_the_key(monge, call, match):
    with pytest.raises(ValueError, match=match):
        call(monge)


def test_plots_read_a_file_back(monge, tmp_path):
    monge.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    assert len(image_axes(pl.density_path(back, n_panels=2, return_fig=True))) == 2
    assert any(isinstance(c, Quiver) for c in pl.secondary_path(back, return_fig=True).axes[0].collections)
    assert pl.trajectories(back, return_fig=True).axes[0].collections
