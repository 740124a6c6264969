"""Unbalanced Gaussian measures ``m N(mean, cov)``, their Kullback-Leibler divergence, and input checks.

Every public function of :mod:`sc_syncot.gaussian` validates its arguments here, so that bad input fails early with a
``ValueError`` naming the argument and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import logdet, pd_inv, symmetrize

# Relative asymmetry tolerated in a covariance: rounding in products such as ``X @ X.T`` stays far below it.
SYMMETRY_RTOL = 1e-8


def numeric(value, name: str) -> np.ndarray:
    """``value`` as a new float array; text, booleans and other non-numbers are refused, not converted.

    ``np.asarray(["1"], dtype=float)`` would read text as numbers, and ``True`` is 1: both hide a wrong argument.
    Always a copy, so that nothing done to the result reaches the caller's array.
    """
    raw = np.asarray(value)
    if raw.dtype.kind not in "iuf" and not (raw.dtype.kind == "O" and _all_numbers(raw)):
        raise ValueError(f"{name}: expected numbers, got {value!r}"[:300])
    return np.array(raw, dtype=float)


def _all_numbers(arr: np.ndarray) -> bool:
    kinds = (int, float, np.integer, np.floating)
    return all(isinstance(v, kinds) and not isinstance(v, (bool, np.bool_)) for v in arr.ravel())


def check_positive(value, name: str) -> float:
    """``value`` as a float, or a ``ValueError`` if it is not a finite number ``> 0``."""
    arr = numeric(value, name)
    if arr.ndim != 0:
        raise ValueError(f"{name}: expected a positive number, got an array of shape {arr.shape}")
    out = float(arr)
    if not np.isfinite(out) or out <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return out


def check_mean(mean, name: str, dim: int | None = None) -> np.ndarray:
    """A finite mean vector ``(d,)`` (a scalar is a 1-D mean); ``dim`` is the dimension it must have."""
    out = np.atleast_1d(numeric(mean, name))
    if out.ndim != 1:
        raise ValueError(f"{name}: expected a vector (d,), got shape {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: contains non-finite values")
    if dim is not None and out.shape[0] != dim:
        raise ValueError(f"{name}: dimension {out.shape[0]} does not match the expected dimension {dim}")
    return out


def check_matrix(mat, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A finite 2-D array (a scalar is ``1 x 1``), of ``shape`` when given."""
    out = numeric(mat, name)
    if out.ndim == 0:
        out = out.reshape(1, 1)
    if out.ndim != 2:
        raise ValueError(f"{name}: expected a matrix, got shape {out.shape}")
    if shape is not None and out.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: contains non-finite values")
    return out


def check_cov(cov, name: str, dim: int) -> np.ndarray:
    """A symmetric positive definite ``(dim, dim)`` matrix, symmetrized to rounding."""
    out = check_matrix(cov, name)
    if out.shape != (dim, dim):
        raise ValueError(f"{name}: expected shape ({dim}, {dim}) to match the mean's dimension {dim}, got {out.shape}")
    scale = np.abs(out).max()
    if np.abs(out - out.T).max() > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name}: not symmetric (max |C - C^T| = {np.abs(out - out.T).max():.3g})")
    out = symmetrize(out)
    try:
        np.linalg.cholesky(out)
    except np.linalg.LinAlgError:
        smallest = np.linalg.eigvalsh(out)[0]
        raise ValueError(f"{name}: not positive definite (smallest eigenvalue {smallest:.3g})") from None
    return out


@dataclass(frozen=True, repr=False)
class GaussianMeasure:
    """The finite measure ``mass * N(mean, cov)`` on ``R^d``, validated on construction.

    Attributes
    ----------
    mass
        Total mass ``> 0``.
    mean
        Mean ``(d,)`` (a scalar is a 1-D mean).
    cov
        Symmetric positive definite covariance ``(d, d)`` (a scalar is a 1-D variance).
    """

    mass: float
    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self):
        mean = check_mean(self.mean, "mean")
        object.__setattr__(self, "mass", check_positive(self.mass, "mass"))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "cov", check_cov(self.cov, "cov", mean.shape[0]))

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the space."""
        return self.mean.shape[0]

    def density(self, x) -> np.ndarray:
        """Density ``mass * N(x; mean, cov)`` at points ``x`` of shape ``(..., d)`` (or ``(...)`` when ``d = 1``)."""
        x = np.asarray(x, dtype=float)
        if self.dim == 1 and (x.ndim == 0 or x.shape[-1] != 1):
            x = x[..., None]
        diff = x - self.mean
        quad = np.einsum("...i,ij,...j->...", diff, pd_inv(self.cov), diff)
        norm = np.exp(-0.5 * (self.dim * np.log(2 * np.pi) + logdet(self.cov)))
        return self.mass * norm * np.exp(-0.5 * quad)

    def __repr__(self) -> str:
        return f"GaussianMeasure(mass={self.mass:.6g}, dim={self.dim}, mean={np.round(self.mean, 4).tolist()})"


def as_measure(ref, name: str) -> GaussianMeasure:
    """A :class:`GaussianMeasure`, or a ``(mass, mean, cov)`` triple made into one; errors name ``name``."""
    if isinstance(ref, GaussianMeasure):
        return ref
    try:
        mass, mean, cov = ref
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a GaussianMeasure or a (mass, mean, cov) triple") from None
    mean = check_mean(mean, f"{name} mean")
    return GaussianMeasure(
        check_positive(mass, f"{name} mass"), mean, check_cov(cov, f"{name} covariance", mean.shape[0])
    )


def gaussian_kl(mean0, cov0, mean1, cov1) -> float:
    r"""Kullback-Leibler divergence between probability Gaussians.

    .. math::
        \mathrm{KL}(N(\mu_0, \Sigma_0) | N(\mu_1, \Sigma_1)) = \tfrac12 \big[ \mathrm{tr}(\Sigma_1^{-1}\Sigma_0)
        + (\mu_1 - \mu_0)^T \Sigma_1^{-1} (\mu_1 - \mu_0) - d + \log\det\Sigma_1 - \log\det\Sigma_0 \big].
    """
    mean0 = check_mean(mean0, "mean0")
    d = mean0.shape[0]
    mean1 = check_mean(mean1, "mean1", d)
    return unchecked_kl(mean0, check_cov(cov0, "cov0", d), mean1, check_cov(cov1, "cov1", d))


def unchecked_kl(mean0, cov0, mean1, cov1) -> float:
    """:func:`gaussian_kl` without the checks, for moments that this package computed itself."""
    prec = pd_inv(cov1)
    diff = np.asarray(mean1, dtype=float) - np.asarray(mean0, dtype=float)
    d = diff.shape[0]
    return 0.5 * float(np.trace(prec @ cov0) + diff @ prec @ diff - d + logdet(cov1) - logdet(cov0))


def kl_divergence(mu: GaussianMeasure, nu: GaussianMeasure) -> float:
    r"""Generalized Kullback-Leibler divergence between unbalanced Gaussian measures ``mu = m p``, ``nu = n q``.

    .. math:: \mathrm{KL}(\mu | \nu) = \int \mu \log\frac{d\mu}{d\nu} - \mu + \nu
              = m\, \mathrm{KL}(p | q) + m \log\frac{m}{n} - m + n.
    """
    if mu.dim != nu.dim:
        raise ValueError(f"nu: dimension {nu.dim} does not match mu's dimension {mu.dim}")
    m, n = mu.mass, nu.mass
    return m * unchecked_kl(mu.mean, mu.cov, nu.mean, nu.cov) + m * np.log(m / n) - m + n
