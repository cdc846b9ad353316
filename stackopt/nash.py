"""The followers' (generalized) Nash equilibrium at given leader values, without a leader problem.

:func:`equilibrium` runs the equilibrium oracle once, from a seeded random start
(the followers' own dynamics, then Newton: exactly what scoring does for one
draw), and returns a :class:`NashEquilibrium`: status, KKT residual, the
followers' values and the constraints' multipliers by name. Which equilibrium
it is depends on the game's ``shared`` concept (see
:class:`~stackopt.game.StackelbergGame`): Rosen's normalized equilibrium (one
multiplier per shared constraint, ``"variational"``, or weighted by follower,
``"weighted"``), or any generalized Nash equilibrium (``"any"``: each follower
its own multiplier; the one the dynamics reach from the seed's start).

Multipliers follow the sign convention of each follower's Lagrangian
``f_i + sum mult * (constraint written <= 0 or = 0)``: ``>= 0`` for an inequality
(``body <= ub`` as ``body - ub``, ``lb <= body`` as ``lb - body``, a ranged one's
sides named ``(upper)`` and ``(lower)``), free for an equality. A shared
constraint has one multiplier under ``"variational"`` and ``"weighted"`` (follower
``i``'s own is that value divided by its weight ``r_i``) and one per follower,
``{follower: value}``, under ``"any"``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stackopt.core import Status
from stackopt.core.blas import blas_threads as blas_scope
from stackopt.core.blas import check_threads
from stackopt.kernel import kernel_of
from stackopt.oracle import Equilibrium, EquilibriumOracle, sensitivity


@dataclass(frozen=True, repr=False)
class NashEquilibrium:
    """What :func:`equilibrium` found (see the module docstring).

    ``status`` is ``converged`` where the KKT residual (infinity norm, ``residual``)
    met the oracle's tolerance and the point passed the oracle's checks (local Nash,
    no profitable deviation where a follower's problem is not provably convex);
    ``singular`` says the KKT matrix is singular there (under ``shared="any"`` where a
    shared constraint binds: the equilibria form a manifold and the multipliers are
    not unique); ``searched`` names the followers whose best responses were searched
    for better far-away ones, and why (a non-convex objective or set).
    """

    status: Status
    residual: float
    concept: str
    leader_values: dict
    follower_values: dict
    multipliers: dict
    singular: bool
    searched: dict
    message: str = ""
    oracle_equilibrium: Equilibrium | None = field(default=None, compare=False)

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    def to_dict(self) -> dict:
        """Plain values, for JSON."""
        return {"status": self.status.value, "residual": self.residual, "concept": self.concept,
                "leader_values": dict(self.leader_values), "follower_values": dict(self.follower_values),
                "multipliers": dict(self.multipliers), "singular": self.singular,
                "searched": dict(self.searched), "message": self.message}

    def __repr__(self) -> str:
        return (f"NashEquilibrium(status={self.status.value!r}, residual={self.residual:.3g}, "
                f"concept={self.concept!r}, followers={len(self.follower_values)}, "
                f"singular={self.singular})")

    def __str__(self) -> str:
        lines = [f"{self.status.value}: KKT residual {self.residual:.2e} ({self.concept} equilibrium"
                 + (", KKT matrix singular" if self.singular else "") + ")"]
        lines += [f"  {k} = {v:.10g}" for k, v in self.follower_values.items()]
        if self.multipliers:
            lines.append("multipliers:")
            for k, v in self.multipliers.items():
                text = (", ".join(f"{f}: {x:.6g}" for f, x in v.items()) if isinstance(v, dict)
                        else f"{v:.6g}")
                lines.append(f"  {k}: {text}")
        for name, why in self.searched.items():
            lines.append(f"follower {name!r} searched: {why}")
        if self.message:
            lines.append(self.message)
        return "\n".join(lines)


def equilibrium(game, leader_values=None, seed: int = 0, blas_threads: int | None = 1) -> NashEquilibrium:
    """The followers' (generalized) Nash equilibrium of ``game`` at ``leader_values``.

    ``leader_values``: a dict by the leader's Pyomo names (``{"p[1]": 2.0}``; names
    left out keep their initial values), an array in the order of the leader's
    variables, or ``None`` for the leader's initial values (clipped to its bounds).
    ``seed`` seeds the followers' random start; ``blas_threads`` as for
    :func:`stackopt.solve`. Returns a :class:`NashEquilibrium`; bad input raises
    ``ValueError`` naming it.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    threads = check_threads(blas_threads)
    game.refresh()
    k = kernel_of(game)
    p = _leader_array(k, leader_values)
    oracle = EquilibriumOracle(k)
    with blas_scope(threads):
        eq = oracle.solve(p, rng=np.random.default_rng(seed))
        singular = bool(eq.converged and sensitivity(k, eq).singular)
    message = eq.message
    if singular:
        why = (": under shared='any' the equilibria form a manifold where a shared constraint "
               "binds, and its multipliers are not unique" if k.structure.concept == "any"
               and k.structure.shared else " (a degenerate equilibrium)")
        message = (message + "\n" if message else "") + "the KKT matrix is singular at this equilibrium" + why
    return NashEquilibrium(
        status=eq.status, residual=float(eq.residual), concept=k.structure.concept,
        leader_values=k.leader_values(p), follower_values=k.follower_values(eq.x),
        multipliers=multipliers(k, eq), singular=singular,
        searched=dict(oracle.deviations.searched),
        message=message, oracle_equilibrium=eq)


def multipliers(kernel, eq) -> dict:
    """The constraints' multipliers at ``eq`` by name, in the game's own units (see the
    module docstring)."""
    k = kernel
    out = {}
    me, mi = k.eq.n_rows, k.ineq.n_rows
    nu, lam, _ = eq.multipliers()
    for name, v in zip(k.eq.names, nu[:me]):
        out[name] = float(v)
    for name, v in zip(k.ineq.names, lam[:mi]):
        out[name] = float(v)
    sm = k.smooth
    if sm is None:
        return out
    sigma = np.concatenate([nu[me:], lam[mi:]])
    for m, r in enumerate(sm.slot_row):
        name = sm.names[r]
        if sm.owner[r] < 0 and k.structure.concept == "any":
            (i,) = sm.slot_weights[m]
            out.setdefault(name, {})[k.follower_names[i]] = float(sigma[m])
        else:
            out[name] = float(sigma[m])
    return out


def _leader_array(k, leader_values) -> np.ndarray:
    if leader_values is None:
        return k.p0.copy()
    if isinstance(leader_values, dict):
        unknown = [n for n in leader_values if n not in k.p_names]
        if unknown:
            raise ValueError(f"leader_values names {', '.join(map(repr, unknown))}; the leader's "
                             f"variables are {k.p_names}")
        p = k.p0.copy()
        for n, v in leader_values.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(v):
                raise ValueError(f"leader_values[{n!r}] must be a finite number, got {v!r}")
            p[k.p_names.index(n)] = float(v)
        return p
    return k.check_leader(leader_values)
