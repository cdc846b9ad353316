"""The numeric form of a game, prepared once from its Pyomo expressions.

``x`` stacks every follower's variables (follower by follower), ``p`` the
leader's. The followers' problems become

    follower i:  min_{x_i} f_i(x, p)  s.t.  A_i x_i = b_i(p),  G_i x_i <= h_i(p),
                 lb_i <= x_i <= ub_i

(objectives in minimisation form whatever the user's sense): constraints are
linear in the follower's own variables with constant coefficients, and their
right-hand sides are smooth functions of the leader's variables,
``b(p) = rhs - E p - psi(p)`` with ``E`` the linear part and ``psi`` a compiled
nonlinear part (present only where a constraint is nonlinear in the leader's
variables). The followers' stacked KKT conditions are the residual of
:mod:`stackopt.residual`, with ``F`` the stacked gradients ``grad_{x_i} f_i``.
"""
from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp
from pyomo.common.gc_manager import PauseGC

from .convexity import convexity_conditions
from .expr import Parameters, compile_exprs, compile_sparse, derivatives, jacobian_entries
from .kernel_batch import BatchEvaluators
from .kernel_leader import LeaderEvaluators
from .rows import CompiledRows, LinearRows  # noqa: F401  (LinearRows: re-exported)


def kernel_of(game) -> "GameKernel":
    """The game's kernel, built on first use and cached on the game."""
    return game.cached("kernel", lambda: _prepare(game))


def _prepare(game) -> "GameKernel":
    # the derivatives are many short-lived Pyomo objects: the cyclic collector's passes over
    # them cost a third of preparing a security game, and find nothing to free
    with PauseGC():
        return GameKernel(game)


