"""Compiled programs: polynomials over atoms evaluated with index arrays and ``np.bincount``.

Evaluation writes the variables' and parameters' values into one atom vector,
then evaluates the auxiliary nodes level by level (each level one batched
polynomial and one NumPy call per function), then the outputs. No Pyomo
expression is walked after compilation.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from .loops import POINTS, flat_terms, levels_loop, points_loop, polynomial_loop
from .params import Parameters
from .poly import UNARY, PolyBuilder

SPARSE_SUM_MIN_TERMS = 4096  # terms of a batch from which one point's row sums are a sparse product


def _row_sums_at(S, terms: np.ndarray) -> np.ndarray:
    """``S @ terms`` for the CSR row-sum matrix ``S`` of :meth:`PolyBatch._row_sums`, by
    SciPy's own CSR kernel called at once (what ``@`` runs, after argument checks that
    cost as much as the sum on batches of some thousand terms); ``@`` where SciPy does
    not offer it."""
    matvec = _csr_matvec()
    if matvec is None:  # pragma: no cover - every SciPy release this supports has it
        return S @ terms
    out = np.zeros(S.shape[0])
    matvec(S.shape[0], S.shape[1], S.indptr, S.indices, S.data, terms, out)
    return out


@functools.cache
def _csr_matvec():
    """SciPy's CSR product kernel (what ``csr_matrix @ vector`` runs), or None; imported on
    first use (``import stackopt`` stays light)."""
    try:
        from scipy.sparse._sparsetools import csr_matvec
    except ImportError:  # pragma: no cover
        return None
    return csr_matvec


class PolyBatch:
    """Several polynomials over atoms, evaluated together into an output vector."""

    def __init__(self, polys: Sequence[dict]):
        self.n_out = len(polys)
        self.const = np.zeros(self.n_out)
        by_degree: dict[int, tuple[list, list, list]] = {}
        for row, p in enumerate(polys):
            for mono, coef in p.items():
                d = len(mono)
                if not d:
                    self.const[row] += coef
                    continue
                group = by_degree.get(d)
                if group is None:
                    group = by_degree[d] = ([], [], [])
                group[0].append(row)
                group[1].append(coef)
                group[2].append(mono)
        self.groups = []
        rows = []
        for d in sorted(by_degree):
            r, c, monos = by_degree[d]
            idx = np.array(monos, dtype=np.intp).reshape(len(monos), d)
            self.groups.append((np.array(c, dtype=float),
                                [np.ascontiguousarray(idx[:, k]) for k in range(d)]))
            rows.extend(r)
        self.rows = np.array(rows, dtype=np.intp)
        self.n_terms = len(rows)
        # one term per output (a derivative's single product, a level of linear nodes): the
        # terms in output order (None where they already are) replace the row sums
        self._single = self.n_terms == self.n_out and bool(
            np.array_equal(np.sort(self.rows), np.arange(self.n_out)))
        order = np.argsort(self.rows) if self._single else None
        self._order = None if order is None or np.array_equal(order, np.arange(self.n_out)) else order
        self.has_const = bool(np.any(self.const))
        self._sum = None
        self._loop = None  # (coef, atoms, degree) once use_loop() is on

    def use_loop(self) -> bool:
        """Evaluate at one point as one compiled loop from now on (the same values to the
        last bit: :mod:`stackopt.expr.loops`); False where Numba is not installed."""
        if self._loop is None and self.n_terms and polynomial_loop() is not None:
            self._loop = flat_terms(self.groups, self.rows)
        return self._loop is not None or not self.n_terms

    def _terms(self, v: np.ndarray) -> np.ndarray:
        """Every term's value (a column per point where ``v`` has one per point)."""
        if v.ndim == 1:  # each group's products written in place into one array
            out = np.empty(self.n_terms)
            start = 0
            for coef, cols in self.groups:
                t = out[start: start + coef.size]
                np.multiply(coef, v.take(cols[0]), out=t)
                for c in cols[1:]:
                    t *= v.take(c)
                start += coef.size
            return out
        parts = []
        for coef, cols in self.groups:
            t = coef[:, None] * v[cols[0]]
            for c in cols[1:]:
                t *= v[c]
            parts.append(t)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _row_sums(self):
        """The sparse matrix summing the terms into their rows: each row's terms in term order,
        from zero, one after the other, as ``np.bincount`` adds them (the same values to the
        last bit), in a third of its time on large batches."""
        if self._sum is None:
            import scipy.sparse as sp
            self._sum = sp.csr_matrix((np.ones(self.n_terms), (self.rows, np.arange(self.n_terms))),
                                      shape=(self.n_out, self.n_terms))
        return self._sum

    def __call__(self, v: np.ndarray) -> np.ndarray:
        if not self.n_terms:
            return self.const.copy()
        if self._loop is not None and v.ndim == 1:
            out = polynomial_loop()(v, *self._loop, self.n_out)
        elif self._single and v.ndim == 1:
            out = self._terms(v)
            if self._order is not None:
                out = out.take(self._order)
            out += 0.0  # as the row sums add each term to zero: -0.0 becomes 0.0
        elif self.n_terms >= SPARSE_SUM_MIN_TERMS:
            out = _row_sums_at(self._row_sums(), self._terms(v))
        else:
            out = np.bincount(self.rows, weights=self._terms(v), minlength=self.n_out)
        if self.has_const:
            out += self.const
        return out

    def batch(self, v: np.ndarray) -> np.ndarray:
        """The polynomials at several points at once: ``v`` holds one column per point."""
        if not self.n_terms:
            return np.repeat(self.const[:, None], v.shape[1], axis=1)
        out = self._row_sums() @ self._terms(v)
        if self.has_const:
            out += self.const[:, None]
        return out


