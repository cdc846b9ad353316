"""The leader's side of :class:`~stackopt.kernel.GameKernel`: its objective and constraints.

The leader's objective and constraint bodies (``<= 0`` feasible) are compiled,
values and derivatives in ``x`` and ``p``, into one sparse program over the
kernel's inputs; :class:`LeaderEvaluators` (held by ``GameKernel``) compiles
it and reads the values and Jacobians out of its output.
"""
from __future__ import annotations

import numpy as np
from pyomo.repn.standard_repn import generate_standard_repn

from stackopt.expr import compile_exprs, compile_sparse, jacobian_entries


class LeaderEvaluators:
    """The leader's evaluators of a game's structure ``s`` over the kernel's inputs ``allv``
    (the followers' ``n_x`` variables, then the leader's ``n_p``) and its ``parameters``."""

    def __init__(self, s, allv, n_x: int, n_p: int, parameters):
        self.n_x, self.n_p, self.parameters = n_x, n_p, parameters
        self._compile_leader(s, allv)

    def allv(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        return np.concatenate([x, p])

    def _compile_leader(self, s, allv) -> None:
        """Leader objective and constraints (body <= 0), values and derivatives in one program."""
        self.leader_sense = int(s.leader_sense)
        self.constraint_names = [c.name for c in s.leader_constraints]
        self.n_c = len(s.leader_constraints)
        lexprs = [s.leader_objective] + [c.body for c in s.leader_constraints]
        n_l = len(lexprs)
        entries = [(i, i, e) for i, e in enumerate(lexprs)]  # values first (column = row)
        entries += [(i, n_l + j, d) for i, j, d in jacobian_entries(lexprs, allv)]
        self._L = compile_sparse(entries, allv, (n_l, n_l + self.n_x + self.n_p), self.parameters)
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
        # positions in the program's output of the values and of the entries in x and in p
        self._Lx_at = self._L_nval + np.flatnonzero(self._Lx)
        self._Lp_at = self._L_nval + np.flatnonzero(~self._Lx)
        self._compile_linear_rows(s, allv, set(jr[self._Lx].tolist()))

    def _compile_linear_rows(self, s, allv, with_x) -> None:
        """The leader constraints linear in the leader's variables alone (``with_x``: the rows
        of the program with an entry in ``x``), their coefficients and constants compiled, so
        that :meth:`leader_linear_rows` follows the Params without walking an expression."""
        pos = {id(v): j for j, v in enumerate(allv[self.n_x:])}
        rows, entries, constants = [], [], []
        for i, c in enumerate(s.leader_constraints):
            if 1 + i in with_x:
                continue
            repn = generate_standard_repn(c.body, compute_values=False, quadratic=False)
            terms = [(v, a) for v, a in zip(repn.linear_vars, repn.linear_coefs) if not v.fixed]
            if not repn.is_linear() or any(id(v) not in pos for v, _ in terms):
                continue
            entries += [(len(rows), pos[id(v)], a) for v, a in terms]
            constants.append(repn.constant)
            rows.append(i)
        self._linear_rows = np.array(rows, dtype=np.intp)
        self._linear_A = compile_sparse(entries, allv, (len(rows), self.n_p), self.parameters)
        self._linear_c = compile_exprs(constants, allv, self.parameters)

    def leader_linear_rows(self):
        """``(rows, A, b)``: the leader constraints (indices among its constraints) whose bodies
        are linear in the leader's variables alone, as ``A p <= b`` at the current Params."""
        zero = np.zeros(self.n_x + self.n_p)  # the coefficients hold no variables
        A = self._linear_A.dense(zero)
        b = -np.asarray(self._linear_c(zero), dtype=float).reshape(self._linear_rows.size)
        return self._linear_rows.copy(), A, b

    def undefined(self, objective, constraints) -> str:
        """"" where the leader's ``objective`` and ``constraints`` (all of them, in order) are
        finite numbers; else a clause naming those that are not, for messages."""
        bad = [] if np.isfinite(objective) else ["objective"]
        bad += [f"constraint {n!r}" for n, c in zip(self.constraint_names, constraints)
                if not np.isfinite(c)]
        if not bad:
            return ""
        return (f"the leader's {' and '.join(bad)} cannot be evaluated there (not a finite number: "
                "e.g. sqrt or log of a negative quantity)")

    def programs(self) -> list:
        """The compiled programs evaluated at every step (the objective, the constraints and
        their derivatives)."""
        return [self._L.program]

    def leader_all(self, x, p):
        """Objective (leader's own sense), constraint bodies (<= 0 feasible), and their
        derivatives: dense in ``x`` (``1 + n_c`` by ``n_x``) and nonzeros in ``p`` at
        ``(Lp_rows, Lp_cols)``."""
        vals = self._L(self.allv(x, p))
        v = np.zeros(self._n_l)
        v[self._L_val_rows] = vals[: self._L_nval]
        jx = np.zeros(self._n_l * self.n_x)
        jx[self._Lx_flat] = vals.take(self._Lx_at)
        return float(v[0]), v[1:], jx.reshape(self._n_l, self.n_x), vals.take(self._Lp_at)

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
