"""Stochastic equilibria (paper Definition 2): which equilibria random starts reach, and how often."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stackopt.core.blas import blas_threads as blas_scope
from stackopt.core.blas import check_threads
from stackopt.kernel import kernel_of
from stackopt.oracle import EquilibriumOracle, distinct


@dataclass
class EquilibriumClass:
    """One distinct equilibrium found among the samples."""

    follower_values: dict
    frequency: float  # share of the converged samples that reached it
    count: int
    leader_objective: float
    constraint_values: np.ndarray
    residual: float


def equilibria(game, leader_values=None, samples: int = 20, seed: int = 0,
               distance: float = 1e-4, tol: float = 1e-8, blas_threads: int | None = 1,
               **oracle_options) -> list[EquilibriumClass]:
    """Distinct equilibria reached from ``samples`` seeded random starts, most frequent first.

    Two equilibria are the same when no follower variable differs by more than
    ``distance``. Samples whose oracle run did not converge are left out (the
    frequencies are shares of the converged ones). Which equilibria are reached,
    and how often, depends on the oracle's cold-start dynamics
    (``oracle_options``, e.g. ``cold_start="relaxation"``). ``blas_threads`` as for
    :func:`stackopt.solve`.
    """
    with blas_scope(check_threads(blas_threads)):
        return _equilibria(game, leader_values, samples, seed, distance, tol, oracle_options)


def _equilibria(game, leader_values, samples, seed, distance, tol, oracle_options) -> list[EquilibriumClass]:
    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not distance > 0:
        raise ValueError(f"distance must be > 0, got {distance!r}")
    game.refresh()
    k = kernel_of(game)
    p = k.p0 if leader_values is None else k.check_leader(leader_values)
    oracle = EquilibriumOracle(k, tol=tol, **oracle_options)
    found = [e for e in (oracle.solve(p, rng=np.random.default_rng([seed, s])) for s in range(samples))
             if e.converged]
    out = []
    for i, count in distinct([e.x for e in found], distance):
        e = found[i]
        obj, cons = k.leader(e.x, p)
        out.append(EquilibriumClass(k.follower_values(e.x), count / len(found), count, obj, cons,
                                    e.residual))
    return out