def _function_levels(builder) -> list[int]:
    """Each auxiliary atom's level, the functions (``exp``, ``log``, ...: not the powers) of
    one depth together. A function's depth is the count of functions on its longest chain of
    arguments; every function of a depth sits at one level, the first after all their
    arguments, and any other atom at the first after its own arguments. Where an atom's own
    earliest level would scatter functions of one depth over several levels (the weights
    ``exp(a_t - c_t)`` of targets covered by one, two or three followers), a program at one
    point makes one NumPy call per kind and depth and one compiled loop between them, not
    one per level; each atom's value is the same (its terms and its function are)."""
    n = builder.n_vars
    kinds, args = builder.aux_kind, builder.aux_arg
    count = len(kinds)

    def atoms_of(k):
        out = {a - n for mono in args[k] for a in mono if a >= n}
        if kinds[k] == "powv":
            out.add(int(builder.aux_param[k]) - n)
        return [a for a in out if a >= 0]

    deps = [atoms_of(k) for k in range(count)]
    moves = [kind in UNARY for kind in kinds]
    depth = [0] * count
    for k in range(count):  # the atoms are numbered after their arguments
        depth[k] = max((depth[a] for a in deps[k]), default=0) + moves[k]
    level = [0] * count
    by_depth: dict[int, tuple[list, list]] = {}
    for k in range(count):
        if kinds[k] != "param":
            by_depth.setdefault(depth[k], ([], []))[0 if moves[k] else 1].append(k)
    for d in sorted(by_depth):
        funcs, others = by_depth[d]
        first = 1 + max((level[a] for k in funcs for a in deps[k]), default=0)
        for k in funcs:
            level[k] = first
        for k in others:  # in order: an atom's arguments of this depth are leveled before it
            level[k] = 1 + max((level[a] for a in deps[k]), default=0)
    return level


