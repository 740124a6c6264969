""":func:`~sc_syncot.solvers.solve` on a :class:`~sc_syncot.solvers.Graph`: set-up and read-out around the shared loop.

:func:`.solve` has already moved the problem into a unit box; here the masses are scaled to unit mean per node,
the graph's operators built (:mod:`.graph_transport`), and the same Chambolle-Pock loop run, with the Kantorovich
blocks of :mod:`.kantorovich_solver` when there are Kantorovich secondaries.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .graph_transport import GraphProjector, GraphTransportOperators
from .problem import SyncOTProblem
from .result import SyncOTResult
from .solve import run_primal_dual, soft_operators, unwrap, with_penalties, with_secondaries


def solve_on_graph(
    problem: SyncOTProblem,
    opts: dict,
    cp_options: dict,
    kantorovich_options: dict,
    step_ratio: float,
    support_threshold: float,
    projection: str,
) -> SyncOTResult:
    """Solve a graph problem already in a unit box (see :func:`.solve`, whose arguments these are)."""
    graph = problem.geometry
    m0, m1 = problem.masses()
    scale = 0.5 * (m0 + m1) / graph.n_nodes  # unit mean node mass per problem
    rho0 = torch.as_tensor(problem.rho0 / scale[:, None], **opts)
    rho1 = torch.as_tensor(problem.rho1 / scale[:, None], **opts)
    alpha = problem.alpha
    zeta_scale = None if alpha is None else math.sqrt(alpha)
    projector = GraphProjector(graph, rho0, rho1, zeta_scale, method=projection, free=problem.soft_ends)
    stretch = np.ones((1, graph.n_edges))
    for (_, s), st in zip(problem.monge_secondaries, problem.edge_stretch(), strict=True):
        stretch = stretch + s.weight * st
    edge_weights = torch.as_tensor(graph.omega * stretch, **opts)  # (B|1, E)
    cell_weight = torch.as_tensor(scale * graph.dt, **opts)
    prior = None if problem.growth_prior is None else torch.as_tensor(problem.growth_prior, **opts)
    primary_args = (projector, graph, edge_weights, cell_weight, prior)
    x0 = projector.project_(initial_point(graph.n_time, rho0, rho1, graph.n_edges, zeta_scale))
    reports = ()
    if problem.kantorovich_secondaries:
        from .kantorovich_solver import run_kantorovich  # noqa: PLC0415 (it builds on solve, which imports us)

        # the primary block's dual point, (2, B, Nt, E + n) as GraphTransportOperators.apply gives it
        y_primary = rho0.new_zeros(2, rho0.shape[0], graph.n_time, graph.n_edges + graph.n_nodes)
        ops, state, v, reports = run_kantorovich(
            problem, primary_args, x0, y_primary, scale, opts, cp_options, step_ratio=step_ratio,
            **kantorovich_options,
        )  # fmt: skip
        state.v = v
        penalties = getattr(ops, "final_penalties", (None, None))
        return graph_result(
            problem, ops, state, scale, zeta_scale, support_threshold, opts["device"], reports, penalties
        )
    ops = GraphTransportOperators(*primary_args)
    if any(problem.soft_ends):
        ops = soft_operators(ops, problem, (rho0, rho1), x0)
    state = run_primal_dual(ops, x0, step_ratio, cp_options)
    base, state.v, penalties = unwrap(ops, state.v)
    return graph_result(problem, base, state, scale, zeta_scale, support_threshold, opts["device"], penalties=penalties)


def initial_point(n_time: int, rho0, rho1, n_edges: int, zeta_scale) -> list[torch.Tensor]:
    """Linear interpolation of the masses in time, no flow; the source accounts for the mass change."""
    t = torch.linspace(0, 1, n_time + 1, dtype=rho0.dtype, device=rho0.device).reshape(1, -1, 1)
    rho = (1 - t) * rho0.unsqueeze(1) + t * rho1.unsqueeze(1)
    x = [rho, rho0.new_zeros(rho0.shape[0], n_time, n_edges)]
    if zeta_scale is not None:
        x.append((zeta_scale * (rho1 - rho0)).unsqueeze(1).expand(-1, n_time, -1).contiguous())
    return x


def graph_result(
    problem, ops, state, scale, zeta_scale, support_threshold, dev, reports=(), penalties=(None, None)
) -> SyncOTResult:
    """Read a finished iteration out in the problems' units (before :func:`.in_units` undoes the unit box)."""
    graph = problem.geometry
    single = problem.batch_size == 1
    v = state.v  # the primary prox point (run_kantorovich returns that part alone)
    s = scale.reshape(-1, 1, 1)

    def host(t):
        arr = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        return arr[0] if single else arr

    rho = state.x[0].detach().cpu().numpy() * s  # (B, Nt + 1, n)
    m_edge = state.x[1].detach().cpu().numpy() * s  # (B, Nt, E)
    mid = 0.5 * (rho[:, 1:] + rho[:, :-1])  # (B, Nt, n)
    if zeta_scale is None:
        source = np.zeros_like(mid)
    else:
        source = state.x[2].detach().cpu().numpy() * s / zeta_scale
    peak = mid.reshape(len(mid), -1).max(1).reshape(-1, 1, 1)
    support = mid > support_threshold * peak
    safe = np.where(support, mid, 1.0)
    momentum = graph.node_vectors(m_edge)  # (B, Nt, n, d)
    velocity = np.where(support[..., None], momentum / safe[..., None], 0.0)
    growth = np.where(support, source / safe, 0.0)
    secondary_velocity = []
    for y in problem.jacobians():  # node coordinates of the Monge secondaries, (B|1, n, dY)
        induced = graph.node_vectors(m_edge, ends=y[:, None])  # (B, Nt, n, dY)
        secondary_velocity.append(np.where(support[..., None], induced / safe[..., None], 0.0))

    fields = {
        "geometry": graph, "rho": host(rho), "momentum": host(momentum), "source": host(source),
        "velocity": host(velocity), "growth": host(growth), "support": host(support),
        "secondary_velocity": [host(w) for w in secondary_velocity], "momentum_staggered": [host(m_edge)],
    }  # fmt: skip
    costs, actions = _costs(problem, ops, v, zeta_scale, reports)
    costs = with_penalties(costs, penalties)
    settings = {"support_threshold": support_threshold, "device": str(dev), "compiled": False}
    return SyncOTResult.from_solve(fields, costs, state, reports, host, actions=actions, **settings)


