"""Checking the implicit gradient against central finite differences of re-solved equilibria."""
from __future__ import annotations

import numpy as np

from .implicit import leader_gradients
from .kernel import kernel_of
from .oracle import EquilibriumOracle


def check_gradient(game, leader_values=None, *, seed: int = 0, step: float = 1e-5,
                   max_coordinates: int = 400, tol: float = 1e-12) -> dict:
    """Compare the implicit gradient of the leader's objective and constraints with finite differences.

    The leader strategy is ``leader_values`` or, by default, a seeded random point
    in the leader's bounds (within one unit of the lower bound where bounds are
    infinite). Each coordinate (or, beyond ``max_coordinates``, as many seeded
    random directions) is perturbed by ``+-step`` and the equilibrium re-solved to
    ``tol`` from the base equilibrium. Returns ``max_relative_error`` (over outputs,
    the largest absolute difference divided by the largest finite-difference
    entry), the two gradients and the equilibrium residual.
    """
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step!r}")
    k = kernel_of(game)
    rng = np.random.default_rng(seed)
    if leader_values is None:
        lo = np.where(np.isfinite(k.p_lb), k.p_lb, np.minimum(k.p_ub, 0.0) - 1.0)
        hi = np.where(np.isfinite(k.p_ub), k.p_ub, lo + 1.0)
        hi = np.minimum(hi, lo + 1.0)
        p = lo + (hi - lo) * rng.random(k.n_p)
    else:
        p = k.check_leader(leader_values)
    oracle = EquilibriumOracle(k, tol=tol)
    eq = oracle.solve(p, rng=rng)
    if not eq.converged:
        raise RuntimeError(f"the equilibrium oracle did not converge at the check point "
                           f"(residual {eq.residual:.3g})")
    _, _, gobj, gcons = leader_gradients(k, eq)
    implicit = np.vstack([gobj[None, :], gcons])  # (1 + n_c, n_p)
    if k.n_p <= max_coordinates:
        dirs = np.eye(k.n_p)
    else:
        dirs = rng.standard_normal((max_coordinates, k.n_p))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    fd = np.zeros((implicit.shape[0], dirs.shape[0]))
    for j, d in enumerate(dirs):
        vals = []
        for sgn in (1.0, -1.0):
            e = oracle.solve(p + sgn * step * d, warm=eq)
            if not e.converged:
                raise RuntimeError(f"the oracle did not converge for a perturbed leader strategy "
                                   f"(residual {e.residual:.3g})")
            obj, cons = k.leader(e.x, e.p)
            vals.append(np.concatenate([[obj], cons]))
        fd[:, j] = (vals[0] - vals[1]) / (2 * step)
    projected = implicit @ dirs.T
    scale = np.maximum(np.max(np.abs(fd), axis=1), 1e-8)
    rel = np.max(np.abs(projected - fd), axis=1) / scale
    return {
        "max_relative_error": float(rel.max()),
        "implicit": projected, "finite_difference": fd,
        "equilibrium_residual": eq.residual,
    }