class GameKernel(LeaderEvaluators, BatchEvaluators):
    """Compiled evaluators and linear data of a :class:`~stackopt.game.StackelbergGame`
    (the leader's evaluators come from :class:`~stackopt.kernel_leader.LeaderEvaluators`,
    the followers' linear rows from :class:`stackopt.rows.CompiledRows`)."""

    def __init__(self, game):
        s = game.structure()
        self.structure = s
        self.game_name = game.name
        self.dynamics = game.dynamics
        xv = list(s.follower_variables)
        pv = list(s.leader_variables)
        self.x_vars, self.p_vars = xv, pv
        allv = xv + pv
        self.n_x, self.n_p = len(xv), len(pv)
        self.x_names = [v.name for v in xv]
        self.p_names = [v.name for v in pv]
        self.follower_names = [f.name for f in s.followers]
        self._index_followers(s)
        # mutable Params and fixed variables: inputs of every program, read at call time
        self.parameters = Parameters(grow=True)
        self._compile_followers(s, allv)
        self._compile_leader(s, allv)
        self._follower_rows = CompiledRows(s, xv, pv, self.parameters)
        self._prove_convexity(s)
        self.refresh()

    def _index_followers(self, s) -> None:
        """Each follower's slice of ``x`` and the follower owning each entry of ``x``."""
        self.slices, start = [], 0
        owner = []
        for k, f in enumerate(s.followers):
            self.slices.append(slice(start, start + len(f.variables)))
            owner += [k] * len(f.variables)
            start += len(f.variables)
        self.x_owner = np.array(owner, dtype=np.intp)

    def _compile_followers(self, s, allv) -> None:
        """Follower objectives (minimisation form), their gradients ``F`` and its Jacobians."""
        par = self.parameters
        self.sense = np.array([f.sense for f in s.followers], dtype=float)
        self._fobj = compile_exprs([f.objective for f in s.followers], allv, par)
        grad_exprs = []
        for f in s.followers:
            d = derivatives(f.objective, f.variables)
            grad_exprs += [d.get(j, 0.0) for j in range(len(f.variables))]
        self.x_sense = self.sense[self.x_owner]
        self._F = compile_exprs(grad_exprs, allv, par)
        jx, jp = [], []
        for i, j, d in jacobian_entries(grad_exprs, allv):
            (jx if j < self.n_x else jp).append((i, j, d))
        # dF/dx (every Newton step) and dF/dp (once per gradient step) as separate programs
        self._Jxp = compile_sparse(jx, allv, (self.n_x, self.n_x), par)
        self._Jpp = compile_sparse([(i, j - self.n_x, d) for i, j, d in jp], allv,
                                   (self.n_x, self.n_p), par)
        self._Jx_flat = self._Jxp.rows * self.n_x + self._Jxp.cols
        self._Jx_sign = self.x_sense[self._Jxp.rows]
        self.Jp_rows, self.Jp_cols = self._Jpp.rows, self._Jpp.cols
        self._Jp_sign = self.x_sense[self.Jp_rows]

    def _prove_convexity(self, s) -> None:
        """Per follower, the structural proof that its objective is convex in its own
        variables (:mod:`stackopt.convexity`): ``None``, or the positions in ``x`` of the
        variables whose lower bounds it needs non-negative (see :meth:`convex_followers`)."""
        index = {id(v): j for j, v in enumerate(self.x_vars)}
        self._convex_needs = []
        for f in s.followers:
            needs = convexity_conditions(f.objective, f.variables, f.sense)
            self._convex_needs.append(
                None if needs is None else np.array([index[id(v)] for v in needs], dtype=np.intp))

    def convex_followers(self) -> list[bool]:
        """Whether each follower's objective is provably convex in its own variables, at the
        current bounds (the proof is the prepared game's; bounds are values)."""
        return [n is not None and bool(np.all(self.x_lb[n] >= 0)) for n in self._convex_needs]

    # ----------------------------------------------------------- linear data
    def refresh(self) -> None:
        """Read the model's values again: variable bounds and initial values, and the
        followers' linear rows (coefficients and right-hand sides, which may hold
        mutable Params). Compiled programs read their Params at every call.
        ``data_key`` changes whenever any of these values (or a Param's) does."""
        xv, pv = self.x_vars, self.p_vars
        self.x_lb, self.x_ub = _bounds(xv)
        self.p_lb, self.p_ub = _bounds(pv)
        self.x0 = np.clip(_values(xv), self.x_lb, self.x_ub)
        self.p0 = np.clip(_values(pv), self.p_lb, self.p_ub)
        self.eq, self.ineq = self._follower_rows.read()
        params = self.parameters.values()
        digest = hashlib.sha1()
        for a in (self.x_lb, self.x_ub, self.p_lb, self.p_ub, self.x0, self.p0, params,
                  self.eq.M.data, self.eq.E.data, self.eq.rhs, self.ineq.M.data, self.ineq.E.data,
                  self.ineq.rhs):
            digest.update(np.ascontiguousarray(a, dtype=float).tobytes())
        self.data_key = digest.hexdigest()

    # ------------------------------------------------------------ evaluators
    def allv(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.concatenate([x, p])

    def F(self, x, p) -> np.ndarray:
        """Stacked follower gradients in minimisation form."""
        return self.x_sense * self._F(self.allv(x, p))

    def jacobians(self, x, p):
        """``(dF/dx dense, dF/dp nonzeros)``; the nonzeros sit at ``(Jp_rows, Jp_cols)``."""
        return self.Jx(x, p), self.Jp_values(x, p)

    def Jx(self, x, p) -> np.ndarray:
        """Dense ``dF/dx`` (the game Jacobian; not symmetric in general)."""
        out = np.zeros(self.n_x * self.n_x)
        out[self._Jx_flat] = self._Jx_sign * self._Jxp(self.allv(x, p))  # entries are unique
        return out.reshape(self.n_x, self.n_x)

    def Jx_sparse(self, x, p) -> sp.csr_matrix:
        """Sparse ``dF/dx``, the same values as :meth:`Jx`."""
        vals = self._Jx_sign * self._Jxp(self.allv(x, p))
        return sp.csr_matrix((vals, (self._Jxp.rows, self._Jxp.cols)), shape=(self.n_x, self.n_x))

    @property
    def Jx_nnz(self) -> int:
        """Structural nonzeros of ``dF/dx``."""
        return int(self._Jxp.rows.size)

    def Jp_dot(self, data: np.ndarray, dp: np.ndarray) -> np.ndarray:
        """``(dF/dp) dp`` from the nonzeros ``data`` of :meth:`Jp_values`."""
        return np.bincount(self.Jp_rows, weights=data * dp[self.Jp_cols], minlength=self.n_x).astype(float)

    def Jp_values(self, x, p) -> np.ndarray:
        """Nonzeros of ``dF/dp`` at ``(Jp_rows, Jp_cols)``."""
        return self._Jp_sign * self._Jpp(self.allv(x, p))

    def Jp_T_dot(self, data: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``(dF/dp)^T u`` from the nonzeros ``data`` of :meth:`jacobians`."""
        # float even when dF/dp has no nonzeros (bincount of nothing is integer)
        return np.bincount(self.Jp_cols, weights=data * u[self.Jp_rows], minlength=self.n_p).astype(float)

    def follower_objectives(self, x, p) -> np.ndarray:
        """Each follower's objective in minimisation form."""
        return self.sense * self._fobj(self.allv(x, p))

    def eq_rhs(self, p):
        """``b(p)`` of the equality rows."""
        return self.eq.rhs_at(p)

    def ineq_rhs(self, p):
        """``h(p)`` of the inequality rows."""
        return self.ineq.rhs_at(p)

    # --------------------------------------------------------------- helpers
    def project_leader(self, p: np.ndarray) -> np.ndarray:
        return np.clip(p, self.p_lb, self.p_ub)

    def leader_values(self, p) -> dict:
        return dict(zip(self.p_names, map(float, p)))

    def follower_values(self, x) -> dict:
        return dict(zip(self.x_names, map(float, x)))

    def check_leader(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if p.shape != (self.n_p,):
            raise ValueError(f"leader values must have shape ({self.n_p},), got {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError("leader values must be finite")
        return p


def _bounds(vs):
    lb = np.array([-np.inf if v.lb is None else float(v.lb) for v in vs])
    ub = np.array([np.inf if v.ub is None else float(v.ub) for v in vs])
    nan = np.nonzero(np.isnan(lb) | np.isnan(ub))[0]
    if nan.size:
        v = vs[nan[0]]
        raise ValueError(f"variable {v.name!r} has the bounds ({v.lb}, {v.ub}); expected numbers "
                         "or None")
    bad = np.nonzero(lb > ub)[0]
    if bad.size:
        v = vs[bad[0]]
        raise ValueError(f"variable {v.name!r} has lower bound {v.lb} above its upper bound {v.ub}")
    return lb, ub


def _values(vs):
    out = np.array([0.0 if v.value is None else float(v.value) for v in vs])
    bad = np.nonzero(~np.isfinite(out))[0]
    if bad.size:
        raise ValueError(f"variable {vs[bad[0]].name!r} has the value {vs[bad[0]].value!r}; "
                         "expected a finite initial value or None")
    return out
