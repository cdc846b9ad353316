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
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from pyomo.repn.standard_repn import generate_standard_repn

from .expr import (Parameters, compile_exprs, compile_jacobian, compile_sparse, derivatives,
                   jacobian_entries)


def kernel_of(game) -> "GameKernel":
    """The game's kernel, built on first use and cached on the game."""
    return game.cached("kernel", lambda: GameKernel(game))


@dataclass
class LinearRows:
    """Rows ``M x (= or <=) b(p)`` with ``b(p) = rhs - E p - psi(p)`` and the follower each row belongs to.

    ``M`` (rows by ``n_x``) and ``E`` (rows by ``n_p``) are sparse; ``psi`` is
    the compiled nonlinear part in the leader's variables of the rows listed in
    ``psi_rows`` (``None`` where every row is linear), ``psi_jac`` its sparse
    Jacobian. Nothing here is a dense matrix in ``p``: :meth:`rhs_jvp` and
    :meth:`rhs_vjp` are the products the tangent and the adjoint need.
    """

    M: sp.csr_matrix
    E: sp.csr_matrix
    rhs: np.ndarray
    owner: np.ndarray
    names: list
    psi: object = None
    psi_jac: object = None
    psi_rows: np.ndarray = None

    @property
    def n_rows(self) -> int:
        return self.M.shape[0]

    @property
    def depends_on_p(self) -> bool:
        """Whether any right-hand side depends on the leader's variables."""
        return self.E.nnz > 0 or self.psi is not None

    def rhs_at(self, p: np.ndarray) -> np.ndarray:
        """``b(p)``."""
        out = self.rhs - self.E @ p if self.E.nnz else self.rhs.copy()
        if self.psi is not None:
            out[self.psi_rows] -= self.psi(p)
        return out

    def rhs_jacobian(self, p: np.ndarray) -> sp.csr_matrix:
        """``db/dp`` as a sparse matrix (rows by ``n_p``)."""
        out = -self.E
        if self.psi is not None:
            j = self.psi_jac
            out = out - sp.csr_matrix((j(p), (self.psi_rows[j.rows], j.cols)), shape=self.E.shape)
        return sp.csr_matrix(out)

    def rhs_jvp(self, p: np.ndarray, dp: np.ndarray) -> np.ndarray:
        """``(db/dp) dp``; ``dp`` of shape ``(n_p,)`` or ``(n_p, r)``."""
        if not self.depends_on_p:
            return np.zeros((self.n_rows,) + np.shape(dp)[1:])
        return self.rhs_jacobian(p) @ dp

    def rhs_vjp(self, p: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``(db/dp)^T u``; ``u`` of shape ``(rows,)`` or ``(rows, r)``."""
        if not self.depends_on_p:
            return np.zeros((self.E.shape[1],) + np.shape(u)[1:])
        return self.rhs_jacobian(p).T @ u


class GameKernel:
    """Compiled evaluators and linear data of a :class:`~stackopt.game.StackelbergGame`."""

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
        self.slices, start = [], 0
        owner = []
        for k, f in enumerate(s.followers):
            self.slices.append(slice(start, start + len(f.variables)))
            owner += [k] * len(f.variables)
            start += len(f.variables)
        self.x_owner = np.array(owner, dtype=np.intp)

        # follower objectives (minimisation form) and their gradients F
        self.sense = np.array([f.sense for f in s.followers], dtype=float)
        # mutable Params and fixed variables: inputs of every program, read at call time
        self.parameters = par = Parameters(grow=True)
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

        # leader objective and constraints (body <= 0), values and derivatives in one program
        self.leader_sense = int(s.leader_sense)
        self.constraint_names = [c.name for c in s.leader_constraints]
        self.n_c = len(s.leader_constraints)
        lexprs = [s.leader_objective] + [c.body for c in s.leader_constraints]
        n_l = len(lexprs)
        entries = [(i, i, e) for i, e in enumerate(lexprs)]  # values first (column = row)
        entries += [(i, n_l + j, d) for i, j, d in jacobian_entries(lexprs, allv)]
        self._L = compile_sparse(entries, allv, (n_l, n_l + self.n_x + self.n_p), par)
        self._n_l = n_l
        val_mask = self._L.cols < n_l
        self._L_val_rows = self._L.rows[val_mask]
        self._L_nval = int(val_mask.sum())
        assert np.all(val_mask[: self._L_nval])
        jc = self._L.cols[self._L_nval:] - n_l
        jr = self._L.rows[self._L_nval:]
        self._Lx = jc < self.n_x
        self._Lx_flat = jr[self._Lx] * self.n_x + jc[self._Lx]
        self.Lp_rows, self.Lp_cols = jr[~self._Lx], jc[~self._Lx] - self.n_x
        self.refresh()

    # ----------------------------------------------------------- linear data
    def refresh(self) -> None:
        """Read the model's values again: variable bounds and initial values, and the
        followers' linear rows (coefficients and right-hand sides, which may hold
        mutable Params). Compiled programs read their Params at every call.
        ``data_key`` changes whenever any of these values (or a Param's) does."""
        s, xv, pv = self.structure, self.x_vars, self.p_vars
        self.x_lb, self.x_ub = _bounds(xv)
        self.p_lb, self.p_ub = _bounds(pv)
        self.x0 = np.clip(_values(xv), self.x_lb, self.x_ub)
        self.p0 = np.clip(_values(pv), self.p_lb, self.p_ub)
        self.eq, self.ineq = self._linear_rows(s, xv, pv)
        params = self.parameters.values()
        digest = hashlib.sha1()
        for a in (self.x_lb, self.x_ub, self.p_lb, self.p_ub, self.x0, self.p0, params,
                  self.eq.M.data, self.eq.E.data, self.eq.rhs, self.ineq.M.data, self.ineq.E.data,
                  self.ineq.rhs):
            digest.update(np.ascontiguousarray(a, dtype=float).tobytes())
        self.data_key = digest.hexdigest()

    def _linear_rows(self, s, xv, pv):
        """Every follower constraint as ``M x + E p + psi(p) + const (= or <=) bound``.

        :meth:`StackelbergGame.structure` checked that the only nonlinear part of
        a constraint is in the leader's variables; it becomes ``psi``.
        """
        xpos = {id(v): i for i, v in enumerate(xv)}
        ppos = {id(v): i for i, v in enumerate(pv)}
        rows = {"eq": [], "ineq": []}
        for k, f in enumerate(s.followers):
            for c in f.constraints:
                repn = generate_standard_repn(c.body, compute_values=True, quadratic=False)
                mx, mp = {}, {}
                const = float(repn.constant)
                for v, coef in zip(repn.linear_vars, repn.linear_coefs):
                    if v.fixed:
                        const += coef * v.value
                    elif id(v) in xpos:
                        mx[xpos[id(v)]] = mx.get(xpos[id(v)], 0.0) + coef
                    else:
                        mp[ppos[id(v)]] = mp.get(ppos[id(v)], 0.0) + coef
                nl = repn.nonlinear_expr
                bad = [a for a in [const, c.lb, c.ub, *mx.values(), *mp.values()]
                       if a is not None and not np.isfinite(float(a))]
                if bad:
                    raise ValueError(f"constraint {c.name!r} of follower {f.name!r} has the "
                                     f"coefficient or bound {float(bad[0])!r}; expected finite numbers")
                if c.equality:
                    rows["eq"].append((mx, mp, float(c.ub) - const, k, c.name, nl, 1.0))
                    continue
                if c.ub is not None:
                    rows["ineq"].append((mx, mp, float(c.ub) - const, k, c.name, nl, 1.0))
                if c.lb is not None:
                    rows["ineq"].append(({j: -a for j, a in mx.items()}, {j: -a for j, a in mp.items()},
                                         const - float(c.lb), k, c.name + " (lower)", nl, -1.0))
        return tuple(_stack(rows[key], len(xv), pv) for key in ("eq", "ineq"))

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

    def leader_all(self, x, p):
        """Objective (leader's own sense), constraint bodies (<= 0 feasible), and their
        derivatives: dense in ``x`` (``1 + n_c`` by ``n_x``) and nonzeros in ``p`` at
        ``(Lp_rows, Lp_cols)``."""
        vals = self._L(self.allv(x, p))
        v = np.zeros(self._n_l)
        v[self._L_val_rows] = vals[: self._L_nval]
        jac = vals[self._L_nval:]
        jx = np.zeros(self._n_l * self.n_x)
        jx[self._Lx_flat] = jac[self._Lx]
        return float(v[0]), v[1:], jx.reshape(self._n_l, self.n_x), jac[~self._Lx]

    def leader(self, x, p):
        """``(objective, constraint bodies)``."""
        obj, cons, _, _ = self.leader_all(x, p)
        return obj, cons

    def leader_jacobian(self, x, p):
        """Dense Jacobians of ``[objective, constraints...]`` in ``x`` and in ``p``."""
        _, _, jx, jp = self.leader_all(x, p)
        out = np.zeros((self._n_l, self.n_p))
        np.add.at(out, (self.Lp_rows, self.Lp_cols), jp)
        return jx, out

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


def _stack(rows, n_x, pv) -> LinearRows:
    n_p = len(pv)
    n = len(rows)

    def sparse(col):
        r = [i for i, row in enumerate(rows) for _ in row[col]]
        c = [j for row in rows for j in row[col]]
        v = [a for row in rows for a in row[col].values()]
        return sp.csr_matrix((v, (r, c)), shape=(n, n_x if col == 0 else n_p))

    out = LinearRows(M=sparse(0), E=sparse(1), rhs=np.array([r[2] for r in rows], dtype=float),
                     owner=np.array([r[3] for r in rows], dtype=np.intp), names=[r[4] for r in rows])
    nl = [i for i, r in enumerate(rows) if r[5] is not None]
    if nl:  # nonlinear in the leader's variables: compiled over them alone
        exprs = [rows[i][6] * rows[i][5] for i in nl]
        out.psi = compile_exprs(exprs, pv)
        out.psi_jac = compile_jacobian(exprs, pv)
        out.psi_rows = np.array(nl, dtype=np.intp)
    return out
