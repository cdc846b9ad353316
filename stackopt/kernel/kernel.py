"""The numeric form of a game, prepared once from its Pyomo expressions.

``x`` stacks every follower's variables (follower by follower), ``p`` the
leader's. The followers' problems become

    follower i:  min_{x_i} f_i(x, p)  s.t.  A_i x_i = b_i(p),  G_i x_i <= h_i(p),
                 lb_i <= x_i <= ub_i

(objectives in minimisation form whatever the user's sense): the *linear rows*
are linear in the follower's own variables with constant coefficients, and their
right-hand sides are smooth functions of the leader's variables,
``b(p) = rhs - E p - psi(p)`` with ``E`` the linear part and ``psi`` a compiled
nonlinear part (present only where a constraint is nonlinear in the leader's
variables). Every other follower constraint and every shared constraint is a
*smooth row* ``c_r(x, p) (<= or =) 0`` of :mod:`stackopt.kernel.smooth_rows`
(``kernel.smooth``, ``None`` where there are none), with multipliers per follower
or shared as the game's concept says. The followers' stacked KKT conditions are
the residual of :mod:`stackopt.oracle.residual`, with ``F`` the stacked gradients
``grad_{x_i} f_i``.
"""
from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp
from pyomo.common.gc_manager import PauseGC

from stackopt.expr import (
    LOOP_MIN_TERMS,
    Parameters,
    compile_exprs,
    compile_sparse,
    derivatives,
    jacobian_entries,
    warm,
)
from stackopt.game.convexity import constraint_conditions, convexity_conditions

from .batch import BatchEvaluators
from .leader import LeaderEvaluators
from .rows import CompiledRows
from .smooth_rows import smooth_rows


def kernel_of(game) -> GameKernel:
    """The game's kernel, built on first use and cached on the game."""
    return game.cached("kernel", lambda: _prepare(game))


def _prepare(game) -> GameKernel:
    # the derivatives are many short-lived Pyomo objects: the cyclic collector's passes over
    # them cost a third of preparing a security game, and find nothing to free
    with PauseGC():
        return GameKernel(game)


