"""Checking the implicit gradient against central finite differences of re-solved equilibria."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stackopt.core.blas import blas_threads as blas_scope
from stackopt.core.blas import check_threads
from stackopt.kernel import kernel_of
from stackopt.oracle import EquilibriumOracle, leader_gradients, sensitivity


@dataclass(frozen=True, repr=False)
class GradientCheck:
    """What :func:`check_gradient` found, one row per output.

    ``rows`` names the outputs: ``"objective"`` (the leader's), then each leader
    constraint by name. ``columns`` names the directions: the leader's variables
    (by Pyomo name), or ``"direction k"`` for seeded random unit directions.
    ``implicit`` and ``finite_difference`` are the two directional derivatives
    (rows x columns); ``relative_errors`` per row is the largest absolute
    difference divided by the row's largest finite-difference entry.
    """

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    implicit: np.ndarray
    finite_difference: np.ndarray
    relative_errors: np.ndarray
    equilibrium_residual: float

    @property
    def max_relative_error(self) -> float:
        """The worst row's relative error."""
        return float(self.relative_errors.max())

    @property
    def worst(self) -> str:
        """The name of the row with the largest relative error."""
        return self.rows[int(np.argmax(self.relative_errors))]

    def row(self, name: str) -> dict:
        """One output's two gradients and relative error, by row name."""
        if name not in self.rows:
            raise ValueError(f"unknown row {name!r}; rows are {list(self.rows)}")
        i = self.rows.index(name)
        return {"implicit": self.implicit[i], "finite_difference": self.finite_difference[i],
                "relative_error": float(self.relative_errors[i])}

    def to_dict(self) -> dict:
        """Plain lists and numbers, for JSON."""
        return {"max_relative_error": self.max_relative_error, "worst": self.worst,
                "equilibrium_residual": float(self.equilibrium_residual),
                "columns": list(self.columns),
                "rows": {n: {k: (v.tolist() if hasattr(v, "tolist") else v)
                             for k, v in self.row(n).items()} for n in self.rows}}

    def __repr__(self) -> str:
        return (f"GradientCheck(max_relative_error={self.max_relative_error:.3g}, "
                f"worst={self.worst!r}, rows={len(self.rows)}, columns={len(self.columns)})")

    def __str__(self) -> str:
        labels = [r if len(r) <= 48 else r[:45] + "..." for r in self.rows]
        width = max(len(r) for r in labels)
        lines = [f"implicit gradient vs central finite differences over {len(self.columns)} "
                 f"directions (equilibrium residual {self.equilibrium_residual:.1e})",
                 f"  {'output':{width}s}  relative error  largest |finite difference|"]
        for i, name in enumerate(labels):
            lines.append(f"  {name:{width}s}  {self.relative_errors[i]:14.3e}  "
                         f"{np.max(np.abs(self.finite_difference[i]), initial=0.0):.3e}")
        lines.append(f"max relative error {self.max_relative_error:.3e} ({self.worst})")
        return "\n".join(lines)


def check_gradient(game, leader_values=None, *, seed: int = 0, step: float = 1e-5,
                   max_coordinates: int = 400, tol: float = 1e-12,
                   blas_threads: int | None = 1) -> GradientCheck:
    """Compare the implicit gradient of the leader's objective and constraints with finite differences.

    The leader strategy is ``leader_values`` or, by default, a seeded random point
    in the leader's bounds (within one unit of the lower bound where bounds are
    infinite). Each coordinate (or, beyond ``max_coordinates``, as many seeded
    random directions) is perturbed by ``+-step`` and the equilibrium re-solved to
    ``tol`` from the base equilibrium. Returns a :class:`GradientCheck`: the two
    gradients by output (objective, then each leader constraint by name) and
    direction, the relative error of each output and the worst one
    (``max_relative_error``), and the equilibrium residual. ``blas_threads`` as for
    :func:`stackopt.solve`.
    """
    with blas_scope(check_threads(blas_threads)):
        return _check_gradient(game, leader_values, seed, step, max_coordinates, tol)


def _check_gradient(game, leader_values, seed, step, max_coordinates, tol) -> GradientCheck:
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step!r}")
    game.refresh()
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
    lin = sensitivity(k, eq)  # one factorisation: the adjoint and every warm start below
    _, _, gobj, gcons = leader_gradients(k, eq, lin=lin)
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
            e = oracle.solve(p + sgn * step * d, warm=eq, linearization=lin)
            if not e.converged:
                raise RuntimeError(f"the oracle did not converge for a perturbed leader strategy "
                                   f"(residual {e.residual:.3g})")
            obj, cons = k.leader(e.x, e.p)
            vals.append(np.concatenate([[obj], cons]))
        fd[:, j] = (vals[0] - vals[1]) / (2 * step)
    projected = implicit @ dirs.T
    scale = np.maximum(np.max(np.abs(fd), axis=1), 1e-8)
    rel = np.max(np.abs(projected - fd), axis=1) / scale
    columns = (tuple(k.p_names) if k.n_p <= max_coordinates
               else tuple(f"direction {j + 1}" for j in range(dirs.shape[0])))
    return GradientCheck(rows=("objective", *k.constraint_names), columns=columns,
                         implicit=projected, finite_difference=fd, relative_errors=rel,
                         equilibrium_residual=float(eq.residual))
