"""The reconstructed population between observations: density at any time, and particle trajectories."""

from __future__ import annotations

import numpy as np

from ..pp.inputs import check_key_added, check_writes, observed_time, primary_table
from ..solvers.grid import is_integer
from .flow import read_flow, result_cells
from .graph_flow import GraphFlow, cell_nodes


def interpolate(adata, time: float, key: str = "syncot") -> tuple[np.ndarray, float]:
    """Density of the reconstructed population at any ``time`` of the observed range, and its mass.

    On a grid fit, a density on the grid's cells; on a graph fit, a mass per node of the graph of cell states,
    whose coordinates in every column of the primary basis are ``adata.uns[key]["graph"]["points"]`` (each cell's
    node is ``adata.obs[f"{key}_node"]``). Linear between the fit's time nodes. The solver leaves values a little
    below 0 where nothing is (rounding: up to about 1e-3 of the largest value); they are kept, so that the mass is
    the solver's (``np.clip(density, 0, None)`` for display).

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    time
        In the units of the time key.
    key
        The result to use.

    Returns
    -------
    density
        Grid: an ``adata.uns[key]["grid"]["shape"]`` array on the grid's cell centres. Graph: ``(n_nodes,)`` node
        masses, in the order of ``adata.uns[key]["graph"]["points"]``.
    mass
        Its mass, relative to the mean mass of the observed time points.
    """
    flow = read_flow(adata, key)
    density = flow.density_at(float(time))
    return density, flow.mass(density)


def trajectories(
    adata,
    start_time: float | None = None,
    n_particles: int = 200,
    groupby: str | None = None,
    groups=None,
    seed: int = 0,
    key: str = "syncot",
    key_added: str | None = None,
    copy: bool = False,
):
    """Particle paths through the computed flow, with weights ``exp(int g dt)`` along each path.

    Particles start at cells observed at ``start_time`` (default: the first time point), optionally only those
    of ``groups`` in ``.obs[groupby]``, and follow the velocity field (midpoint steps, one per time step of the
    solve) to the last time point. On a graph, particles start at their cells' nodes and move from node to node:
    at each time step a particle joins its node's mixture (the node's mass and what flows in) and either stays or
    leaves along one of the node's outgoing flows, drawn in proportion to the masses, into the next node's
    mixture, and so on (mass crosses several edges in a step where the flow is fast), so that many particles
    spread as the mass does (:meth:`~sc_syncot.tl.graph_flow.GraphFlow.walk`); paths are the nodes' coordinates
    in all columns of the primary basis. With a time warp (see
    :func:`sc_syncot.tl.syncot`), each step's time is the physical time the warp places there.
    Writes ``adata.uns[key_added]`` (default ``f"{key}_trajectories"``) with
    ``paths`` ``(n_particles, n_steps + 1, d)``, ``times`` ``(n_steps + 1,)``, ``weights``
    ``(n_particles, n_steps + 1)`` (expected number of descendants of each particle), ``cells`` (the
    starting cells' names) and, on a graph, ``nodes`` ``(n_particles, n_steps + 1)``.

    Parameters
    ----------
    adata
        AnnData (or MuData) with a result of :func:`sc_syncot.tl.syncot` under ``key``.
    start_time
        Observed time point to start from.
    n_particles
        Particles (sampled among the starting cells without replacement; all of them when fewer).
    groupby, groups
        Restrict the starting cells to these groups.
    seed
        Seed of the sampling.
    key
        The result to use.
    key_added
        ``.uns`` key written.
    copy
        Return a modified copy instead of writing in place.
    """
    if not is_integer(n_particles) or n_particles < 1:
        raise ValueError(f"n_particles: expected a positive integer, got {n_particles!r}")
    if groups is not None and groupby is None:
        raise ValueError(f"groups={groups!r}: given without groupby; name the .obs column the groups belong to")
    if groupby is not None and groups is None:
        raise ValueError(f"groupby={groupby!r}: given without groups; name the groups to start from")
    key_added = f"{key}_trajectories" if key_added is None else key_added
    flow = read_flow(adata, key)
    params = adata.uns[key]["params"]
    check_key_added(key_added)
    check_writes(primary_table(adata, params["primary"]), [("uns", key_added)], {}, key_added)
    cells = result_cells(adata, params)
    tp = flow.time_points
    before_last = "the observed time points before the last"
    k0 = 0 if start_time is None else observed_time(start_time, tp[:-1], "start_time", before_last)
    start_time = tp[k0]
    eligible = cells.time == start_time
    if groupby is not None:
        from ._fates import _group_mask

        eligible &= _group_mask(adata, params["primary"], groupby, groups)
    idx = np.flatnonzero(eligible)
    if len(idx) == 0:
        raise ValueError("groups: no cell of the group is observed at start_time")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(idx, min(n_particles, len(idx)), replace=False))
    graph = isinstance(flow, GraphFlow)
    if graph:  # particles are nodes, starting at the cells' own nodes
        pts = cell_nodes(adata, key, params["primary"], flow.n_nodes)[idx]
        walk_rng = np.random.default_rng([seed, 1])
    else:
        pts = cells.x[idx]
    log_w = np.zeros(len(idx))
    steps, weights, times = [pts], [np.ones(len(idx))], [float(start_time)]  # steps: positions, or nodes
    for k in range(k0, len(tp) - 1):
        for j in range(flow.n_time):
            pts, growth = flow.walk(pts, k, j, walk_rng) if graph else flow.step(pts, k, j)
            log_w += growth
            steps.append(pts)
            weights.append(np.exp(log_w))
            times.append(flow.physical_time(k, (j + 1) / flow.n_time))
    steps = np.stack(steps, axis=1)
    out = adata.copy() if copy else adata
    primary_table(out, params["primary"]).uns[key_added] = {
        "paths": flow.points[steps] if graph else steps,
        "times": np.asarray(times),
        "weights": np.stack(weights, axis=1),
        "cells": np.asarray(cells.names[idx], dtype=str),
    } | ({"nodes": steps} if graph else {})
    return out if copy else None
