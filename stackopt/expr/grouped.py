"""A compiled program at many points, each point needing only one group of its outputs.

A sweep of best responses evaluates, at point ``b``, only follower ``owner[b]``'s
objective, gradient or Hessian block; :meth:`Program.batch` computes every
output at every point, so a sweep over ``n`` followers costs ``n`` full
evaluations (``n^3`` work for a game whose every objective reads all ``n``
followers). :class:`GroupedProgram` finds once, for each group of outputs, the
terms of every level that those outputs depend on (their ancestors in the
program), and evaluates at each point only its group's terms: the work of one
full evaluation for a sweep. Sums run over the same terms in the same order as
:meth:`Program.batch`, so the group's outputs are the same to the last bit;
the other outputs are ``nan``. Where its program evaluates as compiled loops
(:meth:`Program.use_loops`), the levels between two with functions are one compiled
loop writing into the atoms in place (:func:`stackopt.expr.loops.grouped_levels_loop`)
and the outputs one more (:func:`stackopt.expr.loops.grouped_loop`), doing the same
products and sums in the same order. Without them, each layer's products are
one-dimensional takes at positions planned once per pattern of groups.
"""
from __future__ import annotations

import numpy as np

from .loops import grouped_levels_loop, grouped_loop
from .program import PolyBatch, Program


def _layer_atoms(batch: PolyBatch, width: int, one: int) -> tuple[np.ndarray, np.ndarray]:
    """Each term's coefficient and its atoms, padded to ``width`` with the atom ``one``."""
    coef, atoms = [], []
    for c, cols in batch.groups:
        idx = np.full((c.size, width), one, dtype=np.intp)
        for k, col in enumerate(cols):
            idx[:, k] = col
        coef.append(c)
        atoms.append(idx)
    if not coef:
        return np.zeros(0), np.zeros((0, width), dtype=np.intp)
    return np.concatenate(coef), np.concatenate(atoms)


