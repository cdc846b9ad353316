"""The followers' linear rows ``M x (= or <=) b(p)``, read from their constraints.

:class:`CompiledRows` reads, once, every follower constraint that
:mod:`stackopt.game.structure` found linear in the follower's own variables with
constant coefficients (the others, :attr:`Follower.smooth`, are
:mod:`stackopt.kernel.smooth_rows`'s) as ``M x + E p + psi(p) + const (= or <=)
bound``, its coefficients, constants and bounds compiled as programs of the
Params; :meth:`CompiledRows.read` stacks the equality and the inequality rows at
the current values into one :class:`LinearRows` each.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

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

    @cached_property
    def ET(self) -> sp.csc_matrix:
        """``E`` transposed (kept: the adjoint applies it at every step)."""
        return self.E.T

    @cached_property
    def depends_on_p(self) -> bool:
        """Whether any right-hand side depends on the leader's variables (rows are values:
        :meth:`CompiledRows.read` makes new ones at every refresh)."""
        return self.E.nnz > 0 or self.psi is not None

    def rhs_at(self, p: np.ndarray) -> np.ndarray:
        """``b(p)``."""
        out = self.rhs - self.E @ p if self.depends_on_p and self.E.nnz else self.rhs.copy()
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
        if self.psi is None:  # linear in p: no matrix to build
            return -(self.E @ dp)
        return self.rhs_jacobian(p) @ dp

    def rhs_vjp(self, p: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``(db/dp)^T u``; ``u`` of shape ``(rows,)`` or ``(rows, r)``."""
        if not self.depends_on_p:
            return np.zeros((self.E.shape[1],) + np.shape(u)[1:])
        if self.psi is None:
            return -(self.ET @ u)
        return self.rhs_jacobian(p).T @ u


@dataclass
class _Constraint:
    """One follower constraint as compiled: positions of its terms' coefficients, its
    constant and its bounds among the compiled values, and its nonlinear part in ``p``."""

    follower: int
    follower_name: str
    name: str
    equality: bool
    x_terms: list  # (column in x, position of the coefficient)
    p_terms: list  # (column in p, position of the coefficient)
    nonlinear: object
    constant: int
    bound: int  # the lower bound's position; the upper one follows
    has_lb: bool
    has_ub: bool


class CompiledRows:
    """Every follower constraint as ``M x + E p + psi(p) + const (= or <=) bound``, read from
    the Pyomo model once: the coefficients, constants and bounds compiled as programs of the
    mutable Params and fixed variables (``parameters``, shared with the kernel's programs),
    the nonlinear parts in the leader's variables as ``psi``. :meth:`read` gives the rows at
    the current values without walking an expression.

    :meth:`~stackopt.game.StackelbergGame.structure` checked that the only
    nonlinear part of a constraint is in the leader's variables; it becomes ``psi``.
    """

    def __init__(self, s, xv, pv, parameters=None):
        xpos = {id(v): i for i, v in enumerate(xv)}
        ppos = {id(v): i for i, v in enumerate(pv)}
        self.n_x, self.pv = len(xv), list(pv)
        allv = list(xv) + list(pv)
        coefs, consts, bounds = [], [], []
        self._cons: list[_Constraint] = []
        for k, f in enumerate(s.followers):
            smooth = {id(c) for c in f.smooth}
            for c in f.constraints:
                if id(c) in smooth:
                    continue
                repn = generate_standard_repn(c.body, compute_values=False, quadratic=False)
                xt, pt = [], []
                for v, coef in zip(repn.linear_vars, repn.linear_coefs):
                    if id(v) in xpos:
                        xt.append((xpos[id(v)], len(coefs)))
                    else:
                        pt.append((ppos[id(v)], len(coefs)))
                    coefs.append(coef)
                self._cons.append(_Constraint(k, f.name, c.name, bool(c.equality), xt, pt,
                                              repn.nonlinear_expr, len(consts), len(bounds),
                                              c.has_lb(), c.has_ub()))
                consts.append(repn.constant)
                bounds += [c.lower if c.has_lb() else 0.0, c.upper if c.has_ub() else 0.0]
        self._zero = np.zeros(len(allv))  # the compiled values hold no variables
        self._programs = [compile_exprs(e, allv, parameters) if e else None for e in (coefs, consts, bounds)]
        self._psi = {}
        for key, equality in (("eq", True), ("ineq", False)):
            nl = [(i, sign * c.nonlinear) for i, (c, sign) in enumerate(self._layout(equality))
                  if c.nonlinear is not None]
            if nl:  # nonlinear in the leader's variables: compiled over them alone
                exprs = [e for _, e in nl]
                self._psi[key] = (compile_exprs(exprs, pv), compile_jacobian(exprs, pv),
                                  np.array([i for i, _ in nl], dtype=np.intp))

    def _layout(self, equality: bool) -> list:
        """The rows of the equality (or inequality) block in order, ``(constraint, sign)``:
        an inequality gives its upper row (sign 1), then its lower row (sign -1)."""
        out = []
        for c in self._cons:
            if c.equality != equality:
                continue
            if equality or c.has_ub:
                out.append((c, 1.0))
            if not equality and c.has_lb:
                out.append((c, -1.0))
        return out

    def read(self) -> tuple:
        """``(equality rows, inequality rows)`` at the current values of the Params."""
        coef, const, bound = (np.zeros(0) if prog is None else np.asarray(prog(self._zero), dtype=float)
                              for prog in self._programs)
        out = []
        for key, equality in (("eq", True), ("ineq", False)):
            rows = []
            for c, sign in self._layout(equality):
                mx, mp = {}, {}
                for j, q in c.x_terms:
                    mx[j] = mx.get(j, 0.0) + coef[q]
                for j, q in c.p_terms:
                    mp[j] = mp.get(j, 0.0) + coef[q]
                c0, lo, up = const[c.constant], bound[c.bound], bound[c.bound + 1]
                bad = [a for a in [c0, lo, up, *mx.values(), *mp.values()] if not np.isfinite(a)]
                if bad:
                    raise ValueError(f"constraint {c.name!r} of follower {c.follower_name!r} has the "
                                     f"coefficient or bound {float(bad[0])!r}; expected finite numbers")
                if sign > 0:
                    rows.append((mx, mp, float(up - c0), c.follower, c.name))
                else:
                    rows.append(({j: -a for j, a in mx.items()}, {j: -a for j, a in mp.items()},
                                 float(c0 - lo), c.follower, c.name + " (lower)"))
            out.append(_stack(rows, self.n_x, self.pv, self._psi.get(key)))
        return tuple(out)


def linear_rows(s, xv, pv) -> tuple:
    """Every follower constraint as ``(equality rows, inequality rows)`` (:class:`CompiledRows`
    read once)."""
    return CompiledRows(s, xv, pv).read()


def _stack(rows, n_x, pv, psi=None) -> LinearRows:
    n_p = len(pv)
    n = len(rows)

    def sparse(col):
        r = [i for i, row in enumerate(rows) for _ in row[col]]
        c = [j for row in rows for j in row[col]]
        v = [a for row in rows for a in row[col].values()]
        return sp.csr_matrix((v, (r, c)), shape=(n, n_x if col == 0 else n_p))

    out = LinearRows(M=sparse(0), E=sparse(1), rhs=np.array([r[2] for r in rows], dtype=float),
                     owner=np.array([r[3] for r in rows], dtype=np.intp), names=[r[4] for r in rows])
    if psi is not None:
        out.psi, out.psi_jac, out.psi_rows = psi
    return out
