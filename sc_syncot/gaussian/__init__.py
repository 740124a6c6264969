"""Gaussian unbalanced optimal transport and unbalanced density control, solved globally (Mathematics page, section 5).

- :func:`uot`: KL-penalized unbalanced transport between ``m_a N(a, A)`` and ``m_b N(b, B)``, in closed form
  (optimal moments, affine map, mass ``m* = sqrt(m_a m_b) exp(-F* / (2 tau))``).
- :func:`entropic_uot`: the same with an entropic term, the cross-covariance as a variable, in closed form.
- :func:`udc`, :func:`maxent_udc`: unbalanced density control of ``x_{k+1} = A x_k + B u_k`` through a lifted SDP
  (needs the optional dependency cvxpy: ``pip install "sc-syncot[control]"``).
- :func:`group_growth`: per-group transported mass and birth, death and growth rates between two time points, from
  Gaussian summaries of the groups.

References: "Globally solving unbalanced optimal transport and density control for Gaussian distributions"
(the Gaussian UOT/UDC paper); H. Janati et al., "Entropic optimal transport between unbalanced Gaussian measures
has a closed form", NeurIPS 2020.
"""

from .control import UDCResult, maxent_udc, udc
from .entropic import EntropicUOTResult, entropic_uot
from .growth import GroupGrowth, group_growth
from .measures import GaussianMeasure, gaussian_kl, kl_divergence
from .uot import GaussianUOTResult, optimal_mass, uot

__all__ = [
    "EntropicUOTResult",
    "GaussianMeasure",
    "GaussianUOTResult",
    "GroupGrowth",
    "UDCResult",
    "entropic_uot",
    "gaussian_kl",
    "group_growth",
    "kl_divergence",
    "maxent_udc",
    "optimal_mass",
    "udc",
    "uot",
]
