"""The followers' constraints in general smooth form, compiled once beside the linear rows.

Every follower constraint outside the linear-row fast path of :mod:`stackopt.kernel.rows`
(:attr:`~stackopt.game.structure.Follower.smooth`: nonlinear in the follower's own
variables, coefficients in the leader's, other followers' variables) and every
shared constraint gives one *row* per side,

    c_r(x, p) = s_r body_r(x, p) - bound_r    (<= 0, or = 0 for an equality),

``s = +1, bound = ub`` for an upper side and ``s = -1, bound = -lb`` for a lower
one. A row binds ``followers[r]``: the follower whose block holds it, or the
followers of a shared constraint. Multipliers live in *slots*: one per follower
constraint; one per shared constraint for all its followers under the concepts
``"variational"`` and ``"weighted"`` (follower ``i`` weighs it by
``omega_i = 1 / r_i``, Rosen's weight ``r_i``; 1 for ``"variational"``); one per
follower of a shared constraint under ``"any"``. Equality slots come first.
With ``sigma`` the slots' multipliers, follower ``i``'s stationarity gains

    sum over the slots m binding i of  omega_i sigma_m grad_{x_i} c_r(m)(x, p)   (``B^T sigma``),

and each slot's complementarity (``min(sigma_m, -c_r(m)) = 0``, or ``c_r(m) = 0``)
is linearised with the row's gradient in every follower's variables (``C``) and in
the leader's (``Cp``): ``B`` differs from ``C`` wherever a row uses variables that
are not its followers' (a generalized Nash game's KKT matrix is not symmetric).
The derivatives of ``B^T sigma`` in ``x`` and ``p`` (the constraints' part of each
follower's Lagrangian Hessian, and of ``dR/dp``) come from second derivatives
compiled for the entries of ``B`` only.

Everything is compiled once with :mod:`stackopt.expr` over the kernel's inputs
(the variables, then its mutable Params); :meth:`SmoothRows.refresh` re-reads the
bounds. Where no follower has such a constraint and there is no shared one, the
kernel has none of this (``kernel.smooth is None``) and every layer takes the
linear rows' path alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from stackopt.expr import compile_exprs, compile_sparse, jacobian_entries

DENSE_MAX = 200_000  # entries of the derivatives in p below which they are arrays, not CSR


@dataclass(frozen=True)
class _Row:
    name: str
    constraint: object  # ConstraintData
    side: str  # "upper", "lower" or "equality"
    followers: tuple  # follower indices the row binds
    owner: int  # the follower whose block holds it; -1 for a shared constraint


@dataclass(frozen=True)
class ResponseRows:
    """Follower ``i``'s smooth rows for its best response (the others held): ``rows``
    (indices), the entries of their Jacobian in its own variables (``jac_row`` local row,
    ``jac_col`` local column, ``jac_at`` position among :meth:`SmoothRows.derivatives`'
    values) and of their second derivatives in its own variables (``hess_row``,
    ``hess_i``, ``hess_j`` local, ``hess_at`` position among the second derivatives)."""

    rows: np.ndarray
    equality: np.ndarray
    jac_row: np.ndarray
    jac_col: np.ndarray
    jac_at: np.ndarray
    hess_row: np.ndarray
    hess_i: np.ndarray
    hess_j: np.ndarray
    hess_at: np.ndarray


def smooth_rows(s, xv, pv, x_owner: np.ndarray, parameters) -> SmoothRows | None:
    """The smooth rows of the structure ``s`` over the followers' variables ``xv`` and the
    leader's ``pv`` (``x_owner[j]``: the follower owning ``x_j``), or ``None`` where there are
    none; programs share the kernel's ``parameters``."""
    index = {f.name: i for i, f in enumerate(s.followers)}
    rows = []
    for i, f in enumerate(s.followers):
        for c in f.smooth:
            rows += _sides(c, c.name, (i,), i)
    for sc in s.shared:
        rows += _sides(sc.constraint, sc.name, tuple(index[n] for n in sc.followers), -1)
    if not rows:
        return None
    return SmoothRows(rows, list(xv), list(pv), x_owner, parameters, s.concept, s.weights)


def _sides(c, name: str, followers: tuple, owner: int) -> list:
    if c.equality:
        return [_Row(name, c, "equality", followers, owner)]
    out = []
    if c.has_ub():
        out.append(_Row(name if not c.has_lb() else f"{name} (upper)", c, "upper", followers, owner))
    if c.has_lb():
        out.append(_Row(name if not c.has_ub() else f"{name} (lower)", c, "lower", followers, owner))
    return out


