"""The Chambolle-Pock iteration of :mod:`.solve` as ``torch.compile`` graphs.

The eager iteration is a few dozen element-wise passes over the fields (interpolation, its adjoint, the
projection's updates, four Newton steps of the proximal map), each a separate kernel that reads and writes whole
arrays. Compiled, they fuse into a handful of loops around the DCT products of the projection. The graphs are
pure functions of tensors, cached per static setting (dimension, steps, Newton count), so that a second solve
with the same shapes reuses them instead of compiling again.

Every graph here is one code object to torch's compiler (a ``functools.partial`` of the two steps), whose cache
holds ``torch._dynamo.config.recompile_limit`` graphs (8 by default) before it runs new shapes eagerly, silently:
two grid shapes with a few Newton counts reach it. So the limit is raised to :data:`RECOMPILE_LIMIT` when a graph
is built (a global setting of torch, raised only, never lowered), and :func:`call` tells when a new shape or
setting did not compile, so that the solve can say so instead of reporting a compiled run.
"""

from __future__ import annotations

import functools

import torch

from .projection import project_balance_
from .prox import prox_action_fixed
from .staggered import Staggered, interpolate, interpolate_adjoint

_GRAPHS: dict[tuple, object] = {}
_COMPILED: set = set()  # (graph key, input shapes) that compiled in this process
RECOMPILE_LIMIT = 64


class FellBackToEager(RuntimeError):
    """A compiled graph ran eagerly (torch's recompile limit); its outputs are still right."""

    def __init__(self, outputs):
        super().__init__("torch.compile ran a new shape eagerly (recompile limit reached)")
        self.outputs = outputs


def _raise_recompile_limit() -> None:
    config = torch._dynamo.config
    if getattr(config, "recompile_limit", RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
        config.recompile_limit = RECOMPILE_LIMIT


def _n_graphs() -> int | None:
    """Graphs compiled so far in this process (torch's counter; ``None`` where this torch does not keep it)."""
    try:
        from torch._dynamo.utils import counters  # noqa: PLC0415 (private: read only when compiling)
    except ImportError:
        return None
    return counters["stats"]["unique_graphs"]


def call(key: tuple, *args):
    """Run the compiled graph ``key`` (see :func:`graph`) on ``args``; :class:`FellBackToEager` if it did not compile.

    A graph key with input shapes not seen before must add a compiled graph; if torch's counter did not move, the
    call ran eagerly.
    """
    kind, static = key
    shapes = tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else None for a in _flat(args))
    signature = ((kind, *sorted(static.items())), shapes)
    before = None if signature in _COMPILED else _n_graphs()
    out = graph(kind, **static)(*args)
    if before is not None:
        if _n_graphs() == before:
            raise FellBackToEager(out)
        _COMPILED.add(signature)
    return out


def _flat(args):
    for a in args:
        if isinstance(a, (list, tuple)):
            yield from _flat(a)
        else:
            yield a


def primal_step(x, y, steps, bases, inverse_eigenvalues, rho0, rho1, *, ndim, dt, spacing, zeta_scale):
    """``x+ = P_C(x - tau I* y)`` over-relaxed, ``x + r (x+ - x)``, and the extrapolated ``2 x+ - x``.

    ``steps`` holds ``(tau, sigma, r)``. The relaxed point is returned instead of ``x+``, from the loop that
    extrapolates, so that the relaxation costs no pass over memory of its own (residual checks take ``r = 1``).
    """
    tau, r = steps[0], steps[2]
    x_new = [xi - tau * gi for xi, gi in zip(x, interpolate_adjoint(y, ndim).tensors(), strict=True)]
    u = Staggered.from_tensors(x_new, ndim)
    project_balance_(u, bases, inverse_eigenvalues, rho0, rho1, dt, spacing, zeta_scale)
    relaxed = [xi + r * (xn - xi) for xn, xi in zip(x_new, x, strict=True)]
    return relaxed, [2.0 * xn - xi for xn, xi in zip(x_new, x, strict=True)]


def dual_step(y, x_bar, steps, guess, weights, rotation, shift, *, ndim, n_newton):
    """``y+ = z - prox_F(z - c)`` at ``z = y + sigma I x_bar`` over-relaxed, ``prox_F(z - c) / sigma``, Newton's test.

    The relaxed point ``y + r (y+ - y)`` is returned instead of ``y+`` (see :func:`primal_step`). ``steps`` holds
    ``(tau, sigma, r)``; ``c`` is a growth prior's linear term (``shift``, see :class:`.TransportOperators`), or
    ``None``.
    """
    sigma, r = steps[1], steps[2]
    z = y + sigma * interpolate(Staggered.from_tensors(x_bar, ndim))
    p, residual, scale = prox_action_fixed(z if shift is None else z - shift, 1.0, weights, rotation, guess, n_newton)
    return y + r * (z - p - y), p / sigma, residual, scale


def graph(kind: str, **static):
    """The compiled :func:`primal_step` or :func:`dual_step` for these static arguments (built once)."""
    key = (kind, *sorted(static.items()))
    if key not in _GRAPHS:
        _raise_recompile_limit()
        func = {"primal": primal_step, "dual": dual_step}[kind]
        _GRAPHS[key] = torch.compile(functools.partial(func, **static), dynamic=False)
    return _GRAPHS[key]
