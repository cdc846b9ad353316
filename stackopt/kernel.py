"""The numeric form of a game, prepared once from its Pyomo expressions.

``x`` stacks every follower's variables (follower by follower), ``p`` the
leader's. The followers' problems become

    follower i:  min_{x_i} f_i(x, p)  s.t.  A_i x_i + E_i p = b_i,  G_i x_i + H_i p <= h_i,
                 lb_i <= x_i <= ub_i

(objectives in minimisation form whatever the user's sense), and their
stacked KKT residual is

    F(x, p) + A^T nu + G^T lam + w = 0,  A x + E p = b,
    min(lam, h - H p - G x) = 0,  x - clip(x + w, lb, ub) = 0,

with ``F`` the stacked gradients ``grad_{x_i} f_i`` and ``w`` the bound
multipliers (``w > 0`` at an upper, ``< 0`` at a lower bound). This one
residual serves every game: the oracle drives it to zero and the implicit
gradient differentiates it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyomo.repn.standard_repn import generate_standard_repn

from .expr import Parameters, compile_exprs, compile_sparse, derivatives, jacobian_entries


def kernel_of(game) -> "GameKernel":
    """The game's kernel, built on first use and cached on the game."""
    return game.cached("kernel", lambda: GameKernel(game))


@dataclass
class LinearRows:
    """Rows ``M x + E p (= or <=) rhs`` with the follower each row belongs to."""

    M: np.ndarray
    E: np.ndarray
    rhs: np.ndarray
    owner: np.ndarray
    names: list

    def rhs_at(self, p: np.ndarray) -> np.ndarray:
        return self.rhs - self.E @ p if self.E.size else self.rhs


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
        self.x_lb, self.x_ub = _bounds(xv)
        self.p_lb, self.p_ub = _bounds(pv)
        self.x0 = np.clip(_values(xv), self.x_lb, self.x_ub)
        self.p0 = np.clip(_values(pv), self.p_lb, self.p_ub)
        self.eq, self.ineq = self._linear_rows(s, xv, pv)

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
        self._p_in_eq = bool(np.any(self.eq.E))
        self._p_in_ineq = bool(np.any(self.ineq.E))

    # ----------------------------------------------------------- linear data
    def _linear_rows(self, s, xv, pv):
        xpos = {id(v): i for i, v in enumerate(xv)}
        ppos = {id(v): i for i, v in enumerate(pv)}
        rows = {"eq": [], "ineq": []}
        for k, f in enumerate(s.followers):
            for c in f.constraints:
                repn = generate_standard_repn(c.body, compute_values=True, quadratic=False)
                mx, mp = np.zeros(len(xv)), np.zeros(len(pv))
                for v, coef in zip(repn.linear_vars, repn.linear_coefs):
                    if v.fixed:
                        continue
                    if id(v) in xpos:
                        mx[xpos[id(v)]] += coef
                    else:
                        mp[ppos[id(v)]] += coef
                const = float(repn.constant)
                for v, coef in zip(repn.linear_vars, repn.linear_coefs):
                    if v.fixed:
                        const += coef * v.value
                lb, ub = c.lb, c.ub
                if c.equality:
                    rows["eq"].append((mx, mp, float(ub) - const, k, c.name))
                    continue
                if ub is not None:
                    rows["ineq"].append((mx, mp, float(ub) - const, k, c.name))
                if lb is not None:
                    rows["ineq"].append((-mx, -mp, const - float(lb), k, c.name + " (lower)"))
        return tuple(_stack(rows[key], len(xv), len(pv)) for key in ("eq", "ineq"))

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
        return self.eq.rhs_at(p) if self._p_in_eq else self.eq.rhs

    def ineq_rhs(self, p):
        return self.ineq.rhs_at(p) if self._p_in_ineq else self.ineq.rhs

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
    bad = np.nonzero(lb > ub)[0]
    if bad.size:
        v = vs[bad[0]]
        raise ValueError(f"variable {v.name!r} has lower bound {v.lb} above its upper bound {v.ub}")
    return lb, ub


def _values(vs):
    return np.array([0.0 if v.value is None else float(v.value) for v in vs])


def _stack(rows, n_x, n_p) -> LinearRows:
    if not rows:
        return LinearRows(np.zeros((0, n_x)), np.zeros((0, n_p)), np.zeros(0),
                          np.zeros(0, dtype=np.intp), [])
    return LinearRows(
        M=np.array([r[0] for r in rows]), E=np.array([r[1] for r in rows]),
        rhs=np.array([r[2] for r in rows]), owner=np.array([r[3] for r in rows], dtype=np.intp),
        names=[r[4] for r in rows],
    )
