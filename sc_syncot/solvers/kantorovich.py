"""Kantorovich-type secondary spaces: a Markov kernel from grid cells to secondary points (Mathematics page, section 2).

The induced curve is ``rho_Y(t) = K^T rho(t)`` and its action is discretized on the time nodes ``t_k = k dt``:

    A_Y(rho) = sum_{k=0}^{Nt-1} HK_{delta_Y}^2(K^T rho_k, K^T rho_{k+1}) / dt,

with entropic smoothing, debiased by default (see :mod:`.kantorovich_solver`). This module defines the secondary and
evaluates the plain entropic ``A_Y`` and its gradient in the densities
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
from .scaling import to_csr

DISCRETIZATIONS = ("pairs", "graph")


def _check_kernel(kernel) -> sp.csr_matrix | np.ndarray:
    if sp.issparse(kernel):
        kernel = sp.csr_matrix(kernel, dtype=float, copy=True)  # not the caller's buffers: checked once, kept
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


# Largest default epsilon, in units of the median support cost (see default_epsilon): sci-CAR's 30 LSI components
# cycled at 0.75 and 0.5 and converged at 0.35 (1,640 iterations) and 0.25 (1,320); 0.3 keeps a margin below where
# the cycling began. The paired courses of benchmarks/heldout.py have 0.21-0.32 by the nearest-neighbour rule.
EPSILON_CAP = 0.3


def default_epsilon(support: np.ndarray, delta: float | None, scales: tuple[float, float] | None = None) -> float:
    """Entropic smoothing of the debiased secondary: ``min(2 c_nn, EPSILON_CAP c_med)``.

    Twice the support's nearest-neighbour cost, at most :data:`EPSILON_CAP` times the median cost between
    support points.

    ``c_nn`` is the median cost from a support point to its nearest neighbour (for HK the cost is
    ``-log cos^2(|x - y| / 2 delta)``, dimensionless; for the balanced W2 secondary ``|x - y|^2``).

    Why: the debiased divergence (:mod:`.kantorovich_solver`) has no additive bias, so epsilon need not follow the
    time step; what it must do is blur each point's mass over its neighbours, so that the small moves between
    time nodes (less than the spacing) cost what they would on a continuum, quadratically, rather than the
    first-order price of moving mass to a discrete neighbour. Larger values smooth the divergence itself (it
    tends to a kernel distance), which under-estimates: on the exact path of the Mathematics page's oracle 5 (32^2 grid,
    support = grid points, ``2 c_nn = 2e-3``) the debiased action is 0.3-0.5% below the exact value, 1% at
    ``4 c_nn``, 2.5% at ``10 c_nn``, alike at ``Nt`` 4, 16 and 32. The ratio ``epsilon / c_med``
    (:func:`cost_scales`) says how far this goes.

    The cap binds where nearest neighbours are nearly as far as the median pair, as for a few hundred support
    points in many near-isotropic dimensions (distances concentrate): sci-CAR's 30 LSI components with 200 support
    points gave ``2 c_nn = 0.75 c_med``, and the fit cycled (its residual stalled at 0.02-0.07 for 5,000
    iterations, and 15,000 ended at an objective of 1e23); so it did at 0.5 ``c_med``, while at 0.35 and 0.25 it
    converged in 1,640 and 1,320 iterations. The likely mechanism: the debiasing self-terms are the concave part
    of the divergence, linearized anew at every step (:mod:`.kantorovich_solver`), and the wider the smoothing
    against the support's spread, the more their tangent moves from one step to the next.

    ``scales``: :func:`cost_scales` of ``support`` and ``delta`` when the caller has them already.
    """
    c_med, c_nn = cost_scales(support, delta) if scales is None else scales
    return min(2.0 * c_nn, EPSILON_CAP * c_med)


def cost_scales(support: np.ndarray, delta: float | None) -> tuple[float, float]:
    """``(c_med, c_nn)`` of the support's cost.

    The median cost between support points within reach (for HK, closer than ``pi delta``), and the median cost
    from a support point to its nearest neighbour.
    """
    x = torch.as_tensor(support, dtype=torch.float64)
    cost = torch.cdist(x, x).square() if delta is None else hk_cost(x, x, delta)
    cost.fill_diagonal_(math.inf)
    nearest = cost.min(1).values
    reach = cost < COST_CAP if delta is not None else torch.isfinite(cost)  # HK pairs beyond pi delta never meet
    off = cost[(cost > 0) & reach]
    if off.numel() == 0:
        within = " within pi * delta of each other" if delta is not None else ""
        raise ValueError(f"support: expected at least two distinct points{within}")
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
        ``lambda >= 0``. At 0 the secondary leaves the fit unchanged and only its action along the fitted path is
        evaluated (``SyncOTResult.secondary_actions``).
    delta
        ``None``: balanced W2 secondary (SyncOT) on a balanced problem, and the problem's ``delta`` on an unbalanced
        one (see :class:`~sc_syncot.solvers.SyncOTProblem`); a float: Hellinger-Kantorovich secondary with that
        length scale.
    epsilon
        Entropic smoothing of the static problems, in cost units; default :func:`default_epsilon`.
    debias
        Use the debiased divergence ``J(a, b) - J(a, a) / 2 - J(b, b) / 2`` between consecutive induced slices
        (default), which has no additive entropic bias and tends to ``HK^2`` (``W2^2``) as epsilon falls; ``False``
        keeps the plain entropic ``J(a, b)``, whose bias, about ``epsilon`` per unit mass and step, adds up over the
        path as ``Nt^2 epsilon`` (reported is then the plan's sharp cost).
    discretization
        How the induced curve's action is discretized in time. ``"pairs"`` (default): the (debiased, entropic)
        ``HK^2`` between consecutive time nodes, above; accurate between any support points, but its iterations
        grow with ``Nt`` (each pair is a separate dual block). ``"graph"``: the curve is a dynamic problem of its
        own on the kNN graph of the support points (section 7 of the Mathematics page), tied to the primary by
        ``sigma_k = K^T rho_k`` at every time node (:mod:`.dynamic_secondary`); its iterations do not grow with
        ``Nt``, but its transport follows the graph's edges, which over-estimates costs where the support points
        are few for their dimension. ``epsilon`` and ``debias`` do not apply to it.
    n_neighbors
        ``k`` of the support's kNN graph (``discretization="graph"`` only).
    """

    kernel: np.ndarray | sp.spmatrix
    support: np.ndarray
    weight: float = 1.0
    delta: float | None = None
    epsilon: float | None = None
    name: str | None = None
    debias: bool = True
    discretization: str = "pairs"
    n_neighbors: int = 10
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
        if not isinstance(self.debias, bool | np.bool_):
            raise ValueError(f"debias: expected True or False, got {self.debias!r}")
        if self.discretization not in DISCRETIZATIONS:
            raise ValueError(f"discretization: expected one of {DISCRETIZATIONS}, got {self.discretization!r}")
        k = self.n_neighbors
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"n_neighbors: expected a positive integer, got {k!r}")
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


