"""Kantorovich-type secondary spaces: a Markov kernel from grid cells to secondary points (math.md section 2).

The induced curve is ``rho_Y(t) = K^T rho(t)`` and its action is discretized on the time nodes ``t_k = k dt``:

    A_Y(rho) = sum_{k=0}^{Nt-1} HK_{delta_Y}^2(K^T rho_k, K^T rho_{k+1}) / dt,

with entropic smoothing. This module defines the secondary and evaluates ``A_Y`` and its gradient in the densities
with the reference ``a (x) b`` of :mod:`.hellinger_kantorovich` (a check of the building blocks on small problems);
:func:`~sc_syncot.solvers.solve` uses the fixed reference of :mod:`.scaling`, which keeps the smoothed action
jointly convex in the marginals, through :mod:`.kantorovich_solver`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from .hellinger_kantorovich import COST_CAP, entropic_hk2, hk_cost


def _check_kernel(kernel) -> sp.csr_matrix | np.ndarray:
    if sp.issparse(kernel):
        kernel = sp.csr_matrix(kernel, dtype=float)
        values = kernel.data
    else:
        kernel = np.array(kernel, dtype=float)
        values = kernel
        if kernel.ndim != 2:
            raise ValueError(f"kernel: expected a 2-D (n_grid_cells, n_support) array, got shape {kernel.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("kernel: expected finite entries")
    if np.any(values < 0):
        raise ValueError(f"kernel: expected nonnegative entries, min is {values.min():.3g}")
    rows = np.asarray(kernel.sum(axis=1)).ravel()
    if not np.allclose(rows, 1.0, rtol=0, atol=1e-8):
        worst = int(np.argmax(np.abs(rows - 1)))
        raise ValueError(f"kernel: expected rows summing to 1 (row-stochastic); row {worst} sums to {rows[worst]:.6g}")
    return kernel


def default_epsilon(support: np.ndarray, delta: float | None, n_time: int = 1) -> float:
    """Entropic smoothing relative to the cost scale and the time step.

    ``max(0.01 c_med / Nt^2, c_nn / 4)``: ``c_med`` is the median cost between support points within reach (for
    HK the cost is ``-log cos^2(|x - y| / 2 delta)``, dimensionless, and pairs farther than ``pi delta`` are left
    out; for the balanced W2 secondary it is ``|x - y|^2``), ``c_nn`` the median cost from a support point to its
    nearest neighbour.

    Why: each of the ``Nt`` static terms carries a bias of about ``eps`` per unit mass and is divided by
    ``dt``, so the bias of the action grows like ``Nt^2 eps`` while the action does not; ``1 / Nt^2`` keeps it a
    fixed fraction. Below the nearest-neighbour cost the smoothing no longer helps: the steps between time
    nodes move mass by less than the support's spacing, and a smaller ``eps`` only slows Sinkhorn. On the
    identity-kernel oracle (60 points on a line, math.md oracle 5) this gives gaps to the exact value of about
    1%, 3% and 6% at ``Nt`` = 4, 8, 16, against 6%, 29% and 145% for ``0.01 c_med`` alone.
    """
    return _epsilon(*cost_scales(support, delta), n_time, floor_factor=1.0)


def _epsilon(c_med: float, c_nn: float, n_time: int, floor_factor: float) -> float:
    """``max(0.01 c_med / Nt^2, floor_factor c_nn / 4)``, the rule of both defaults."""
    return max(0.01 * c_med / n_time**2, 0.25 * c_nn * floor_factor)


def time_consistent_epsilon(
    support: np.ndarray,
    delta: float | None,
    n_time: int,
    reference_steps: int = 4,
    scales: tuple[float, float] | None = None,
) -> float:
    """:func:`default_epsilon` with its floor lowered as ``1 / Nt^2`` beyond ``reference_steps`` time steps.

    ``max(0.01 c_med / Nt^2, (c_nn / 4) min(1, (reference_steps / Nt)^2))``. The floor of :func:`default_epsilon`
    does not follow the time step, so once it takes over the smoothing's bias, ``Nt^2 eps`` per unit mass, grows
    with ``Nt``; being proportional to the induced mass, it lets a fit trade mass (birth and death) for it. Here
    the bias stops growing at ``reference_steps``: refining the time grid no longer changes what is penalized, at
    the price of a smaller ``eps`` (more Sinkhorn work and iterations).

    Measured on the simulated four-time-point course of ``sc_syncot.datasets.simulate_multiome`` (32^2 grid, 200
    support points): with :func:`default_epsilon`, ``Nt`` = 4 / 8 / 16 gave growth costs 100 / 528 / 3934; with
    this rule 100 / 137 / 153, with the cells' growth rates ranked alike against the simulation's truth (Spearman
    0.89 / 0.88 / 0.88), but ``Nt`` = 8 and 16 stopped at 5000 iterations (22 s and 42 s, 2 CPU cores).

    ``scales``: :func:`cost_scales` of ``support`` and ``delta`` when the caller has them already.
    """
    c_med, c_nn = cost_scales(support, delta) if scales is None else scales
    return _epsilon(c_med, c_nn, n_time, floor_factor=min(1.0, (reference_steps / n_time) ** 2))


def cost_scales(support: np.ndarray, delta: float | None) -> tuple[float, float]:
    """``(c_med, c_nn)`` of :func:`default_epsilon`.

    The median cost between support points within reach, and the median cost to the nearest neighbour.
    """
    x = torch.as_tensor(support, dtype=torch.float64)
    cost = torch.cdist(x, x).square() if delta is None else hk_cost(x, x, delta)
    cost.fill_diagonal_(math.inf)
    nearest = cost.min(1).values
    off = cost[(cost > 0) & (cost < COST_CAP)]
    if off.numel() == 0:
        raise ValueError("support: expected at least two distinct points within pi * delta of each other")
    return float(off.median()), float(nearest[torch.isfinite(nearest) & (nearest > 0)].median())


@dataclass(frozen=True)
class KantorovichSecondary:
    """A secondary space reached from the primary grid through a Markov kernel (Kantorovich type).

    Parameters
    ----------
    kernel
        Row-stochastic ``(n_grid_cells, n_support)`` array or scipy.sparse matrix: row ``i`` (grid cells flattened
        in C order of ``grid.shape``, the order of ``grid.points().reshape(-1, d)``) gives the weights of primary
        cell ``i`` over the secondary support points.
    support
        ``(n_support, dY)`` secondary points, any ``dY``.
    weight
        ``lambda >= 0``.
    delta
        ``None``: balanced W2 secondary (SyncOT) on a balanced problem, and the problem's ``delta`` on an unbalanced
        one (see :class:`~sc_syncot.solvers.SyncOTProblem`); a float: Hellinger-Kantorovich secondary with that
        length scale.
    epsilon
        Entropic smoothing of the static problems, in cost units; default :func:`default_epsilon`, which depends
        on the time step: a problem resolves it with its grid's ``n_time`` (``problem.secondaries[k]``;
        ``effective_epsilon`` of a secondary not yet in a problem assumes ``n_time = 1``). The smoothed action's
        bias adds up over the time steps, about ``Nt^2 eps`` times the mass (and ``4 delta^2`` for HK).
    """

    kernel: np.ndarray | sp.spmatrix
    support: np.ndarray
    weight: float = 1.0
    delta: float | None = None
    epsilon: float | None = None
    name: str | None = None
    _epsilon: float = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        kernel = _check_kernel(self.kernel)
        support = np.array(self.support, dtype=float)
        if support.ndim == 1:
            support = support[:, None]
        if support.ndim != 2 or not np.all(np.isfinite(support)):
            raise ValueError("support: expected a finite (n_support, dY) array")
        if kernel.shape[1] != support.shape[0]:
            raise ValueError(
                f"kernel, support: the kernel has {kernel.shape[1]} columns but there are {support.shape[0]} "
                "support points"
            )
        weight = float(self.weight)
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight: expected a finite float >= 0, got {self.weight}")
        delta = self.delta
        if delta is not None and not (np.isfinite(delta) and delta > 0):
            raise ValueError(f"delta: expected a positive finite float or None, got {delta}")
        eps = self.epsilon
        if eps is not None and not (np.isfinite(eps) and eps > 0):
            raise ValueError(f"epsilon: expected a positive finite float, got {eps}")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "support", support)
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "_epsilon", default_epsilon(support, delta) if eps is None else float(eps))

    @property
    def effective_epsilon(self) -> float:
        """The smoothing actually used (the given one, or the default)."""
        return self._epsilon

    def kernel_tensor(self, *, dtype, device) -> torch.Tensor:
        """The kernel as a torch tensor (sparse COO, torch's stable sparse layout, when given sparse)."""
        if sp.issparse(self.kernel):
            k = self.kernel.tocoo()
            indices = torch.as_tensor(np.vstack([k.row, k.col]), dtype=torch.long)
            return torch.sparse_coo_tensor(
                indices, k.data, size=k.shape, dtype=dtype, device=device, check_invariants=True
            ).coalesce()
        return torch.as_tensor(self.kernel, dtype=dtype, device=device)


@dataclass
class SecondaryAction:
    """``A_Y`` of a path and its gradient in the node densities."""

    value: torch.Tensor  # (B,)
    grad: torch.Tensor  # (B, Nt + 1, n_grid_cells): d A_Y / d rho_k (per unit density)
    converged: bool
    n_iter: int
    warm: tuple[torch.Tensor, torch.Tensor]


def _kernel_product(rows: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``rows @ matrix.T`` for a dense or sparse COO ``matrix`` (torch.sparse.mm wants the sparse factor first)."""
    return torch.sparse.mm(matrix, rows.T).T if matrix.is_sparse else rows @ matrix.T


def hk_path_action(
    rho: torch.Tensor,
    kernel: torch.Tensor,
    cost: torch.Tensor,
    delta: float,
    epsilon: float,
    cell_volume: float,
    *,
    warm: tuple[torch.Tensor, torch.Tensor] | None = None,
    tol: float = 1e-9,
    max_iter: int = 5000,
) -> SecondaryAction:
    r"""HK secondary action of density paths and its gradient.

    .. math::
        A_Y(\rho) = \sum_{k=0}^{N_t - 1} \frac{HK^2_{\delta,\varepsilon}(K^\top \rho_k |\Omega_i|,\
        K^\top \rho_{k+1} |\Omega_i|)}{\Delta t}

    Parameters
    ----------
    rho
        ``(B, Nt + 1, n_grid_cells)`` densities on the time nodes (flattened grid).
    kernel
        ``(n_grid_cells, n_support)`` row-stochastic kernel (dense or sparse COO).
    cost
        ``(n_support, n_support)`` HK cost of the support.
    delta, epsilon
        HK length scale and entropic smoothing.
    cell_volume
        Converts densities to masses.
    warm
        Potentials of a previous call, for warm starts.
    """
    batch, nodes, n_cells = rho.shape
    dt = 1.0 / (nodes - 1)
    masses = _kernel_product(rho.reshape(-1, n_cells) * cell_volume, kernel.t()).reshape(batch, nodes, -1)
    a = masses[:, :-1].reshape(batch * (nodes - 1), -1)
    b = masses[:, 1:].reshape(batch * (nodes - 1), -1)
    res = entropic_hk2(a, b, cost, delta, epsilon, warm=warm, tol=tol, max_iter=max_iter)
    value = res.value.reshape(batch, nodes - 1).sum(1) / dt
    grad_mass = torch.zeros_like(masses)
    grad_mass[:, :-1] += res.grad_a.reshape(batch, nodes - 1, -1)
    grad_mass[:, 1:] += res.grad_b.reshape(batch, nodes - 1, -1)
    flat = grad_mass.reshape(-1, grad_mass.shape[-1])
    grad = _kernel_product(flat, kernel) * (cell_volume / dt)
    return SecondaryAction(value, grad.reshape(batch, nodes, n_cells), res.converged, res.n_iter, (res.f, res.g))
