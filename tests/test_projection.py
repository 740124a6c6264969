import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sc_syncot.solvers import BalanceProjector, Staggered, divergence

from .test_grid_and_operators import _random_staggered


def _projector(nt, shape, spacing, rho0, rho1, zeta_scale):
    return BalanceProjector(nt, spacing, shape, torch.as_tensor(rho0), torch.as_tensor(rho1), zeta_scale)


def _endpoints(shape, balanced, gen):
    rho0 = torch.rand(1, *shape, generator=gen, dtype=torch.float64) + 0.1
    rho1 = torch.rand(1, *shape, generator=gen, dtype=torch.float64) + 0.1
    if balanced:
        rho1 *= rho0.sum() / rho1.sum()
    return rho0, rho1


@pytest.mark.parametrize("zeta_scale", [None, 0.7])
@pytest.mark.parametrize("shape", [(6,), (5, 4), (3, 4, 2)])
def test_projection_feasible_and_idempotent(shape, zeta_scale):
    gen = torch.Generator().manual_seed(2)
    nt, spacing = 4, tuple(0.3 + 0.1 * i for i in range(len(shape)))
    rho0, rho1 = _endpoints(shape, zeta_scale is None, gen)
    proj = _projector(nt, shape, spacing, rho0, rho1, zeta_scale)
    u = _random_staggered(1, nt, shape, zeta_scale is not None, gen)
    proj.project_(u)
    assert float(proj.residual(u).abs().max()) < 1e-11
    torch.testing.assert_close(u.rho[:, 0], rho0, rtol=0, atol=0)
    torch.testing.assert_close(u.rho[:, -1], rho1, rtol=0, atol=0)
    for i, mi in enumerate(u.m):
        assert float(mi.select(2 + i, 0).abs().max()) == 0 and float(mi.select(2 + i, -1).abs().max()) == 0
    again = proj.project_(u.clone())
    for a, b in zip(u.tensors(), again.tensors(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _sparse_constraint(nt, shape, spacing, zeta_scale):
    """The balance operator on the full staggered vector, built entry by entry with scipy.sparse."""
    dt = 1.0 / nt
    centres = np.arange(nt * int(np.prod(shape))).reshape(nt, *shape)
    blocks = []
    # rho on nodes: d/dt
    n_rho = (nt + 1) * int(np.prod(shape))
    rho_idx = np.arange(n_rho).reshape(nt + 1, *shape)
    rows = np.concatenate([centres.ravel(), centres.ravel()])
    cols = np.concatenate([rho_idx[1:].ravel(), rho_idx[:-1].ravel()])
    vals = np.concatenate([np.full(centres.size, 1 / dt), np.full(centres.size, -1 / dt)])
    blocks.append(sp.csr_matrix((vals, (rows, cols)), shape=(centres.size, n_rho)))
    for i, h in enumerate(spacing):
        fshape = [nt, *shape]
        fshape[1 + i] += 1
        idx = np.arange(int(np.prod(fshape))).reshape(fshape)
        plus = np.take(idx, range(1, fshape[1 + i]), axis=1 + i)
        minus = np.take(idx, range(0, fshape[1 + i] - 1), axis=1 + i)
        cols = np.concatenate([plus.ravel(), minus.ravel()])
        vals = np.concatenate([np.full(centres.size, 1 / h), np.full(centres.size, -1 / h)])
        blocks.append(sp.csr_matrix((vals, (rows, cols)), shape=(centres.size, idx.size)))
    if zeta_scale is not None:
        blocks.append(-sp.identity(centres.size, format="csr") / zeta_scale)
    return sp.hstack(blocks).tocsr()


@pytest.mark.parametrize("zeta_scale", [None, 1.3])
def test_projection_matches_sparse_direct_solve(zeta_scale):
    gen = torch.Generator().manual_seed(3)
    nt, shape, spacing = 3, (4, 3), (0.25, 0.5)
    rho0, rho1 = _endpoints(shape, zeta_scale is None, gen)
    u = _random_staggered(1, nt, shape, zeta_scale is not None, gen)
    expected_input = [t[0].numpy().ravel() for t in u.tensors()]
    proj = _projector(nt, shape, spacing, rho0, rho1, zeta_scale)
    ours = np.concatenate([t[0].numpy().ravel() for t in proj.project_(u.clone()).tensors()])

    # Reference: minimize ||w - w0||^2 over the free entries subject to A w = 0 with fixed entries substituted.
    a = _sparse_constraint(nt, shape, spacing, zeta_scale)
    w0 = np.concatenate(expected_input)
    fixed = np.zeros(w0.size, dtype=bool)
    values = np.zeros(w0.size)
    n_space = int(np.prod(shape))
    fixed[:n_space], values[:n_space] = True, rho0.numpy().ravel()
    fixed[nt * n_space : (nt + 1) * n_space], values[nt * n_space : (nt + 1) * n_space] = True, rho1.numpy().ravel()
    offset = (nt + 1) * n_space
    for i in range(len(shape)):
        fshape = [nt, *shape]
        fshape[1 + i] += 1
        mask = np.zeros(fshape, dtype=bool)
        mask[(slice(None),) * (1 + i) + (0,)] = True
        mask[(slice(None),) * (1 + i) + (-1,)] = True
        fixed[offset : offset + mask.size] = mask.ravel()
        offset += mask.size
    af, aw = a[:, ~fixed], a[:, fixed]
    rhs = -aw @ values[fixed] - af @ w0[~fixed]
    normal = (af @ af.T).toarray()
    lam = np.linalg.lstsq(normal, rhs, rcond=None)[0]  # singular (constant mode) in the balanced case
    ref = values.copy()
    ref[~fixed] = w0[~fixed] + af.T @ lam
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    assert np.abs(a @ ref).max() < 1e-9


def test_divergence_of_projected_field_matches_source():
    gen = torch.Generator().manual_seed(4)
    nt, shape, spacing = 5, (6, 5), (0.2, 0.2)
    rho0, rho1 = _endpoints(shape, False, gen)
    proj = _projector(nt, shape, spacing, rho0, rho1, 2.0)
    u = proj.project_(_random_staggered(1, nt, shape, True, gen))
    no_source = Staggered(u.rho, u.m, None)
    torch.testing.assert_close(divergence(no_source, 1 / nt, spacing), u.zeta / 2.0, rtol=0, atol=1e-10)
