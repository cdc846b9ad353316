"""The followers' linear rows ``M x (= or <=) b(p)``, read from their constraints.

:func:`linear_rows` reads every follower constraint that :mod:`stackopt.game.structure`
found linear in the follower's own variables with constant coefficients (the
others, :attr:`Follower.smooth`, are :mod:`stackopt.kernel.smooth_rows`'s) as
``M x + E p + psi(p) + const (= or <=) bound`` and stacks the equality and the
inequality rows into one :class:`LinearRows` each.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from pyomo.repn.standard_repn import generate_standard_repn

from stackopt.expr import compile_exprs, compile_jacobian


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


def linear_rows(s, xv, pv) -> tuple:
    """Every follower constraint as ``M x + E p + psi(p) + const (= or <=) bound``:
    ``(equality rows, inequality rows)`` of the structure ``s`` over the stacked
    follower variables ``xv`` and the leader's ``pv``.

    :meth:`~stackopt.game.StackelbergGame.structure` checked that the only
    nonlinear part of a constraint is in the leader's variables; it becomes ``psi``.
    """
    xpos = {id(v): i for i, v in enumerate(xv)}
    ppos = {id(v): i for i, v in enumerate(pv)}
    rows = {"eq": [], "ineq": []}
    for k, f in enumerate(s.followers):
        smooth = {id(c) for c in f.smooth}
        for c in f.constraints:
            if id(c) in smooth:
                continue
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
