import numpy as np
import pytest
import scipy.fft
import torch

from sc_syncot.solvers import Grid, Staggered, interpolate, interpolate_adjoint
from sc_syncot.solvers.dct import apply_along, dct_matrix


def test_grid_geometry():
    g = Grid([(0, 1), (-1, 1)], (4, 8), n_time=5)
    pts = g.points()
    assert pts.shape == (4, 8, 2)
    np.testing.assert_allclose(pts[0, 0], [0.125, -0.875])
    assert g.cell_volume == pytest.approx(0.25 * 0.25)
    assert g.dt == pytest.approx(0.2)
    assert g.mass(np.ones((4, 8))) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("bounds", "shape", "n_time"),
    [
        ([(0, 1)] * 4, (3, 3, 3, 3), 4),
        ([(1, 0)], (4,), 4),
        ([(0, 1)], (1,), 4),
        ([(0, 1)], (4,), 0),
        ([(0, 1)], (4, 4), 3),
        ([(0, 1)], 16.5, 4),
        ([(0, 1)], (16.5,), 4),
        ([(0, 1)], (4,), 2.5),
    ],
)
def test_grid_rejects_bad_input(bounds, shape, n_time):
    with pytest.raises(ValueError):
        Grid(bounds, shape, n_time)


def test_dct_matches_scipy_and_is_orthogonal():
    x = np.random.default_rng(0).normal(size=(3, 7, 5))
    c = dct_matrix(7, dtype=torch.float64, device="cpu")
    np.testing.assert_allclose(c @ c.T, np.eye(7), atol=1e-13)
    for axis in range(3):
        ours = apply_along(torch.as_tensor(x), dct_matrix(x.shape[axis], dtype=torch.float64, device="cpu"), axis)
        np.testing.assert_allclose(ours.numpy(), scipy.fft.dct(x, type=2, norm="ortho", axis=axis), atol=1e-12)


def _random_staggered(batch, nt, shape, with_zeta, gen):
    rho = torch.randn(batch, nt + 1, *shape, generator=gen, dtype=torch.float64)
    m = []
    for i, n in enumerate(shape):
        s = [batch, nt, *shape]
        s[2 + i] = n + 1
        m.append(torch.randn(*s, generator=gen, dtype=torch.float64))
    zeta = torch.randn(batch, nt, *shape, generator=gen, dtype=torch.float64) if with_zeta else None
    return Staggered(rho, m, zeta)


@pytest.mark.parametrize("shape", [(6,), (5, 4), (3, 4, 5)])
def test_interpolation_adjoint_and_norm(shape):
    gen = torch.Generator().manual_seed(1)
    u = _random_staggered(2, 3, shape, True, gen)
    v = torch.randn(interpolate(u).shape, generator=gen, dtype=torch.float64)
    lhs = float((interpolate(u) * v).sum())
    pairs = zip(u.tensors(), interpolate_adjoint(v, len(shape)).tensors(), strict=True)
    rhs = sum(float((a * b).sum()) for a, b in pairs)
    assert lhs == pytest.approx(rhs, rel=1e-12)
    # ||I|| <= 1: averaging never increases the Euclidean norm
    norm_u = sum(float(t.square().sum()) for t in u.tensors())
    assert float(interpolate(u).square().sum()) <= norm_u