class GroupedProgram:
    """``program`` evaluated at rows of ``values``, row ``b`` for outputs ``groups[owner[b]]`` only."""

    CACHE_BYTES = 32 << 20  # index arrays of owner patterns kept, at most this many bytes

    def __init__(self, program: Program, groups: list[np.ndarray]):
        self.program = program
        n_atoms = program.n_vars + program.n_aux
        self.one = n_atoms  # an extra atom holding 1.0: the padding of lower-degree terms
        layers = [b for b, _, _ in program.levels] + [program.out]
        width = max([len(cols) for b in layers for _, cols in b.groups] + [1])
        self.layers = [(b,) + _layer_atoms(b, width, self.one) for b in layers]
        self.groups = [np.asarray(g, dtype=np.intp) for g in groups]
        self.need = [self._ancestors(g, n_atoms) for g in self.groups]
        self.segments = self._segments()
        self._cache: dict = {}
        self._cached_bytes = 0

    def _ancestors(self, outputs: np.ndarray, n_atoms: int) -> list[np.ndarray]:
        """The terms of every layer that ``outputs`` depend on (ascending, per layer)."""
        needed = np.zeros(n_atoms + 1, dtype=bool)
        out = []
        wanted = np.zeros(self.program.out.n_out, dtype=bool)
        wanted[outputs] = True
        for li in range(len(self.layers) - 1, -1, -1):
            batch, _, atoms = self.layers[li]
            if li < len(self.program.levels):
                target = self.program.levels[li][1]
                wanted = needed[target]
            terms = np.flatnonzero(wanted[batch.rows]) if batch.n_terms else np.zeros(0, dtype=np.intp)
            needed[atoms[terms].ravel()] = True
            out.append(terms)
        return out[::-1]

    def _segments(self) -> list:
        """The program's levels in runs cut after each level with functions (as
        :meth:`Program._segment_levels` cuts them), each run's data that do not depend on the
        points' groups: its layers, their terms' coefficients and atoms one after the other
        (and where each layer's terms start), the atoms each level zeroes and the constants it
        adds, and the last level's functions with the atoms they apply to."""
        prog, out, run = self.program, [], []
        for li, (_, target, funcs) in enumerate(prog.levels):
            run.append(li)
            if not (funcs or li == len(prog.levels) - 1):
                continue
            batches = [self.layers[i][0] for i in run]
            starts = np.cumsum([0] + [self.layers[i][1].size for i in run])[:-1]
            targets = [prog.levels[i][1] for i in run]
            consts = [(t, b.const) for t, b in zip(targets, batches) if b.has_const]
            level_const = np.cumsum([0] + [t.size if b.has_const else 0 for t, b in zip(targets, batches)])
            out.append(dict(
                layers=list(run), starts=starts,
                coef=np.concatenate([self.layers[i][1] for i in run]),
                atoms=np.concatenate([self.layers[i][2] for i in run]),
                zero=np.concatenate(targets), level_zero=np.cumsum([0] + [t.size for t in targets]),
                const_at=np.concatenate([t for t, _ in consts]) if consts else np.zeros(0, np.intp),
                const=np.concatenate([c for _, c in consts]) if consts else np.zeros(0),
                level_const=level_const,
                # the last level's functions at their atoms' rows of the atoms themselves
                funcs=[(kind, target[pos], param) for kind, pos, param in funcs]))
            run = []
        return out

    def _segment_plan(self, per) -> list:
        """Per run of levels (:meth:`_segments`), the terms of the points' groups: each term's
        index in the run's terms, its point and the atom it adds into, and where each level's
        terms start."""
        plans = []
        for seg in self.segments:
            terms, cols, slot = [], [], []
            for li, start in zip(seg["layers"], seg["starts"]):
                t, c = per[li][0], per[li][1]
                terms.append(t + start)
                cols.append(c)
                slot.append(self.program.levels[li][1][self.layers[li][0].rows[t]])
            plans.append((np.concatenate(terms), np.concatenate(cols), np.concatenate(slot),
                          np.cumsum([0] + [t.size for t in terms])))
        return plans

    def _plan(self, owner: np.ndarray):
        """Per layer, the flat (term, point) pairs of the points' groups, and the mask of
        the outputs each point computes."""
        key = owner.tobytes()
        plan = self._cache.get(key)
        if plan is None:
            B = owner.size
            per = []
            for li, (batch, _, _) in enumerate(self.layers):
                parts = [self.need[g][li] for g in owner]
                terms = np.concatenate(parts) if parts else np.zeros(0, dtype=np.intp)
                cols = np.repeat(np.arange(B), [p.size for p in parts])
                per.append([terms, cols, batch.rows[terms] * B + cols, None])  # gathers: at first use
            mask = np.ones((B, self.program.n_out), dtype=bool)
            for b, g in enumerate(owner):
                mask[b, self.groups[g]] = False
            size = mask.nbytes + sum(a.nbytes for layer in per for a in layer[:3])
            if self._cached_bytes + size > self.CACHE_BYTES:
                self._cache.clear()
                self._cached_bytes = 0
            plan = self._cache[key] = [per, mask, None]  # the runs' plans: at first use
            self._cached_bytes += size
        return plan

    def _gathers(self, coef, atoms, terms, cols, B: int):
        """A layer's coefficients and, per factor, its atoms' flat positions in the
        ``(atoms, points)`` array: the NumPy path's products as one-dimensional takes
        (a plan's, made at its first evaluation without compiled loops and counted in
        the cache's bytes)."""
        out = coef[terms], [atoms[terms, k] * B + cols for k in range(atoms.shape[1])]
        self._cached_bytes += out[0].nbytes + sum(a.nbytes for a in out[1])
        return out

    def __call__(self, values: np.ndarray, owner: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        """``values`` of shape ``(points, n_vars)``; the result ``(points, n_out)``, row ``b``
        holding the outputs of group ``owner[b]`` (``nan`` elsewhere)."""
        prog = self.program
        values = np.asarray(values, dtype=float).T
        owner = np.asarray(owner, dtype=np.intp)
        B = owner.size
        plan = self._plan(owner)
        with np.errstate(all="ignore"):
            v = prog.start(values, params, extra=1)
            v[self.one] = 1.0
            u = self._looped(v, plan, B) if prog.looped else self._plain(v, plan[0], B)
        out = u.T.copy()
        out[plan[1]] = np.nan
        return out

    def _looped(self, v: np.ndarray, plan, B: int) -> np.ndarray:
        """The outputs' layer at the points (``(n_out, points)``) on compiled loops: each run of
        levels one loop in place in the atoms ``v``, then its last level's functions, then
        the outputs one more loop."""
        prog, per = self.program, plan[0]
        if plan[2] is None:
            plan[2] = self._segment_plan(per)
            self._cached_bytes += sum(a.nbytes for run in plan[2] for a in run)
        levels_loop = grouped_levels_loop()
        for seg, (terms, cols, slot, level_terms) in zip(self.segments, plan[2]):
            levels_loop(v, seg["coef"], seg["atoms"], terms, cols, slot, level_terms, seg["zero"],
                        seg["level_zero"], seg["const_at"], seg["const"], seg["level_const"])
            prog.apply(seg["funcs"], v, v)  # in place: the level's values are its atoms' rows
        batch, coef, atoms = self.layers[-1]
        terms, cols, flat, _ = per[-1]
        return _layer(batch, grouped_loop()(v, coef, atoms, terms, cols, flat, batch.n_out * B), B)

    def _plain(self, v: np.ndarray, per, B: int) -> np.ndarray:
        """:meth:`_looped` without compiled loops: each layer's products as one-dimensional
        takes, summed by ``bincount``, then its functions, written into the atoms ``v``."""
        prog = self.program
        flat_v = v.reshape(-1)  # a view: the levels' values written into v are read here
        for li, (batch, coef, atoms) in enumerate(self.layers):
            terms, cols, flat, gathers = per[li]
            if gathers is None:
                gathers = per[li][3] = self._gathers(coef, atoms, terms, cols, B)
            c, gather = gathers
            t = c * flat_v.take(gather[0])
            for at in gather[1:]:
                t *= flat_v.take(at)
            # (bincount of no terms counts in integers)
            u = _layer(batch, np.bincount(flat, weights=t, minlength=batch.n_out * B).astype(float, copy=False), B)
            if li < len(prog.levels):
                _, target, funcs = prog.levels[li]
                prog.apply(funcs, u, v)
                v[target] = u
        return u


def _layer(batch: PolyBatch, sums: np.ndarray, B: int) -> np.ndarray:
    """A layer's values at the points, ``(n_out, points)``, from its terms' sums (flat, output
    by output), its constants added."""
    u = sums.reshape(batch.n_out, B)
    if batch.has_const:
        u += batch.const[:, None]
    return u