class SmoothRows:
    """The compiled smooth rows and their slots (see the module docstring)."""

    def __init__(self, rows: list, xv: list, pv: list, x_owner: np.ndarray, parameters,
                 concept: str, weights: tuple):
        self.n_x, self.n_p = n_x, n_p = len(xv), len(pv)
        allv = xv + pv
        self._rows = rows
        self.names = [r.name for r in rows]
        self.n_rows = len(rows)
        self.equality = np.array([r.side == "equality" for r in rows])
        self.followers = [r.followers for r in rows]
        self.owner = np.array([r.owner for r in rows], dtype=np.intp)
        self.concept = concept
        sign = [-1.0 if r.side == "lower" else 1.0 for r in rows]
        exprs = [r.constraint.body if s > 0 else -r.constraint.body for r, s in zip(rows, sign)]
        self.sign = np.array(sign)
        self._body = compile_exprs(exprs, allv, parameters)
        derivs = {(i, j): d for i, j, d in jacobian_entries(exprs, allv)}
        self._jac = jac = compile_sparse([(i, j, d) for (i, j), d in derivs.items()], allv,
                                         (self.n_rows, n_x + n_p), parameters)
        jr, jc = jac.rows, jac.cols
        # rows' uses of variables that are not their followers' (then B != C)
        isx = jc < n_x
        xo = np.where(isx, x_owner[np.minimum(jc, n_x - 1)], -1)
        own = isx & np.array([xo[q] in rows[jr[q]].followers for q in range(jr.size)], dtype=bool)
        self.own_at = np.flatnonzero(own)  # positions of B's entries among the Jacobian's
        self.self_contained = bool(np.all(own[isx]))  # every row in its followers' variables only
        own_exprs = [derivs[(int(jr[q]), int(jc[q]))] for q in self.own_at]
        self._hess = compile_sparse(jacobian_entries(own_exprs, allv), allv,
                                    (self.own_at.size, n_x + n_p), parameters)
        self._slots(rows, concept, weights, x_owner)
        self._index(x_owner)
        self.has_hessian = bool(self._hess.rows.size)
        # the derivatives in p as arrays where they are small: scipy.sparse's per-call
        # overhead dominates there, as for the linear rows (KKTResidual)
        self.dense_p = (self.n_slots + n_x) * n_p <= DENSE_MAX
        self._last_v = self._last = None
        self.refresh()

    # ------------------------------------------------------------------ slots
    def _slots(self, rows, concept, weights, x_owner) -> None:
        """Slots (equality slots first), each with its row and its followers' weights."""
        slots = []
        for eq in (True, False):
            for r, row in enumerate(rows):
                if (row.side == "equality") != eq:
                    continue
                if row.owner >= 0:
                    slots.append((r, {row.owner: 1.0}))
                elif concept == "any":
                    slots += [(r, {i: 1.0}) for i in row.followers]
                else:
                    slots.append((r, {i: 1.0 / weights[i] for i in row.followers}))
        self.slot_row = np.array([r for r, _ in slots], dtype=np.intp)
        self.slot_weights = [w for _, w in slots]
        self.n_slots = len(slots)
        self.n_eq = int(sum(rows[r].side == "equality" for r, _ in slots))
        self.n_in = self.n_slots - self.n_eq
        self.slot_of = {(r, i): (m, w[i]) for m, (r, w) in enumerate(slots) for i in w}

    def _index(self, x_owner) -> None:
        """Index arrays of B, C, Cp and the second derivatives over the compiled entries."""
        n_x = self.n_x
        jr, jc = self._jac.rows, self._jac.cols
        by_row = [[] for _ in range(self.n_rows)]
        for m, r in enumerate(self.slot_row):
            by_row[r].append(m)
        # B: slot, column, weight, position
        own_r, own_c = jr[self.own_at], jc[self.own_at]
        bm, bw = [], []
        for r, j in zip(own_r, own_c):
            m, w = self.slot_of[(int(r), int(x_owner[j]))]
            bm.append(m)
            bw.append(w)
        self.B_m, self.B_w = np.array(bm, dtype=np.intp), np.array(bw, dtype=float)
        self.B_j, self.B_at = own_c.astype(np.intp), self.own_at
        # C (x columns) and Cp (p columns): one entry per slot of the row
        cm, cj, cq, pm, pj, pq = [], [], [], [], [], []
        for q, (r, j) in enumerate(zip(jr, jc)):
            for m in by_row[r]:
                if j < n_x:
                    cm.append(m), cj.append(j), cq.append(q)
                else:
                    pm.append(m), pj.append(j - n_x), pq.append(q)
        self.C_m, self.C_j, self.C_at = (np.array(a, dtype=np.intp) for a in (cm, cj, cq))
        self.Cp_m, self.Cp_j, self.Cp_at = (np.array(a, dtype=np.intp) for a in (pm, pj, pq))
        # second derivatives: entry t is d(B entry e)/d(variable v)
        he, hv = self._hess.rows, self._hess.cols
        hx = hv < n_x
        self.Hx = (self.B_j[he[hx]], hv[hx], self.B_m[he[hx]], self.B_w[he[hx]], np.flatnonzero(hx))
        self.Hp = (self.B_j[he[~hx]], hv[~hx] - n_x, self.B_m[he[~hx]], self.B_w[he[~hx]],
                   np.flatnonzero(~hx))

    @property
    def jacobian_structure(self) -> tuple:
        """``(rows, cols)`` of the Jacobian's nonzeros (columns: ``x``, then ``p``), in the
        order of :meth:`derivatives`' values."""
        return self._jac.rows, self._jac.cols

    @property
    def hessian_structure(self) -> tuple:
        """``(row, j, v)`` of each second derivative ``d^2 c_row / dx_j dv`` (``v`` in ``x``,
        then ``p``), in the order of :meth:`second_derivatives`' values."""
        e = self._hess.rows
        return self._jac.rows[self.own_at][e], self._jac.cols[self.own_at][e], self._hess.cols

    # ------------------------------------------------------------- refresh
    def refresh(self) -> None:
        """Read the rows' bounds from the model again (they may hold mutable Params)."""
        bound = []
        for r in self._rows:
            c = r.constraint
            val = c.lb if r.side == "lower" else c.ub
            val = float(val)
            if not np.isfinite(val):
                raise ValueError(f"constraint {c.name!r} has the bound {val!r}; expected a finite number")
            bound.append(-val if r.side == "lower" else val)
        self.bound = np.array(bound)
        self.slot_bound_scale = 1.0 + np.abs(self.bound[self.slot_row])
        self._last_v = self._last = None

    # ------------------------------------------------------------- values
    def derivatives(self, x, p):
        """``(c, jac)``: every row's value and the nonzeros of its Jacobian in ``(x, p)``
        (kept for the last point)."""
        v = np.concatenate([x, p])
        if self._last_v is not None and np.array_equal(self._last_v, v):
            return self._last
        self._last = (self._body(v) - self.bound, self._jac(v))
        self._last_v = v
        return self._last

    def second_derivatives(self, x, p) -> np.ndarray:
        """The nonzeros of the second derivatives (one per entry of B and variable)."""
        return self._hess(np.concatenate([x, p]))

    def values(self, x, p) -> np.ndarray:
        """Every row's ``c_r(x, p)``."""
        return self.derivatives(x, p)[0]

    def slot_values(self, x, p) -> np.ndarray:
        """Each slot's row value ``c_r(m)(x, p)`` (equality slots first)."""
        return self.derivatives(x, p)[0][self.slot_row]

    def stationarity(self, x, p, sigma) -> np.ndarray:
        """``B(x, p)^T sigma``: the rows' part of every follower's stationarity."""
        jac = self.derivatives(x, p)[1]
        return np.bincount(self.B_j, weights=self.B_w * jac[self.B_at] * sigma[self.B_m],
                           minlength=self.n_x).astype(float)

    def B(self, x, p, dense: bool):
        """``B`` (slots by ``n_x``): each slot's weighted gradient in its followers' variables."""
        jac = self.derivatives(x, p)[1]
        return _assemble(self.B_m, self.B_j, self.B_w * jac[self.B_at], self.n_slots, self.n_x, dense)

    def C(self, x, p, dense: bool):
        """``C`` (slots by ``n_x``): each slot's row gradient in every follower's variables."""
        jac = self.derivatives(x, p)[1]
        return _assemble(self.C_m, self.C_j, jac[self.C_at], self.n_slots, self.n_x, dense)

    def C_dot(self, x, p, v) -> np.ndarray:
        """``C(x, p) @ v`` without forming ``C``: each slot's row linearised along ``v``."""
        jac = self.derivatives(x, p)[1]
        return np.bincount(self.C_m, weights=jac[self.C_at] * v[self.C_j],
                           minlength=self.n_slots).astype(float)

    def Cp(self, x, p):
        """``Cp`` (slots by ``n_p``): each slot's row gradient in the leader's variables (an
        array where :attr:`dense_p`, else CSR)."""
        jac = self.derivatives(x, p)[1]
        return _assemble(self.Cp_m, self.Cp_j, jac[self.Cp_at], self.n_slots, self.n_p, self.dense_p)

    def hessian_x(self, x, p, sigma, dense: bool):
        """``d(B^T sigma)/dx`` (``n_x`` by ``n_x``)."""
        j, v, m, w, at = self.Hx
        vals = w * sigma[m] * self.second_derivatives(x, p)[at]
        return _assemble(j, v, vals, self.n_x, self.n_x, dense)

    def hessian_p(self, x, p, sigma):
        """``d(B^T sigma)/dp`` (``n_x`` by ``n_p``; an array where :attr:`dense_p`, else CSR)."""
        j, v, m, w, at = self.Hp
        vals = w * sigma[m] * self.second_derivatives(x, p)[at] if at.size else np.zeros(0)
        return _assemble(j, v, vals, self.n_x, self.n_p, self.dense_p)

    # ------------------------------------------------------------- follower views
    def rows_of(self, i: int) -> np.ndarray:
        """The rows binding follower ``i``."""
        return np.array([r for r in range(self.n_rows) if i in self.followers[r]], dtype=np.intp)

    def response_rows(self, i: int, sl: slice) -> ResponseRows:
        """Follower ``i``'s rows and their derivatives in its own variables ``x[sl]``."""
        cache = self.__dict__.setdefault("_responses", {})
        if i not in cache:
            rows = self.rows_of(i)
            local = {int(r): k for k, r in enumerate(rows)}
            jr, jc = self._jac.rows, self._jac.cols
            mine = np.isin(jr, rows) & (jc >= sl.start) & (jc < sl.stop)
            at = np.flatnonzero(mine)
            he, hv = self._hess.rows, self._hess.cols
            e_row, e_col = jr[self.own_at], jc[self.own_at]
            hmine = (np.isin(e_row[he], rows) & (e_col[he] >= sl.start) & (e_col[he] < sl.stop)
                     & (hv >= sl.start) & (hv < sl.stop))
            hat = np.flatnonzero(hmine)
            cache[i] = ResponseRows(
                rows=rows, equality=self.equality[rows],
                jac_row=np.array([local[int(r)] for r in jr[at]], dtype=np.intp),
                jac_col=(jc[at] - sl.start).astype(np.intp), jac_at=at,
                hess_row=np.array([local[int(r)] for r in e_row[he[hat]]], dtype=np.intp),
                hess_i=(e_col[he[hat]] - sl.start).astype(np.intp),
                hess_j=(hv[hat] - sl.start).astype(np.intp), hess_at=hat)
        return cache[i]

    def constraints_of(self, i: int) -> list:
        """``(ConstraintData, side)`` of every row binding follower ``i``."""
        return [(self._rows[r].constraint, self._rows[r].side) for r in self.rows_of(i)]

    def slot_multipliers(self, per_follower: dict) -> np.ndarray:
        """Slot multipliers from followers' own multipliers of their rows (best responses:
        ``per_follower[i]`` maps row index -> follower ``i``'s multiplier, Ipopt's sign):
        a slot shared by several followers takes the mean of ``lambda_i / omega_i``."""
        sigma = np.zeros(self.n_slots)
        count = np.zeros(self.n_slots)
        for i, mults in per_follower.items():
            for r, lam in mults.items():
                m, w = self.slot_of[(r, i)]
                sigma[m] += lam / w
                count[m] += 1
        return np.where(count > 0, sigma / np.maximum(count, 1), 0.0)


def _assemble(r, c, vals, n_rows: int, n_cols: int, dense: bool):
    """A matrix from (row, column, value) triplets, duplicates summed: an array or CSR."""
    if dense:
        out = np.bincount(r * n_cols + c, weights=vals, minlength=n_rows * n_cols).astype(float)
        return out.reshape(n_rows, n_cols)
    return sp.csr_matrix((vals, (r, c)), shape=(n_rows, n_cols))