def _costs(problem, ops, v, zeta_scale, reports) -> tuple[dict, dict]:
    """The action at the prox point ``v`` split into primary transport and growth, and each secondary, per problem."""
    graph = problem.geometry
    edge, node = ops.edge_and_node_terms(v)  # (B, Nt, E) without omega; (B,) alpha zeta^2 / rho summed
    cw = ops.cell_weight
    omega = torch.as_tensor(graph.omega, dtype=edge.dtype, device=edge.device)
    out = {"primary_transport": (edge * omega).sum((1, 2)) * cw}
    alpha = problem.alpha
    growth = None if node is None else node * cw / alpha  # sum zeta^2 / rho, per problem
    out["primary_growth"] = torch.zeros_like(out["primary_transport"]) if growth is None else problem.delta**2 * growth
    terms = {}
    for (k, sec), st in zip(problem.monge_secondaries, problem.edge_stretch(), strict=True):
        w = omega * torch.as_tensor(st, dtype=edge.dtype, device=edge.device)  # (B|1, E)
        term = (edge * w[:, None]).sum((1, 2)) * cw
        if growth is not None:
            delta_y = problem.delta if sec.delta is None else sec.delta
            term = term + delta_y**2 * growth
        terms[k] = (sec.name or f"secondary_{k}", sec.weight * term, term)
    return with_secondaries(out, terms, reports)
