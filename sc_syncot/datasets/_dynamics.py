"""Ground-truth latent dynamics of the simulated multiome time course: a bifurcation with branch growth.

Latent state ``z = (x, y)``. The drift carries cells along ``x`` towards a terminal value and, past ``x_split``,
pushes them away from ``y = 0`` onto one of two branches at ``y = +-branch_offset`` (a pitchfork):

    s(x)  = sigmoid(sharpness * (x - x_split))                      commitment, 0 before the split, 1 after
    dx/dt = relaxation * (x_end - x)
    dy/dt = s * instability * (y - y^3 / branch_offset^2) - (1 - s) * attraction * y

plus isotropic diffusion ``sqrt(2 * diffusion) dW``. Proliferation ``b`` and death ``d`` rates blend the
per-branch values with the same commitment and a smooth side indicator ``h(y) = sigmoid(y / side_width)``:

    r(z) = (1 - s) r_progenitor + s (h r_A + (1 - h) r_B),    growth g = b - d.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

BRANCHES = ("progenitor", "A", "B")
# Branch A proliferates, branch B dies off: per-branch net growth 0.5, 0.9 and -0.5 per unit time.
DEFAULT_PROLIFERATION = {"progenitor": 0.7, "A": 1.0, "B": 0.3}
DEFAULT_DEATH = {"progenitor": 0.2, "A": 0.1, "B": 0.8}


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # tanh form: no overflow warnings for large |u|


@dataclass(frozen=True)
class Bifurcation:
    """Parameters of the latent drift, diffusion, and birth/death rates (see the module docstring)."""

    proliferation: tuple[float, float, float]
    death: tuple[float, float, float]
    diffusion: float = 0.01
    x_start: float = -2.0
    start_sd: tuple[float, float] = (0.25, 0.15)
    x_end: float = 2.0
    relaxation: float = 0.8
    x_split: float = 0.0
    sharpness: float = 4.0
    instability: float = 2.5
    attraction: float = 1.0
    branch_offset: float = 1.0
    side_width: float = 0.1
    committed_fraction: float = 0.25
    fate_kick: float = 0.0  # > 0: each lineage carries a fate (+1: A, -1: B) that past the split pushes y its way

    def initial(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` progenitor positions around ``(x_start, 0)``."""
        return np.array([self.x_start, 0.0]) + rng.standard_normal((n, 2)) * np.array(self.start_sd)

    def commitment(self, z: np.ndarray) -> np.ndarray:
        """``s(x)``: 0 in the progenitor region, 1 past the split."""
        return _sigmoid(self.sharpness * (z[:, 0] - self.x_split))

    def drift(self, z: np.ndarray, s: np.ndarray | None = None, fate: np.ndarray | None = None) -> np.ndarray:
        """The velocity field ``(dx/dt, dy/dt)`` at positions ``z`` (n x 2); ``s`` is their commitment if known.

        With ``fate`` (``+-1`` per cell) and ``fate_kick > 0``, committed cells are also pushed towards their fate's
        branch, ``s * fate_kick * fate``, so that the branch is decided before the split instead of by the noise.
        """
        s, y = self.commitment(z) if s is None else s, z[:, 1]
        vx = self.relaxation * (self.x_end - z[:, 0])
        vy = s * self.instability * (y - y**3 / self.branch_offset**2) - (1.0 - s) * self.attraction * y
        if fate is not None and self.fate_kick > 0:
            vy = vy + s * self.fate_kick * fate
        return np.column_stack([vx, vy])

    def ahead(self, z: np.ndarray, fate: np.ndarray, lead: float) -> np.ndarray:
        """Where a cell is heading ``lead`` time units ahead, on the noise-free path.

        ``x`` along the relaxation, ``y`` on its fate's branch as far as it will be committed then.
        """
        x = self.x_end - (self.x_end - z[:, 0]) * np.exp(-self.relaxation * lead)
        s = _sigmoid(self.sharpness * (x - self.x_split))
        return np.column_stack([x, (1.0 - s) * z[:, 1] + s * fate * self.branch_offset])

    def rates(self, z: np.ndarray, s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Proliferation and death rates at positions ``z``; ``s`` is their commitment if known."""
        s, h = self.commitment(z) if s is None else s, _sigmoid(z[:, 1] / self.side_width)
        weights = np.column_stack([1.0 - s, s * h, s * (1.0 - h)])
        return weights @ np.array(self.proliferation), weights @ np.array(self.death)

    def branch(self, z: np.ndarray) -> np.ndarray:
        """Branch codes (indices into ``BRANCHES``): committed once past the split and off the axis."""
        committed = (z[:, 0] > self.x_split) & (np.abs(z[:, 1]) > self.committed_fraction * self.branch_offset)
        return np.where(committed, np.where(z[:, 1] > 0, 1, 2), 0)

    def to_dict(self) -> dict:
        """h5ad-friendly parameters (rates keyed by branch name)."""
        out = asdict(self)
        out["proliferation"] = dict(zip(BRANCHES, self.proliferation, strict=True))
        out["death"] = dict(zip(BRANCHES, self.death, strict=True))
        out["start_sd"] = np.array(self.start_sd)
        return out


def simulate_population(
    dyn: Bifurcation,
    times: np.ndarray,
    group_size: int,
    max_dt: float,
    rng: np.random.Generator,
    fate_rng: np.random.Generator | None = None,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, list[np.ndarray] | None, np.ndarray | None]:
    """Branching diffusion from ``times[0]``, one independent founder group per observation time.

    Group ``k`` (``group_size`` founders) is followed until ``times[k]`` and then observed, so snapshots at
    different times share no lineage, as when each measurement destroys the cells it sees.

    Returns
    -------
    snapshots
        Positions of the living cells of group ``k`` at ``times[k]``.
    mass
        Total mass at each time relative to the start, ``living cells / founders`` over the groups still followed.
    branch_mass
        The same per branch, times x 3.
    fates
        With ``fate_rng`` (the fate-driven mode), each snapshot's fates (``+-1``, drawn per founder with equal odds
        from ``fate_rng`` and inherited at division); else ``None``.
    fate_share
        With ``fate_rng``: the share of the mass fated to branch A at each time; else ``None``.
    """
    n_groups = len(times)
    z, group = dyn.initial(n_groups * group_size, rng), np.repeat(np.arange(n_groups), group_size)
    fate = None if fate_rng is None else fate_rng.choice([-1.0, 1.0], size=len(z))
    snapshots, mass, branch_mass = [], np.empty(n_groups), np.empty((n_groups, len(BRANCHES)))
    fates, fate_share = ([], np.empty(n_groups)) if fate is not None else (None, None)
    for k in range(n_groups):
        if k > 0:
            z, group, fate = _advance(dyn, z, group, times[k] - times[k - 1], max_dt, rng, fate)
        founders = (n_groups - k) * group_size
        mass[k] = len(z) / founders
        branch_mass[k] = np.bincount(dyn.branch(z), minlength=len(BRANCHES)) / founders
        snapshots.append(z[group == k])
        if fate is not None:
            fates.append(fate[group == k])
            fate_share[k] = float(np.mean(fate > 0))
            fate = fate[group > k]
        z, group = z[group > k], group[group > k]
    return snapshots, mass, branch_mass, fates, fate_share


def _advance(
    dyn: Bifurcation,
    z: np.ndarray,
    group: np.ndarray,
    duration: float,
    max_dt: float,
    rng: np.random.Generator,
    fate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Euler-Maruyama steps with, in each step, death with probability ``d dt`` and division with ``b dt``."""
    n_steps = max(1, int(np.ceil(duration / max_dt)))
    dt = duration / n_steps
    noise = np.sqrt(2.0 * dyn.diffusion * dt)
    for _ in range(n_steps):
        s = dyn.commitment(z)
        birth, death = dyn.rates(z, s)
        u = rng.random(len(z))
        alive = u >= death * dt
        divides = alive & (u < (death + birth) * dt)
        z = z + dyn.drift(z, s, fate) * dt + noise * rng.standard_normal(z.shape)
        # Daughters start where the mother is and separate through their own noise in the next steps.
        z = np.concatenate([z[alive], z[divides]])
        group = np.concatenate([group[alive], group[divides]])
        fate = None if fate is None else np.concatenate([fate[alive], fate[divides]])
    return z, group, fate
