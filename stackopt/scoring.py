"""Scoring a leader strategy: the same equilibrium oracle for every method.

A method proposes leader values; they are re-evaluated here from fresh seeded
random starts (``game.samples`` draws where equilibria can be many), and the
reported leader objective and constraint values are the means over the draws
(paper Definition 2: objective and constraints in expectation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from stackopt.core import Result, Status
from stackopt.core.blas import blas_threads as blas_scope
from stackopt.core.blas import check_threads
from stackopt.kernel import kernel_of
from stackopt.oracle import Equilibrium, EquilibriumOracle, OracleCounters

CLAIM_TOL = 1e-6  # relative difference between claimed and scored values reported as a gap
MIN_CALL = 0.02  # seconds every scoring oracle call gets, even past the deadline


@dataclass
class Evaluation:
    leader_objective: float
    constraint_values: np.ndarray
    constraint_violation: float
    equilibrium_residual: float
    status: Status
    follower_values: dict
    equilibria: list = field(default_factory=list, repr=False)
    work: OracleCounters = field(default_factory=OracleCounters, repr=False)  # the oracle's solves


def evaluate(game, leader_values, seed: int = 0, samples: int | None = None, tol: float = 1e-8,
             hint: Equilibrium | np.ndarray | None = None, deadline: float | None = None,
             blas_threads: int | None = 1) -> Evaluation:
    """Leader objective and constraints at the equilibria drawn for ``leader_values`` (an
    array in the order of the leader's variables, or a dict by Pyomo name such as
    ``Result.leader_values``).

    Draw ``s`` of ``samples`` starts the oracle from the random point seeded by
    ``(seed, s)``. ``hint`` (an equilibrium a method already holds) is used only
    where a fresh start fails to converge. ``deadline`` (a ``time.perf_counter()``
    value) bounds the oracle's calls: each draw gets an equal share of the time
    left (at least ``MIN_CALL``), so that a slow first draw leaves the others
    theirs and the draws end near the deadline; the game is read from its model
    first (:meth:`~stackopt.game.StackelbergGame.refresh`). ``blas_threads`` as for
    :func:`stackopt.solve`.
    """
    threads = check_threads(blas_threads)
    game.refresh()
    with blas_scope(threads):
        return _evaluate(game, leader_values, seed, samples, tol, hint, deadline)


def _evaluate(game, leader_values, seed, samples, tol, hint, deadline) -> Evaluation:
    """:func:`evaluate` of a game already read from its model (a solve's scoring)."""
    k = kernel_of(game)
    p = k.check_leader(leader_values)
    samples = game.samples if samples is None else samples
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    oracle = EquilibriumOracle(k, tol=tol)

    def until(draws_left):  # an equal share of the time left per draw, MIN_CALL s even past the deadline
        if deadline is None:
            return None
        now = time.perf_counter()
        return now + max((deadline - now) / draws_left, MIN_CALL)

    eqs, work = [], OracleCounters()
    for s in range(samples):
        e = oracle.solve(p, rng=np.random.default_rng([seed, s]), deadline=until(samples - s))
        work = work + e.counters
        if not e.converged and hint is not None:
            e2 = (oracle.solve(p, warm=hint, deadline=until(samples - s)) if isinstance(hint, Equilibrium)
                  else oracle.solve(p, x0=np.asarray(hint), deadline=until(samples - s)))
            work = work + e2.counters
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
        work=work,
    )


