# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Gaussian unbalanced transport and unbalanced density control
#
# Between Gaussian measures, KL-penalized unbalanced optimal transport (UOT) is solved globally: the optimal plan is
# Gaussian, its normalized moments solve a convex problem (here in closed form), and the transported mass is
#
# $$m^* = \sqrt{m_a m_b}\, e^{-F^*/(2\tau)}, \qquad \text{value} = \tau (m_a + m_b - 2 m^*).$$
#
# The same reduction extends to *unbalanced density control* (UDC) of a linear system $x_{k+1} = A x_k + B u_k$ with
# KL-soft endpoints, solved by a semidefinite program. This tutorial reproduces the qualitative figures of the
# Gaussian UOT/UDC paper with `sc_syncot.gaussian`:
#
# 1. the optimal marginals approach the references as $\tau$ grows, and $m^* \to \sqrt{m_a m_b}$;
# 2. the optimal plans, unregularized (on the graph of an affine map) and entropic (spread around it);
# 3. the evolution of the state measure under UDC, for a weak and a strong KL weight;
# 4. MaxEnt UDC in two dimensions: a larger entropy weight gives more diffuse control.
#
# Parts 3 and 4 need the optional dependency cvxpy (`pip install "sc-syncot[control]"`).
#
# Figures are written to the folder named by the environment variable `SC_SYNCOT_TUTORIAL_OUT` (if set);
# `SC_SYNCOT_TUTORIAL_FAST=1` runs shorter horizons and fewer weights.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Ellipse

from sc_syncot.gaussian import GaussianMeasure, entropic_uot, kl_divergence, maxent_udc, udc, uot

FAST = os.environ.get("SC_SYNCOT_TUTORIAL_FAST", "") not in ("", "0")
OUT = os.environ.get("SC_SYNCOT_TUTORIAL_OUT")  # a folder: the figures are also saved there, as PNG
if OUT:
    Path(OUT).mkdir(parents=True, exist_ok=True)


# %% [markdown]
# ## 1. Optimal marginals approach the references as $\tau$ grows
#
# Two one-dimensional cases: the references have different masses (unbalanced) or the same mass (balanced).

# %%
CASES = {
    "unbalanced": (GaussianMeasure(1.0, -1.0, 0.5**2), GaussianMeasure(0.5, 1.5, 0.8**2)),
    "balanced": (GaussianMeasure(1.0, -1.0, 0.5**2), GaussianMeasure(1.0, 1.5, 0.8**2)),
}
TAUS = [0.2, 1.0, 10.0, 30.0]
x = np.linspace(-4.0, 5.0, 300 if FAST else 600)


def solve_uot(refs, tau):
    """Gaussian UOT between a pair of reference measures."""
    alpha, beta = refs
    return uot(alpha.mass, alpha.mean, alpha.cov, beta.mass, beta.mean, beta.cov, tau)


uot_results = {name: [solve_uot(refs, tau) for tau in TAUS] for name, refs in CASES.items()}
uot_masses = {name: [r.mass for r in results] for name, results in uot_results.items()}
marginal_gaps = {
    name: [kl_divergence(r.marginals[0], CASES[name][0]) + kl_divergence(r.marginals[1], CASES[name][1]) for r in res]
    for name, res in uot_results.items()
}

print(f"{'tau':>6} " + " ".join(f"{name:>12}" for name in CASES))
for i, tau in enumerate(TAUS):
    print(f"{tau:6.1f} " + " ".join(f"{uot_masses[name][i]:12.3f}" for name in CASES))
print("limit  " + " ".join(f"{np.sqrt(a.mass * b.mass):12.3f}" for a, b in CASES.values()))

# %%
fig, axes = plt.subplots(len(CASES), len(TAUS), figsize=(3.2 * len(TAUS), 2.6 * len(CASES)), sharex=True)
for row, (name, (alpha, beta)) in enumerate(CASES.items()):
    for col, (tau, res) in enumerate(zip(TAUS, uot_results[name], strict=True)):
        ax = axes[row, col]
        ax.plot(x, alpha.density(x) + beta.density(x), color="tab:blue", label=r"$\alpha$, $\beta$")
        src, dst = res.marginals
        ax.plot(x, src.density(x), "--", color="tab:orange", label=r"$\pi_0$, $\pi_1$")
        ax.plot(x, dst.density(x), "--", color="tab:orange")
        ax.set_title(f"{name}, $\\tau$ = {tau:g}, $m^*$ = {res.mass:.3f}", fontsize=9)
