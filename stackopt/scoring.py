"""Scoring a leader strategy: the same equilibrium oracle for every method.

A method proposes leader values; they are re-evaluated here from fresh seeded
random starts (``game.samples`` draws where equilibria can be many), and the
reported leader objective and constraint values are the means over the draws
(paper Definition 2: objective and constraints in expectation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .kernel import kernel_of
from .oracle import Equilibrium, EquilibriumOracle
from .result import Result, Status


@dataclass
class Evaluation:
    leader_objective: float
    constraint_values: np.ndarray
    constraint_violation: float
    equilibrium_residual: float
    status: Status
    follower_values: dict
    equilibria: list = field(default_factory=list, repr=False)


def evaluate(game, leader_values, seed: int = 0, samples: int | None = None, tol: float = 1e-6,
             hint: Equilibrium | np.ndarray | None = None) -> Evaluation:
    """Leader objective and constraints at the equilibria drawn for ``leader_values``.

    Draw ``s`` of ``samples`` starts the oracle from the random point seeded by
    ``(seed, s)``. ``hint`` (an equilibrium a method already holds) is used only
    where a fresh start fails to converge.
    """
    k = kernel_of(game)
    p = k.check_leader(leader_values)
    samples = game.samples if samples is None else samples
    if not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    oracle = EquilibriumOracle(k, tol=tol)
    eqs = []
    for s in range(samples):
        e = oracle.solve(p, rng=np.random.default_rng([seed, s]))
        if not e.converged and hint is not None:
            e2 = (oracle.solve(p, warm=hint) if isinstance(hint, Equilibrium)
                  else oracle.solve(p, x0=np.asarray(hint)))
            e = e2 if e2.residual < e.residual else e
        eqs.append(e)
    objs, cons = zip(*(k.leader(e.x, p) for e in eqs))
    mean_c = np.mean(np.array(cons), axis=0) if k.n_c else np.zeros(0)
    return Evaluation(
        leader_objective=float(np.mean(objs)),
        constraint_values=mean_c,
        constraint_violation=float(np.max(mean_c, initial=0.0)),
        equilibrium_residual=float(max(e.residual for e in eqs)),
        status=Status.CONVERGED if all(e.converged for e in eqs) else Status.NOT_CONVERGED,
        follower_values=k.follower_values(eqs[0].x),
        equilibria=eqs,
    )


def score(game, out, method: str, seed: int) -> Result:
    """Turn a method's proposal into a :class:`Result` scored by :func:`evaluate`."""
    k = kernel_of(game)
    initial = game.cached(f"initial-evaluation-{seed}", lambda: evaluate(game, k.p0, seed=seed))
    message = out.message
    try:
        ev = evaluate(game, out.leader, seed=seed, hint=out.follower_hint)
    except Exception as exc:  # scoring must not lose the method's outcome
        return Result(game=game.name, method=method, status=out.status, seed=seed,
                      initial_objective=initial.leader_objective,
                      leader_values=k.leader_values(np.nan_to_num(out.leader)),
                      claimed_objective=out.claimed_objective, bound=out.bound, gap=out.gap,
                      singular_kkt=out.singular_kkt, history=out.history,
                      message=(message + f"\nscoring failed: {type(exc).__name__}: {exc}").strip())
    if ev.status is not Status.CONVERGED:
        message = (message + f"\nequilibrium oracle did not converge at the final strategy "
                   f"(residual {ev.equilibrium_residual:.3g})").strip()
    return Result(
        game=game.name, method=method, status=out.status, seed=seed,
        leader_objective=ev.leader_objective, initial_objective=initial.leader_objective,
        constraint_violation=ev.constraint_violation, equilibrium_residual=ev.equilibrium_residual,
        leader_values=k.leader_values(out.leader), follower_values=ev.follower_values,
        claimed_objective=out.claimed_objective, bound=out.bound, gap=out.gap,
        singular_kkt=out.singular_kkt, message=message, history=out.history,
    )