# Kernels with more than this share of nonzeros are kept dense: BLAS products then beat CSR's (measured on one CPU
# thread: 0.36 against 0.62 ms at 49% fill, 1024 x 172, 20 rows; CSR 2x faster at 10%, 9x at 4%)
DENSE_FILL = 0.25


def kernel_norm(kernel: torch.Tensor, kernel_t: torch.Tensor | None = None, n_iter: int = 50) -> float:
    """``||K||_2`` by power iteration on ``K^T K`` (an upper estimate: the iterate's Rayleigh quotient, +1%).

    ``kernel_t``: ``K^T`` in the same layout, where it is already at hand (a CSR transpose is not CSR).
    """
    kernel_t = kernel.t() if kernel_t is None else kernel_t
    x = torch.ones(kernel.shape[1], 1, dtype=kernel.dtype, device=kernel.device)
    val = 0.0
    for _ in range(n_iter):
        y = _mm(kernel_t, _mm(kernel, x))
        val = float(torch.linalg.vector_norm(y))
        x = y / max(val, 1e-300)
    return 1.01 * math.sqrt(val)


def _mm(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(matrix, x) if matrix.is_sparse else matrix @ x


def rows_times(x: torch.Tensor, matrix: torch.Tensor, matrix_t: torch.Tensor) -> torch.Tensor:
    """``x @ matrix`` over the last axis of ``x``.

    ``matrix_t`` is ``matrix``'s transpose in the same layout: CSR products take the sparse factor first.
    """
    if matrix.layout == torch.strided:
        return x @ matrix
    flat = x.reshape(-1, x.shape[-1])
    return _mm(matrix_t, flat.T).T.reshape(*x.shape[:-1], matrix.shape[1])


def kernel_tensors(secondary: KantorovichSecondary, opts: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(K, K^T)`` on ``opts``' device: dense, or CSR both ways where the kernel is sparse enough.

    CSR because its products are ~4x faster than COO's on a CPU (a CSR transpose is not CSR, hence both).
    """
    kernel = secondary.kernel_tensor(**opts)  # (n_cells, n)
    if kernel.is_sparse and kernel._nnz() > DENSE_FILL * kernel.numel():
        kernel = kernel.to_dense()
    if not kernel.is_sparse:
        return kernel, kernel.t()
    return to_csr(kernel), to_csr(kernel.t())


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