class Program:
    """A compiled list of expressions: ``program(values, params=None) -> array`` of their values.

    ``values`` is a 1-D array ordered like the variables the program was
    compiled over; ``params`` the values of :attr:`parameters` (read from the
    model now when omitted: pass ``program.parameters.values()`` read once
    when calling many times).
    """

    def __init__(self, builder: PolyBuilder, outputs: Sequence[dict]):
        self.n_vars = builder.n_vars
        self.n_aux = len(builder.aux_kind)
        self.n_out = len(outputs)
        self.parameters: Parameters = builder.parameters
        pos = sorted(builder.param_atom)
        self._param_pos = np.array(pos, dtype=np.intp)
        self._param_atoms = np.array([builder.param_atom[k] for k in pos], dtype=np.intp)
        self.levels = []
        real = [k for k in range(self.n_aux) if builder.aux_kind[k] != "param"]
        by_level: dict[int, list] = {}
        levels = _function_levels(builder)
        for k in real:
            by_level.setdefault(levels[k], []).append(k)
        for lvl in sorted(by_level):
            members = by_level[lvl]
            batch = PolyBatch([builder.aux_arg[k] for k in members])
            target = np.array([self.n_vars + k for k in members], dtype=np.intp)
            funcs = []
            kinds = [builder.aux_kind[k] for k in members]
            for kind in sorted(set(kinds) - {"id"}):
                at = np.array([j for j, kk in enumerate(kinds) if kk == kind], dtype=np.intp)
                param = np.array([builder.aux_param[members[j]] for j in at])
                if kind == "powv":
                    param = param.astype(np.intp)  # the exponent's atom
                funcs.append((kind, at, param))
            self.levels.append((batch, target, funcs))
        self.out = PolyBatch(outputs)
        self.n_terms = self.out.n_terms + sum(b.n_terms for b, _, _ in self.levels)
        self.looped = False  # see use_loops
        self._segments = None  # the levels as compiled loops, once use_loops() is on
        self._out_level = None  # the outputs as one more level (at_points), on first use

    @property
    def n_params(self) -> int:
        return len(self.parameters)

    def use_loops(self) -> bool:
        """Every polynomial batch of the program evaluated at one point as a compiled loop
        (:meth:`PolyBatch.use_loop`; and a :class:`~stackopt.expr.GroupedProgram` of it at
        many points, :attr:`looped`); False where Numba is not installed."""
        self.looped = all([b.use_loop() for b, _, _ in self.levels] + [self.out.use_loop()])
        if self.looped and self._segments is None:
            self._segments = self._segment_levels()
        return self.looped

    def _segment_levels(self) -> list:
        """The levels cut after each level with functions: per run, the arguments of
        :func:`~stackopt.expr.loops.levels_loop` after ``v``, and the last level's functions
        with the atoms each applies to (None where it has none)."""
        segments, run = [], []
        for i, level in enumerate(self.levels):
            run.append(level)
            if level[2] or i == len(self.levels) - 1:
                segments.append(self._segment(run))
                run = []
        return segments

    @staticmethod
    def _segment(run) -> tuple:
        coef, atoms, degree, slot, const = [], [], [], [], []
        level_terms, level_slots, level_const = [0], [0], []
        for batch, target, _ in run:
            if batch.n_terms:
                c, a, d, rows = batch._loop
                coef.append(c)
                atoms.append(a)
                degree.append(d)
                slot.append(target[rows])
            level_terms.append(level_terms[-1] + batch.n_terms)
            level_slots.append(level_slots[-1] + target.size)
            const.append(batch.const)
            level_const.append(batch.has_const)

        def cat(parts, dtype):
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)

        args = (cat(coef, float), cat(atoms, np.int32), cat(degree, np.uint8), cat(slot, np.int32),
                np.array(level_terms, dtype=np.intp),
                np.concatenate([t for _, t, _ in run]).astype(np.int32),
                np.array(level_slots, dtype=np.intp), np.concatenate(const),
                np.array(level_const, dtype=np.bool_))
        _, target, funcs = run[-1]
        return args, [(kind, target[pos], param) for kind, pos, param in funcs] or None

    def atoms(self, values: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        """Every atom's value: ``values`` 1-D, or ``(n_vars, points)`` with a column per point."""
        v = self.start(values, params)
        if self.looped and values.ndim == 1:  # each run of levels one loop, in place
            self._run_levels(v, levels_loop())
            return v
        for batch, target, funcs in self.levels:
            u = batch(v) if values.ndim == 1 else batch.batch(v)
            self.apply(funcs, u, v)
            v[target] = u
        return v

    def start(self, values: np.ndarray, params: np.ndarray | None = None, extra: int = 0) -> np.ndarray:
        """The atom array with the variables' and parameters' values written (``extra``
        more rows after the atoms, for the caller's use)."""
        v = np.empty((self.n_vars + self.n_aux + extra,) + values.shape[1:])
        v[: self.n_vars] = values
        if self._param_atoms.size:
            if params is None:
                params = self.parameters.values()
            elif len(params) != len(self.parameters):
                raise ValueError(
                    f"params must hold {len(self.parameters)} values (the program's parameters), "
                    f"got {len(params)}"
                )
            col = (slice(None),) + (None,) * (values.ndim - 1)  # a parameter per row, for every point
            v[self._param_atoms] = np.asarray(params, dtype=float)[self._param_pos][col]
        return v

    def _run_levels(self, v: np.ndarray, loop) -> None:
        """The levels in place in ``v``: each run of them one call of ``loop`` (one point's
        or four points' levels loop), then its last level's functions."""
        for args, last in self._segments:
            loop(v, *args)
            if last is not None:
                self._apply_at(last, v)

    @staticmethod
    def _apply_at(funcs, v: np.ndarray) -> None:
        """A level's functions applied in place to its atoms in ``v`` (``(kind, atoms,
        param)``, the atoms of each function disjoint, and an exponent's atoms of an
        earlier level): what :meth:`apply` does to the level's values, without copying
        them out and back. With a column per point, each function runs on the values
        flattened, an exponent per value: the call the one-point path makes, longer (NumPy
        computes ``power`` with one exponent for many values otherwise, ``1 / x`` for
        ``x ** -1``, which differs from ``pow`` in the last bit)."""
        for kind, at, param in funcs:
            x = v[at]
            if kind == "pow":
                y = np.power(x.reshape(-1), param if v.ndim == 1 else np.repeat(param, v.shape[1]))
            elif kind == "powv":
                y = np.power(x.reshape(-1), v[param].reshape(-1))
            else:
                y = UNARY[kind](x.reshape(-1))
            v[at] = y.reshape(x.shape)

    @staticmethod
    def apply(funcs, u: np.ndarray, v: np.ndarray) -> None:
        """A level's functions applied in place to its polynomials' values ``u``."""
        col = (slice(None),) + (None,) * (u.ndim - 1)
        for kind, pos, param in funcs:
            if kind == "pow":
                u[pos] = np.power(u[pos], param[col])
            elif kind == "powv":
                u[pos] = np.power(u[pos], v[param])
            else:
                u[pos] = UNARY[kind](u[pos])

    def __call__(self, values: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.out(self.atoms(np.asarray(values, dtype=float), params))

    def at_points(self, values: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        """The expressions at a few points, ``values`` of shape ``(n_vars, points)``, the
        result ``(n_out, points)``, each column what :meth:`__call__` gives at that point to
        the last bit: a program on compiled loops (:meth:`use_loops`) runs each loop once
        for four points (:func:`~stackopt.expr.loops.points_loop`: every term read once,
        where one point at a time reads the terms once per point), any other one point at a
        time."""
        values = np.asarray(values, dtype=float)
        m = values.shape[1]
        loop = points_loop() if self.looped else None
        if loop is None or m < 2:
            return np.column_stack([self(values[:, j], params) for j in range(m)])
        if self._out_level is None:  # the outputs written after the atoms, as a last level
            first = self.n_vars + self.n_aux
            self._out_level = self._segment([(self.out, np.arange(first, first + self.n_out), [])])[0]
        chunks = []
        for first in range(0, m, POINTS):  # four points a loop; the last four padded with its last
            cols = np.minimum(np.arange(first, first + POINTS), m - 1)
            chunks.append(self._four(values[:, cols], params, loop)[:, :min(POINTS, m - first)])
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks, axis=1)

    def _four(self, values: np.ndarray, params, loop) -> np.ndarray:
        """The outputs at four points: the levels, then the outputs as one more level (the
        same products, each output's terms added in order from zero, then its constant,
        as :class:`PolyBatch` does)."""
        with np.errstate(all="ignore"):
            v = self.start(values, params, extra=self.n_out)
            self._run_levels(v, loop)
            loop(v, *self._out_level)
            return v[self.n_vars + self.n_aux:]

    def batch(self, values: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        """The expressions at several points: ``values`` of shape ``(points, n_vars)``,
        the result ``(points, n_out)``; one NumPy call per level for all points."""
        with np.errstate(all="ignore"):
            return self.out.batch(self.atoms(np.asarray(values, dtype=float).T, params)).T


class SparseJacobian:
    """Structural nonzeros ``(rows, cols)`` of d expressions / d variables, and their values."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, shape: tuple, program: Program):
        self.rows, self.cols, self.shape, self.program = rows, cols, shape, program

    @property
    def parameters(self) -> Parameters:
        return self.program.parameters

    def __call__(self, values: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        return self.program(values, params)

    def at_points(self, values: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        """The nonzeros at a few points (:meth:`Program.at_points`): ``(nonzeros, points)``."""
        return self.program.at_points(values, params)

    def dense(self, values: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        flat = np.bincount(self.rows * self.shape[1] + self.cols,
                           weights=self.program(values, params).astype(float),
                           minlength=self.shape[0] * self.shape[1])
        return flat.reshape(self.shape)

    def sparse(self, values: np.ndarray, params: np.ndarray | None = None):
        import scipy.sparse as sp

        return sp.csr_matrix((self.program(values, params), (self.rows, self.cols)), shape=self.shape)