def score(game, out, method: str, seed: int, deadline: float | None = None) -> Result:
    """Turn a method's proposal into a :class:`Result` scored by :func:`evaluate` (of the
    game as :func:`stackopt.solve` read it from its model); its ``oracle_solves`` are the
    method's (``out.work``) and the scoring's own."""
    k = kernel_of(game)
    # the initial strategy (once per game, seed and data) gets half of the time left at most:
    # the method's answer is scored with the rest
    first = None if deadline is None else time.perf_counter() + 0.5 * (deadline - time.perf_counter())
    built = None

    def initial_evaluation():
        nonlocal built
        built = _evaluate(game, k.p0, seed, None, 1e-8, None, first)
        return built

    initial = game.cached(f"initial-evaluation-{seed}-{k.data_key}", initial_evaluation)
    work = OracleCounters() if built is None else built.work  # a cached evaluation cost nothing now
    message = out.message
    try:
        ev = _evaluate(game, out.leader, seed, None, 1e-8, out.follower_hint, deadline)
    except Exception as exc:  # scoring must not lose the method's outcome
        return Result(game=game.name, method=method, status=out.status, seed=seed,
                      oracle_solves={"method": out.work.solves(), "scoring": work.solves()},
                      initial_objective=initial.leader_objective,
                      leader_values=k.leader_values(np.nan_to_num(out.leader)),
                      claimed_objective=out.claimed_objective,
                      claimed_violation=out.claimed_violation, bound=out.bound, gap=out.gap,
                      singular_kkt=out.singular_kkt, history=out.history,
                      message=(message + f"\nscoring failed: {type(exc).__name__}: {exc}").strip())
    status = out.status
    if ev.status is not Status.CONVERGED:
        said = "; ".join(dict.fromkeys(e.message for e in ev.equilibria if e.message))
        message = (message + f"\nequilibrium oracle did not converge at the final strategy "
                   f"(residual {ev.equilibrium_residual:.3g})" + (f": {said}" if said else "")).strip()
        if status in (Status.CONVERGED, Status.OPTIMAL):
            status = Status.EQUILIBRIUM_NOT_FOUND
    elif k.undefined(ev.leader_objective, ev.constraint_values):
        message = (message + "\nthe followers' equilibrium was found at the final strategy, but "
                   + k.undefined(ev.leader_objective, ev.constraint_values)).strip()
        if status in (Status.CONVERGED, Status.OPTIMAL):
            status = Status.NOT_CONVERGED
    claim_gap, note = _claim_gap(k, out, ev)
    if note:
        message = (message + "\n" + note).strip()
    return Result(
        game=game.name, method=method, status=status, seed=seed,
        leader_objective=ev.leader_objective, initial_objective=initial.leader_objective,
        constraint_violation=ev.constraint_violation, equilibrium_residual=ev.equilibrium_residual,
        leader_values=k.leader_values(out.leader), follower_values=ev.follower_values,
        claimed_objective=out.claimed_objective, claimed_violation=out.claimed_violation,
        claim_gap=claim_gap, bound=out.bound, gap=out.gap,
        singular_kkt=out.singular_kkt, message=message, history=out.history,
        oracle_solves={"method": out.work.solves(), "scoring": (work + ev.work).solves()},
    )


def _claim_gap(k, out, ev):
    """How far the method's own view of its strategy is from the scored one, and a
    message where they differ by more than the scoring's tolerance."""
    parts = []
    if out.claimed_objective is not None and np.isfinite(out.claimed_objective):
        parts.append(abs(ev.leader_objective - out.claimed_objective))
    if out.claimed_violation is not None and np.isfinite(out.claimed_violation):
        parts.append(abs(ev.constraint_violation - out.claimed_violation))
    if not parts:
        return None, ""
    gap = float(max(parts))
    if gap <= CLAIM_TOL * (1.0 + abs(ev.leader_objective)):
        return gap, ""
    hint = out.follower_hint
    x = hint.x if isinstance(hint, Equilibrium) else hint
    apart = ""
    if x is not None and ev.equilibria:
        apart = (f"; the followers' values differ by up to "
                 f"{float(np.max(np.abs(np.asarray(x) - ev.equilibria[0].x), initial=0.0)):.3g}")
    viol = "" if out.claimed_violation is None else f", violation {out.claimed_violation:.6g}"
    return gap, (f"the method's own equilibrium gives objective {out.claimed_objective:.6g}{viol}; "
                 f"scored from fresh starts: objective {ev.leader_objective:.6g}, violation "
                 f"{ev.constraint_violation:.6g}{apart}")