for ax in axes[-1]:
    ax.set_xlabel("x")
for ax in axes[:, 0]:
    ax.set_ylabel("density (mass per unit x)")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
if OUT:
    fig.savefig(Path(OUT) / "uot_marginals.png", dpi=110, bbox_inches="tight")

# %% [markdown]
# ## 2. Optimal plans: an affine map, and its entropic blur
#
# Without regularization the plan lives on the graph of $y = T x + c$ (a line in 1-D). With an entropic term
# $\varepsilon\,\mathrm{KL}(\pi \,|\, \alpha \otimes \beta)$ the cross-covariance is a free variable and the plan
# spreads around the line, more for a larger $\varepsilon$.

# %%
balanced = CASES["balanced"]
EPSILONS = [0.1, 1.0, 5.0]
xx, yy = np.meshgrid(x, x, indexing="ij")
points = np.stack([xx, yy], axis=-1)
fig, axes = plt.subplots(1, 2 + len(EPSILONS), figsize=(3.2 * (2 + len(EPSILONS)), 3.2), sharey=True)
for ax, tau in zip(axes[:2], (0.2, 30.0), strict=True):
    res = solve_uot(balanced, tau)
    sd = np.sqrt(res.cov0[0, 0])
    seg = np.linspace(res.mean0[0] - 3 * sd, res.mean0[0] + 3 * sd, 2)
    ax.plot(seg, res.transport(seg[:, None])[:, 0], color="k")
    ax.set_title(f"UOT, $\\tau$ = {tau:g}: $y = {res.map_matrix[0, 0]:.2f} x {res.map_offset[0]:+.2f}$", fontsize=9)
entropic_spread = []
for ax, eps in zip(axes[2:], EPSILONS, strict=True):
    alpha, beta = balanced
    res = entropic_uot(alpha.mass, alpha.mean, alpha.cov, beta.mass, beta.mean, beta.cov, 10.0, eps)
    plan = GaussianMeasure(res.mass, res.coupling_mean, res.coupling_cov)
    ax.contourf(xx, yy, plan.density(points), levels=12, cmap="Oranges")
    ax.set_title(f"entropic, $\\tau$ = 10, $\\varepsilon$ = {eps:g}", fontsize=9)
    entropic_spread.append(float(res.conditional_cov[0, 0]))
for ax in axes:
    ax.plot(x, x, ":", color="grey", lw=0.8)
    ax.set_xlim(-3, 4)
    ax.set_ylim(-3, 5)
    ax.set_xlabel("x (source)")
axes[0].set_ylabel("y (target)")
fig.tight_layout()
if OUT:
    fig.savefig(Path(OUT) / "uot_plans.png", dpi=110, bbox_inches="tight")
print("Var(y | x) of the entropic plans:", np.round(entropic_spread, 4))

# %% [markdown]
# ## 3. Unbalanced density control: state-measure evolution
#
# A scalar system $x_{k+1} = x_k + 0.2\, u_k$ over $N$ steps, references $\alpha$ (red) and $\beta$ (blue). The
# optimal initial measure $\rho_0$ (pink, dashed) and terminal measure $\rho_N$ (light blue, dashed) move toward each
# other to save control effort, less so for a larger $\tau$; intermediate state measures are grey. The optimal policy
# is deterministic affine feedback (zero control covariance), as the paper's theorem predicts when the state
# covariances stay positive definite. This part needs cvxpy.

# %%
HORIZON = 6 if FAST else 20
UDC_TAUS = [2.0, 20.0]
system = (np.array([[1.0]]), np.array([[0.2]]))
udc_refs = (GaussianMeasure(1.0, -1.0, 0.3**2), GaussianMeasure(0.6, 1.5, 0.5**2))
udc_results = {tau: udc(*system, HORIZON, udc_refs, tau) for tau in UDC_TAUS}