class GameKernel:
    """Compiled evaluators and linear data of a :class:`~stackopt.game.StackelbergGame`
    (the leader's evaluators are a :class:`~stackopt.kernel.leader.LeaderEvaluators`, the
    batched ones a :class:`~stackopt.kernel.batch.BatchEvaluators`, both built from the
    kernel's programs; the followers' linear rows come from :class:`stackopt.kernel.rows.CompiledRows`)."""

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
        self.batch = BatchEvaluators(self._F, self._fobj, self._Jxp, self.sense, self.x_sense,
                                     self._Jx_sign, self.slices, self.x_owner)
        self.smooth = smooth_rows(s, xv, pv, self.x_owner, self.parameters)
        self._follower_rows = CompiledRows(s, xv, pv, self.parameters)
        # the followers' parameters come first: those the leader's programs add follow them
        self._follower_parameters = len(self.parameters.items)
        self.leader_side = ls = LeaderEvaluators(s, allv, self.n_x, self.n_p, self.parameters)
        self.leader_sense, self.constraint_names, self.n_c = ls.leader_sense, ls.constraint_names, ls.n_c
        self.Lp_rows, self.Lp_cols = ls.Lp_rows, ls.Lp_cols
        self._prove_convexity(s)
        self.uses_loops = False
        self._use_loops()
        self.refresh()

    def _programs(self) -> list:
        return [self._F, self._fobj, self._Jxp.program, self._Jpp.program, *self.leader_side.programs()]

    def _use_loops(self) -> None:
        """A large game (its followers' and leader's per-step programs hold
        :data:`~stackopt.expr.LOOP_MIN_TERMS` terms or more, a security game of 100 targets
        about 160 000) evaluates them at one point as compiled loops
        (:mod:`stackopt.expr.loops`: the same values, about half the time of the NumPy
        passes); a small one leaves Numba unimported: loading the loops costs a process
        about half a second, more than a small game's solve gains (:meth:`compile_loops`
        turns them on where the process pays that once for many solves)."""
        if sum(p.n_terms for p in self._programs()) >= LOOP_MIN_TERMS:
            self.compile_loops()

    def compile_loops(self) -> bool:
        """Evaluate this game's programs as compiled loops from now on, whatever its size
        (the same values to the last bit, :mod:`stackopt.expr.loops`): for a process that
        solves many games, which loads the loops once (a comparison's workers do): there a
        cyber-insurance `gradient` solve took 0.70-0.83 of its time on NumPy, the NFG's
        0.93-0.94. Call it before the game's first solve. Returns :attr:`uses_loops`: False
        where Numba is not installed."""
        if not self.uses_loops and all([p.use_loops() for p in self._programs()]):
            warm()  # compiled (or loaded from Numba's cache) now, not in a solve's first steps
            self.uses_loops = True
        return self.uses_loops

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
        # every entry, row by row (a security game's dF/dx): the values are the matrix as they are
        self._Jx_full = bool(np.array_equal(self._Jx_flat, np.arange(self.n_x * self.n_x)))
        self.Jp_rows, self.Jp_cols = self._Jpp.rows, self._Jpp.cols
        self._Jp_sign = self.x_sense[self.Jp_rows]

    def _prove_convexity(self, s) -> None:
        """Per follower, the structural proofs that its objective and each smooth constraint
        binding it are convex in its own variables (:mod:`stackopt.game.convexity`; linear rows
        always are): ``None`` where there is none, else the positions in ``x`` of the
        variables whose lower bounds the proof needs non-negative (see
        :meth:`nonconvex_followers`; the leader's variables after ``x``, at ``n_x + j``)."""
        index = {id(v): j for j, v in enumerate(self.x_vars)}
        index.update({id(v): self.n_x + j for j, v in enumerate(self.p_vars)})

        def positions(needs):
            return None if needs is None else np.array([index[id(v)] for v in needs], dtype=np.intp)

        self._convexity = []  # per follower: (objective's proof, [(constraint name, its proof)])
        for i, f in enumerate(s.followers):
            sides = self.smooth.constraints_of(i) if self.smooth is not None else []
            self._convexity.append((
                positions(convexity_conditions(f.objective, f.variables, f.sense)),
                [(c.name, positions(constraint_conditions(c, side, f.variables))) for c, side in sides]))

    def _holds(self, needs) -> bool:
        return needs is not None and bool(np.all(np.concatenate([self.x_lb, self.p_lb])[needs] >= 0))

    def nonconvex_followers(self) -> dict[str, str]:
        """The followers whose objective or set is not provably convex in their own variables
        at the current bounds, and why (the proofs are the prepared game's; bounds are values)."""
        out = {}
        for name, (objective, constraints) in zip(self.follower_names, self._convexity):
            why = []
            if not self._holds(objective):
                why.append("its objective is not provably convex in its own variables")
            bad = sorted({c for c, needs in constraints if not self._holds(needs)})
            if bad:
                why.append(f"its set is not provably convex in its own variables ({', '.join(bad)})")
            if why:
                out[name] = "; ".join(why)
        return out

    def convex_followers(self) -> list[bool]:
        """Whether each follower's objective and set are provably convex in its own variables,
        at the current bounds."""
        searched = self.nonconvex_followers()
        return [name not in searched for name in self.follower_names]

    # ----------------------------------------------------------- linear data
    def refresh(self) -> None:
        """Read the model's values again: variable bounds and initial values, and the
        followers' linear rows (coefficients and right-hand sides, which may hold
        mutable Params). Compiled programs read their Params at every call.
        ``data_key`` changes whenever any of these values (or a Param's) does;
        ``follower_key`` whenever one that the followers' game at a given leader strategy
        depends on does (all but the Params of the leader's functions alone)."""
        xv, pv = self.x_vars, self.p_vars
        self.x_lb, self.x_ub = _bounds(xv)
        self.p_lb, self.p_ub = _bounds(pv)
        self.x0 = np.clip(_values(xv), self.x_lb, self.x_ub)
        self.p0 = np.clip(_values(pv), self.p_lb, self.p_ub)
        self.eq, self.ineq = self._follower_rows.read()
        if self.smooth is not None:
            self.smooth.refresh()
        params = self.parameters.values()
        digest = hashlib.sha1()
        for a in (self.x_lb, self.x_ub, self.p_lb, self.p_ub, self.x0, self.p0,
                  params[:self._follower_parameters], self.eq.M.data, self.eq.E.data, self.eq.rhs,
                  self.ineq.M.data, self.ineq.E.data, self.ineq.rhs):
            digest.update(np.ascontiguousarray(a, dtype=float).tobytes())
        if self.smooth is not None:
            digest.update(np.ascontiguousarray(self.smooth.bound, dtype=float).tobytes())
        self.follower_key = digest.hexdigest()
        digest.update(np.ascontiguousarray(params[self._follower_parameters:], dtype=float).tobytes())
        self.data_key = digest.hexdigest()

    @property
    def n_eq(self) -> int:
        """Equality multipliers: the linear equality rows', then the smooth equality slots'."""
        return self.eq.n_rows + (self.smooth.n_eq if self.smooth is not None else 0)

    @property
    def n_ineq(self) -> int:
        """Inequality multipliers: the linear inequality rows', then the smooth inequality slots'."""
        return self.ineq.n_rows + (self.smooth.n_in if self.smooth is not None else 0)

    def constrained(self, i: int) -> bool:
        """Whether follower ``i`` has any constraint besides its bounds."""
        return bool(np.any(self.eq.owner == i) or np.any(self.ineq.owner == i)
                    or (self.smooth is not None and self.smooth.rows_of(i).size))

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
        """Dense ``dF/dx`` (the game Jacobian; not symmetric in general), a new array."""
        vals = self._Jx_sign * self._Jxp(self.allv(x, p))
        if self._Jx_full:  # no zeros to scatter into: the same values, in place already
            return vals.reshape(self.n_x, self.n_x)
        out = np.zeros(self.n_x * self.n_x)
        out[self._Jx_flat] = vals  # entries are unique
        return out.reshape(self.n_x, self.n_x)

    def Jx_points(self, X, p) -> np.ndarray:
        """:meth:`Jx` at each row of ``X`` (a few points at one ``p``): shape ``(rows, n_x,
        n_x)``, each the values :meth:`Jx` gives there to the last bit, the compiled terms read
        once for all rows on a game of compiled loops (:meth:`Program.at_points`)."""
        V = self._points(X, p)
        m = V.shape[1]
        vals = np.multiply(self._Jxp.at_points(V).T, self._Jx_sign, order="C")  # (rows, nonzeros)
        if self._Jx_full:
            return vals.reshape(m, self.n_x, self.n_x)
        out = np.zeros((m, self.n_x * self.n_x))
        out[:, self._Jx_flat] = vals
        return out.reshape(m, self.n_x, self.n_x)

    def _points(self, X, p) -> np.ndarray:
        """The programs' inputs at each row of ``X`` and one ``p``: a column per row."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        p = np.asarray(p, dtype=float)
        return np.concatenate([X.T, np.broadcast_to(p[:, None], (self.n_p, X.shape[0]))])

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
        return np.bincount(self.Jp_rows, weights=data * dp.take(self.Jp_cols),
                           minlength=self.n_x).astype(float, copy=False)

    def Jp_values(self, x, p) -> np.ndarray:
        """Nonzeros of ``dF/dp`` at ``(Jp_rows, Jp_cols)``."""
        return self._Jp_sign * self._Jpp(self.allv(x, p))

    def Jp_points(self, X, p) -> np.ndarray:
        """:meth:`Jp_values` at each row of ``X`` and one ``p`` (a row each), the one-point
        values to the last bit (:meth:`Jx_points`)."""
        return np.multiply(self._Jpp.at_points(self._points(X, p)).T, self._Jp_sign, order="C")

    def Jp_T_dot(self, data: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``(dF/dp)^T u`` from the nonzeros ``data`` of :meth:`jacobians`."""
        # float even when dF/dp has no nonzeros (bincount of nothing is integer)
        return np.bincount(self.Jp_cols, weights=data * u.take(self.Jp_rows),
                           minlength=self.n_p).astype(float, copy=False)

    def follower_objectives(self, x, p) -> np.ndarray:
        """Each follower's objective in minimisation form."""
        return self.sense * self._fobj(self.allv(x, p))

    def eq_rhs(self, p):
        """``b(p)`` of the equality rows."""
        return self.eq.rhs_at(p)

    def ineq_rhs(self, p):
        """``h(p)`` of the inequality rows."""
        return self.ineq.rhs_at(p)

    # ------------------------------------------ the leader's side (LeaderEvaluators)
    def leader_all(self, x, p):
        """Objective (leader's own sense), constraint bodies (<= 0 feasible), and their
        derivatives: dense in ``x`` (``1 + n_c`` by ``n_x``) and nonzeros in ``p`` at
        ``(Lp_rows, Lp_cols)``."""
        return self.leader_side.leader_all(x, p)

    def leader(self, x, p):
        """``(objective, constraint bodies)``."""
        return self.leader_side.leader(x, p)

    def leader_jacobian(self, x, p):
        """Dense Jacobians of ``[objective, constraints...]`` in ``x`` and in ``p``."""
        return self.leader_side.leader_jacobian(x, p)

    def undefined(self, objective, constraints) -> str:
        """"" where the leader's values are finite numbers; else a clause naming those that
        are not (:meth:`LeaderEvaluators.undefined`)."""
        return self.leader_side.undefined(objective, constraints)

    def leader_linear_rows(self):
        """``(rows, A, b)``: the leader's constraints linear in its own variables alone, as
        ``A p <= b`` at the current Params (:meth:`LeaderEvaluators.leader_linear_rows`)."""
        return self.leader_side.leader_linear_rows()

    # ---------------------------------- many follower points at once (BatchEvaluators)
    def F_batch(self, X, p) -> np.ndarray:
        """:meth:`F` at every row of ``X``: shape ``(rows, n_x)``."""
        return self.batch.F_batch(X, p)

    def follower_objectives_batch(self, X, p) -> np.ndarray:
        """:meth:`follower_objectives` at every row of ``X``: shape ``(rows, followers)``."""
        return self.batch.follower_objectives_batch(X, p)

    def Jx_batch(self, X, p) -> np.ndarray:
        """The nonzeros of :meth:`Jx` (at ``(Jx_rows, Jx_cols)``) at every row of ``X``."""
        return self.batch.Jx_batch(X, p)

    @property
    def Jx_rows(self) -> np.ndarray:
        return self.batch.Jx_rows

    @property
    def Jx_cols(self) -> np.ndarray:
        return self.batch.Jx_cols

    @property
    def Jx_own_entries(self) -> list[np.ndarray]:
        """Per follower, the positions among ``(Jx_rows, Jx_cols)`` of its own block of ``dF/dx``."""
        return self.batch.Jx_own_entries

    def F_own(self, X, p, owner) -> np.ndarray:
        """:meth:`F_batch` where row ``b`` needs follower ``owner[b]``'s block only (``nan`` elsewhere)."""
        return self.batch.F_own(X, p, owner)

    def follower_objective_own(self, X, p, owner) -> np.ndarray:
        """Follower ``owner[b]``'s objective at row ``b`` of ``X``: shape ``(rows,)``."""
        return self.batch.follower_objective_own(X, p, owner)

    def Jx_own(self, X, p, owner) -> np.ndarray:
        """:meth:`Jx_batch` where row ``b`` needs follower ``owner[b]``'s own block only."""
        return self.batch.Jx_own(X, p, owner)

    # --------------------------------------------------------------- helpers
    def project_leader(self, p: np.ndarray) -> np.ndarray:
        return np.clip(p, self.p_lb, self.p_ub)

    def leader_values(self, p) -> dict:
        return dict(zip(self.p_names, map(float, p)))

    def follower_values(self, x) -> dict:
        return dict(zip(self.x_names, map(float, x)))

    def check_leader(self, p) -> np.ndarray:
        """The leader's values as an array in structure order: ``p`` an array (or sequence) in
        that order, or a dict by Pyomo name as ``Result.leader_values`` gives them."""
        if isinstance(p, dict):
            unknown = [k for k in p if k not in self.p_names]
            missing = [k for k in self.p_names if k not in p]
            if unknown or missing:
                raise ValueError(
                    "leader values by name must give each of the leader's (unfixed) variables "
                    f"{self.p_names}" + (f"; unknown: {unknown}" if unknown else "")
                    + (f"; missing: {missing}" if missing else ""))
            p = [p[k] for k in self.p_names]
        try:
            p = np.asarray(p, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"leader values must be numbers, got {p!r}") from None
        if p.shape != (self.n_p,):
            raise ValueError(f"leader values must have shape ({self.n_p},), got {p.shape}")
        if not np.isfinite(p).all():
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