greys = ListedColormap(plt.cm.Greys(np.linspace(0.3, 0.9, 256)))  # light to dark grey as time goes on
fig, axes = plt.subplots(1, len(UDC_TAUS), figsize=(5.5 * len(UDC_TAUS), 3.4), sharey=True, layout="constrained")
for ax, (tau, res) in zip(axes, udc_results.items(), strict=True):
    for k in range(1, HORIZON):  # the intermediate states, coloured by their step
        ax.plot(x, res.state_measure(k).density(x), color=greys(k / HORIZON), lw=0.6)
    ax.plot(x, udc_refs[0].density(x), color="tab:red", label=r"$\alpha$")
    ax.plot(x, udc_refs[1].density(x), color="tab:blue", label=r"$\beta$")
    ax.plot(x, res.state_measure(0).density(x), "--", color="hotpink", label=r"$\rho_0$")
    ax.plot(x, res.state_measure(HORIZON).density(x), "--", color="deepskyblue", label=r"$\rho_N$")
    ax.set_title(f"UDC, $\\tau$ = {tau:g}: mass {res.mass:.3f}, max control var {res.control_covs.max():.1e}")
    ax.set_xlabel("state x")
axes[0].set_ylabel("density of the state")
axes[0].legend()
steps = plt.cm.ScalarMappable(cmap=greys, norm=plt.Normalize(0, HORIZON))
fig.colorbar(steps, ax=list(axes), label="time step k (grey curves)", shrink=0.8)
if OUT:
    fig.savefig(Path(OUT) / "udc_evolution.png", dpi=110, bbox_inches="tight")
for tau, res in udc_results.items():
    print(f"tau={tau:g}: mean of rho_0 {res.means[0, 0]:+.3f} (alpha {udc_refs[0].mean[0]:+.1f}),", end=" ")
    print(f"mean of rho_N {res.means[-1, 0]:+.3f} (beta {udc_refs[1].mean[0]:+.1f}), mass {res.mass:.3f}")

# %% [markdown]
# ## 4. MaxEnt UDC in two dimensions
#
# A double integrator (position, velocity; the control is an acceleration). An entropy reward
# $\lambda H(\pi_k(\cdot\,|\,x))$ on the control law makes the optimal policy randomized: the control covariance grows
# with $\lambda$, and the state measures spread. The relaxed SDP is tight at the optimum (`lifting_gap`).

# %%
MAXENT_HORIZON = 4 if FAST else 10
WEIGHTS = [0.1, 2.0] if FAST else [0.01, 0.5, 2.0]
double_integrator = (np.array([[1.0, 0.2], [0.0, 1.0]]), np.array([[0.0], [0.5]]))
maxent_refs = (
    GaussianMeasure(1.0, [-2.0, 0.0], [[0.10, 0.0], [0.0, 0.05]]),
    GaussianMeasure(0.8, [2.0, 0.0], [[0.15, 0.03], [0.03, 0.08]]),
)
maxent_results = {lam: maxent_udc(*double_integrator, MAXENT_HORIZON, maxent_refs, 10.0, lam) for lam in WEIGHTS}


def ellipse(ax, mean, cov, **kwargs):
    """Two-standard-deviation ellipse of ``N(mean, cov)``."""
    w, v = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(v[1, 1], v[0, 1]))
    ax.add_patch(Ellipse(mean, 4 * np.sqrt(w[1]), 4 * np.sqrt(w[0]), angle=angle, fill=False, **kwargs))


fig, axes = plt.subplots(
    1, len(WEIGHTS), figsize=(4.5 * len(WEIGHTS), 3.6), sharex=True, sharey=True, layout="constrained"
)
colors = plt.cm.viridis(np.linspace(0, 1, MAXENT_HORIZON + 1))
for ax, (lam, res) in zip(axes, maxent_results.items(), strict=True):
    for k in range(MAXENT_HORIZON + 1):
        ellipse(ax, res.means[k], res.covs[k], color=colors[k], lw=1.0)
    ellipse(ax, maxent_refs[0].mean, maxent_refs[0].cov, color="tab:red", lw=2)
    ellipse(ax, maxent_refs[1].mean, maxent_refs[1].cov, color="tab:blue", lw=2)
    ax.set_title(f"MaxEnt UDC, $\\lambda$ = {lam:g}: mean control var {res.control_covs.mean():.3f}", fontsize=9)
    ax.set_xlim(-4, 4)
    ax.set_ylim(-1.5, 4)
    ax.set_xlabel("position")
axes[0].set_ylabel("velocity")
steps = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, MAXENT_HORIZON))
fig.colorbar(steps, ax=list(axes), label="time step k (thin ellipses)", shrink=0.8)
if OUT:
    fig.savefig(Path(OUT) / "maxent_udc.png", dpi=110, bbox_inches="tight")
for lam, res in maxent_results.items():
    print(f"lambda={lam:g}: control variances {np.round(res.control_covs[:, 0, 0], 4)}, ", end="")
    print(f"relaxation slack {res.lifting_gap.max():.1e}")
