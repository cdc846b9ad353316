"""Scoring a leader strategy: the same equilibrium oracle for every method.

A method proposes leader values; they are re-evaluated here from fresh seeded
random starts, and the reported leader objective and constraint values are the
means over the draws (paper Definition 2, eq. 6: the leader's objective and
constraints in expectation over the equilibria the followers reach).

How many draws (:func:`draw_plan`, :func:`planned_draws`):

* **one**, where the equilibrium is unique: the game's author says so with
  ``samples=1`` (:class:`~stackopt.game.StackelbergGame`: "1 for games with a
  unique equilibrium", e.g. strictly monotone followers such as the normal-form
  games') *and* the game kernel proves every follower's objective and set convex
  in its own variables (:meth:`~stackopt.kernel.GameKernel.convex_followers`). A
  follower that is not provably convex can have several best responses, hence
  several equilibria, whatever ``samples`` says (the cyber-insurance game), and
  is scored as below. The single draw is exact: standard error 0.
* otherwise **Stein's two-stage procedure**: a first stage of ``n0 = max(game.samples,
  MIN_DRAWS)`` draws, whose standard deviation ``s0`` and scale (the largest
  ``|objective|`` among them) fix the number of draws in all, ``N = ceil((s0 /
  (precision * scale))^2)``, at least ``n0`` and at most ``max_draws``: the
  standard error ``s0 / sqrt(N)`` is then at most ``precision`` times the scale
  where the cap allows. The time limit only bounds this: past the deadline no draw
  starts once two are made, and draws stopped by the clock before ``N`` are counted
  as a clock stop (:func:`stackopt.solve` then says ``time_limit``).

The 95 % interval of the mean of the ``n`` draws made is ``mean +- max(t(n0-1) s0,
t(n-1) s) / sqrt(n)`` (:func:`half_width`): Stein's interval, widened to Student's ``t``
interval over all the draws where their spread ``s`` is the larger. Why not "draw until
the standard error is small enough": that rule stops preferentially where the sample's
spread happens to be small, and its ``t`` interval then covers the expectation less
often than it says (93.5 % where the draws are normal and some 35 are needed).
Stein's ``N`` depends on the first stage alone, so that under normality the mean of the
``N`` draws is independent of ``s0`` and the interval is exact, whatever ``N`` is (the
cap and the clock included); widening it keeps it exact or conservative there, and takes
in the spread of an equilibrium the first stage did not reach. Where the objective over
the equilibria is far from normal no rule is exact with few draws: an equilibrium
reached with probability ``q`` is missed by all ``n0`` first draws with probability
``(1 - q)^n0``, and a strongly skewed spread makes every ``t`` interval of a few tens of
draws too short on one side. ``MIN_DRAWS`` is the smallest first stage that misses an
equilibrium reached one draw in ten (:data:`~stackopt.leader.problem.RARE`) with probability at most 0.05
(:data:`~stackopt.leader.problem.MISSED`): 29 draws. Measured by ``python -m stackopt.comparisons.coverage
--synthetic`` (20000 repetitions each): coverage 95.0-95.1 % for normal spreads and one
like a security game's, 92-95 % for two or three equilibria with probabilities down to 0.1
(a first stage of 20: 87-95 %; the former rule, "draw until the standard error is small
enough" from 10 draws: 65-96 %), 88-93 % for lognormal and exponential spreads (20: 86.5-92
%; former: 84-90 %), at 29-36 draws where a first stage of 20 made 20-35 and the former rule
10-32.

Draw ``s`` starts from the random point seeded by ``(seed, s)``: every method's
strategy on the same instance and seed is scored with the same draws (common
random numbers), so that differences between methods carry little of the draws'
noise.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from stackopt.core import Result, Status
from stackopt.core.blas import blas_threads as blas_scope
from stackopt.core.blas import check_threads
from stackopt.kernel import kernel_of
from stackopt.leader.problem import SEEN_EQUILIBRIA
from stackopt.oracle import Equilibrium, EquilibriumOracle, OracleCounters, distinct

CLAIM_TOL = 1e-6  # relative difference between claimed and scored values reported as a gap
MIN_CALL = 0.02  # seconds every scoring oracle call gets, even past the deadline
PRECISION = 2e-3  # target standard error of the mean objective, relative to the objective's scale
# an equilibrium the followers reach one draw in ten (RARE) is missed by the whole first stage
# with probability MISSED at most: 29 first-stage draws at least (SEEN_EQUILIBRIA)
MIN_DRAWS = SEEN_EQUILIBRIA
# (where the equilibrium is not provably unique)
MAX_DRAWS = 100  # draws at most
DISTANCE = 1e-4  # two draws reached the same equilibrium: no follower variable differs by more
LEVEL = 0.95  # of the objective's interval


@dataclass
class DrawPlan:
    """How many draws :func:`evaluate` makes: ``fixed`` draws where that is set (a given
    ``samples``, or 1 for a provably unique equilibrium), else a first stage of ``least``
    draws that fixes the number in all (:func:`planned_draws`), at most ``most``."""

    least: int
    most: int
    precision: float
    unique: bool = False
    fixed: bool = False


def draw_plan(game, kernel, samples=None, precision=PRECISION, max_draws=MAX_DRAWS) -> DrawPlan:
    """The draws scoring makes for ``game`` (see the module docstring); a given ``samples``
    is a fixed number of draws."""
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        return DrawPlan(int(samples), int(samples), precision, fixed=True)
    check_precision(precision, max_draws)
    if game.samples == 1 and all(kernel.convex_followers()):
        return DrawPlan(1, 1, float(precision), unique=True, fixed=True)
    least = min(max(game.samples, MIN_DRAWS), int(max_draws))
    return DrawPlan(least, int(max_draws), float(precision))


def check_precision(precision, max_draws) -> None:
    """Raise ``ValueError`` unless ``precision`` is a finite number > 0 and ``max_draws`` a
    positive integer."""
    if isinstance(precision, bool) or not isinstance(precision, (int, float, np.floating)) \
            or not np.isfinite(precision) or not precision > 0:
        raise ValueError(f"precision must be a finite number > 0 (a standard error relative to "
                         f"the objective's scale), got {precision!r}")
    if isinstance(max_draws, bool) or not isinstance(max_draws, (int, np.integer)) or max_draws < 1:
        raise ValueError(f"max_draws must be a positive integer, got {max_draws!r}")


@dataclass
class EquilibriumGroup:
    """Draws that reached one equilibrium (no follower variable further than ``DISTANCE``
    from the group's first draw): how many, their share, and the leader's objective and
    constraint violation there (the group's first draw)."""

    count: int
    frequency: float
    objective: float
    violation: float
    draw: int  # the group's first draw

    def as_dict(self) -> dict:
        return {"count": self.count, "frequency": self.frequency, "objective": self.objective,
                "violation": self.violation}


@dataclass
class Evaluation:
    """What the draws showed at one leader strategy. ``leader_objective`` and
    ``constraint_values`` are the means over the draws, ``constraint_violation`` the mean's
    violation (the paper's expectation), ``worst_violation`` the largest of any draw;
    ``objectives`` and ``violations`` are the draws' own."""

    leader_objective: float
    constraint_values: np.ndarray
    constraint_violation: float
    equilibrium_residual: float
    status: Status
    follower_values: dict
    equilibria: list = field(default_factory=list, repr=False)
    work: OracleCounters = field(default_factory=OracleCounters, repr=False)  # the oracle's solves
    objectives: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    violations: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    unique: bool = False  # one draw of a provably unique equilibrium: the mean is exact
    groups: list = field(default_factory=list, repr=False)  # EquilibriumGroup, most frequent first
    sense: int = -1  # the leader's, as Pyomo's: -1 maximise, 1 minimise
    note: str = ""  # where the draws stopped before the precision was reached
    first: int = 0  # the first stage's draws (Stein's), whose spread the interval takes in; 0: all

    @property
    def draws(self) -> int:
        return len(self.objectives)

    @property
    def worst_violation(self) -> float:
        return float(np.max(self.violations, initial=0.0))

    @property
    def objective_stderr(self) -> float:
        """Standard error of the mean objective: 0 for a unique equilibrium, NaN for one
        draw of a game that may have several."""
        if self.unique:
            return 0.0
        if self.draws < 2:
            return float("nan")
        return float(np.std(self.objectives, ddof=1) / np.sqrt(self.draws))

    @property
    def objective_interval(self) -> tuple[float, float]:
        """The mean objective's 95 % interval: :func:`half_width` of the draws, whose first
        ``first`` are Stein's first stage (the module docstring)."""
        m, se = self.leader_objective, self.objective_stderr
        if se == 0.0:
            return (m, m)
        if self.draws < 2:
            return (m - np.nan, m + np.nan)
        half = float(half_width(self.objectives, self.first or self.draws))
        return (m - half, m + half)

    def extreme(self, best: bool) -> dict:
        """The best (optimistic) or worst (pessimistic) draw's objective and violation, in
        the leader's sense."""
        if not self.draws:
            return {}
        key = -self.sense * self.objectives  # larger is better for the leader
        if not np.all(np.isfinite(key)):
            key = np.nan_to_num(key, nan=-np.inf)
        i = int(np.argmax(key) if best else np.argmin(key))
        return {"objective": float(self.objectives[i]), "violation": float(self.violations[i])}


def evaluate(game, leader_values, seed: int = 0, samples: int | None = None, tol: float = 1e-8,
             hint: Equilibrium | np.ndarray | None = None, deadline: float | None = None,
             blas_threads: int | None = 1, precision: float = PRECISION,
             max_draws: int = MAX_DRAWS) -> Evaluation:
    """Leader objective and constraints at the equilibria drawn for ``leader_values`` (an
    array in the order of the leader's variables, or a dict by Pyomo name such as
    ``Result.leader_values``).

    Draw ``s`` starts the oracle from the random point seeded by ``(seed, s)``; how many
    draws: ``samples`` where given, else as the module docstring says (one for a provably
    unique equilibrium, else Stein's two stages: the first fixes how many draws make the
    standard error of the mean objective at most ``precision`` times the objective's
    scale, at most ``max_draws``). ``hint`` (an
    equilibrium a method already holds) is used only where a fresh start fails to
    converge. ``deadline`` (a ``time.perf_counter()`` value) bounds the oracle's calls:
    each of the first draws gets an equal share of the time left (at least ``MIN_CALL``),
    so that a slow first draw leaves the others theirs; the game is read from its model
    first (:meth:`~stackopt.game.StackelbergGame.refresh`). ``blas_threads`` as for
    :func:`stackopt.solve`.
    """
    threads = check_threads(blas_threads)
    game.refresh()
    with blas_scope(threads):
        return _evaluate(game, leader_values, seed, samples, tol, hint, deadline, precision, max_draws)


def _evaluate(game, leader_values, seed, samples, tol, hint, deadline, precision=PRECISION,
              max_draws=MAX_DRAWS, known=()) -> Evaluation:
    """:func:`evaluate` of a game already read from its model (a solve's scoring). ``known``:
    the equilibria of the first draws, made before with the same strategy, seed, ``tol`` and
    ``hint`` on the same followers' game (:attr:`GameKernel.follower_key`); they cost nothing."""
    k = kernel_of(game)
    p = k.check_leader(leader_values)
    plan = draw_plan(game, k, samples, precision, max_draws)
    oracle = EquilibriumOracle(k, tol=tol)

    def until(draws_left):  # an equal share of the time left per draw, MIN_CALL s even past the deadline
        if deadline is None:
            return None
        now = time.perf_counter()
        return now + max((deadline - now) / draws_left, MIN_CALL)

    eqs, work, objs, cons, note = [], OracleCounters(), [], [], ""
    target = plan.least  # the draws in all: the first stage's, then Stein's N from it
    s = 0
    while s < min(target, plan.most):
        if not plan.fixed and s >= 2 and deadline is not None and time.perf_counter() >= deadline:
            # past the deadline: two draws give an interval; more would only overrun it
            why = (f"fewer than the first stage's {plan.least}" if s < plan.least
                   else f"of the {min(target, plan.most)} the first stage asked")
            note = f"the draws stopped at the deadline after {s}, {why}"
            work = work + OracleCounters(clock_stops=1)
            break
        left = max(plan.least - s, 1)  # the first stage shares the time left; a later draw may use it all
        if s < len(known):
            e = known[s]
        else:
            e = oracle.solve(p, rng=np.random.default_rng([seed, s]), deadline=until(left))
            work = work + e.counters
        if s >= len(known) and not e.converged and hint is not None:
            e2 = (oracle.solve(p, warm=hint, deadline=until(left)) if isinstance(hint, Equilibrium)
                  else oracle.solve(p, x0=np.asarray(hint), deadline=until(left)))
            work = work + e2.counters
            e = e2 if e2.residual < e.residual else e
        eqs.append(e)
        obj, con = k.leader(e.x, p)
        objs.append(float(obj))
        cons.append(np.asarray(con, dtype=float))
        s += 1
        if s == plan.least and not plan.fixed:
            target = int(planned_draws(objs, plan.precision))
            if target > plan.most:
                note = (f"the draws stopped at their cap of {plan.most}, "
                        f"{_shortfall(objs, plan.precision, target)}")
    C = np.array(cons).reshape(len(cons), k.n_c)
    mean_c = np.mean(C, axis=0) if k.n_c else np.zeros(0)
    violations = np.max(C, axis=1, initial=0.0)
    objectives = np.array(objs)
    return Evaluation(
        leader_objective=float(np.mean(objectives)),
        constraint_values=mean_c,
        constraint_violation=float(np.max(mean_c, initial=0.0)),
        equilibrium_residual=float(max(e.residual for e in eqs)),
        status=Status.CONVERGED if all(e.converged for e in eqs) else Status.NOT_CONVERGED,
        follower_values=k.follower_values(eqs[0].x),
        equilibria=eqs,
        work=work,
        objectives=objectives,
        violations=np.maximum(violations, 0.0),
        unique=plan.unique,
        groups=group_equilibria([e.x for e in eqs], objectives, violations),
        sense=int(k.leader_sense),
        note=note,
        first=plan.least if not plan.fixed else 0,
    )


def planned_draws(first, precision: float = PRECISION):
    """Stein's number of draws in all from the first stage's objectives ``first`` (the last
    axis; any leading axes are independent samples): ``ceil((s0 / (precision * scale))^2)``
    with ``s0`` their standard deviation and ``scale`` their largest ``|objective|``, at least
    their number. Draws with an undefined objective (more cannot make the mean precise) or
    all equal ask no more."""
    y = np.asarray(first, dtype=float)
    n0 = y.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s0 = np.std(y, axis=-1, ddof=1)
        scale = np.max(np.abs(y), axis=-1)
        want = np.ceil(np.square(s0 / (precision * scale)))
    want = np.where(np.isfinite(want) & (s0 > 0), want, n0)
    want = np.where(np.all(np.isfinite(y), axis=-1), want, n0)
    return np.maximum(want, n0).astype(np.int64)


def half_width(objectives, first: int, level: float = LEVEL):
    """Half the width of the mean's interval at ``level`` for the draws ``objectives`` (the
    last axis, ``n`` of them; leading axes are independent samples), whose first ``first``
    are Stein's first stage: ``max(t(first-1) s0, t(n-1) s) / sqrt(n)``, with ``s0`` the
    first stage's standard deviation and ``s`` all the draws' (the module docstring)."""
    from scipy import special  # here, not at import: a unique equilibrium's scoring never needs it

    y = np.asarray(objectives, dtype=float)
    n = y.shape[-1]
    k = min(int(first), n)
    q = 0.5 + level / 2
    s = np.std(y, axis=-1, ddof=1)
    s0 = np.std(y[..., :k], axis=-1, ddof=1)
    return np.maximum(special.stdtrit(k - 1, q) * s0, special.stdtrit(n - 1, q) * s) / np.sqrt(n)


def _shortfall(first, precision, target) -> str:
    """How far the first stage's draws are from the precision asked (where the cap stops
    the draws short of Stein's ``target``)."""
    y = np.asarray(first, dtype=float)
    s0 = float(np.std(y, ddof=1))
    scale = float(np.max(np.abs(y), initial=0.0))
    rel = s0 / scale if scale > 0 else np.inf
    return (f"short of the {target} that a standard error of {precision:g} of the objective's "
            f"scale {scale:.3g} needs (the first {len(y)} draws' standard deviation {s0:.3g}, "
            f"{rel:.3g} of the scale)")


def group_equilibria(xs, objectives, violations, distance: float = DISTANCE) -> list[EquilibriumGroup]:
    """The draws ``xs`` (the followers' values) grouped by equilibrium, most frequent first:
    a draw joins the first group whose first draw it is within ``distance`` of in every
    follower variable."""
    n = len(xs)
    return [EquilibriumGroup(count=c, frequency=c / n, objective=float(objectives[i]),
                             violation=float(max(violations[i], 0.0)), draw=i)
            for i, c in distinct(xs, distance)]


def score(game, out, method: str, seed: int, deadline: float | None = None,
          precision: float = PRECISION, max_draws: int = MAX_DRAWS) -> Result:
    """Turn a method's proposal into a :class:`Result` scored by :func:`evaluate` (of the
    game as :func:`stackopt.solve` read it from its model, with ``precision`` and
    ``max_draws`` as there); its ``oracle_solves`` are the method's (``out.work``) and the
    scoring's own. A reformulation's result (:func:`chooses_equilibrium`) says that its
    claim is an optimistic value and how far that is from the expectation scored."""
    k = kernel_of(game)
    # the initial strategy (once per game, seed and data) gets half of the time left at most:
    # the method's answer is scored with the rest
    first = None if deadline is None else time.perf_counter() + 0.5 * (deadline - time.perf_counter())
    built = None

    # the followers' equilibria from the initial strategy's draws, kept for evaluations where
    # only the leader's functions differ (another budget of a security game: models.vary)
    drawn = f"initial-equilibria-{seed}-{k.follower_key}"

    def initial_evaluation():
        nonlocal built
        known = game.recall(drawn, ())
        built = _evaluate(game, k.p0, seed, None, 1e-8, None, first, precision, max_draws,
                          known=known)
        if not built.work.clock_stops and len(built.equilibria) > len(known):
            game.remember(drawn, tuple(built.equilibria))
        return built

    # an evaluation the clock cut (draws stopped, or a solve past its deadline) is used once,
    # not kept: a later solve with more time evaluates the initial strategy in full
    initial = game.cached(f"initial-evaluation-{seed}-{k.data_key}-{precision!r}-{max_draws}",
                          initial_evaluation, keep=lambda ev: not ev.work.clock_stops)
    work = OracleCounters() if built is None else built.work  # a cached evaluation cost nothing now
    message = out.message
    # a proposal of the initial strategy itself, without a hint, has the initial evaluation
    # (the same draws of the same strategy) where the clock did not cut that
    initial_itself = (out.follower_hint is None and not initial.work.clock_stops
                      and np.array_equal(np.asarray(out.leader, dtype=float), k.p0))
    try:
        ev = initial if initial_itself else _evaluate(
            game, out.leader, seed, None, 1e-8, out.follower_hint, deadline, precision, max_draws)
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
    if ev.note:
        message = (message + "\nscoring: " + ev.note).strip()
    claim_gap, note = _claim_gap(k, out, ev)
    optimistic_claim = chooses_equilibrium(method)
    if optimistic_claim:
        note = _optimism_note(out, ev) or note
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
        oracle_solves={"method": out.work.solves(),
                       "scoring": (work if initial_itself else work + ev.work).solves()},
        **draws_fields(ev), optimistic_claim=optimistic_claim,
    )


def draws_fields(ev: Evaluation) -> dict:
    """The :class:`Result` fields that say what the draws of ``ev`` showed."""
    return dict(draws=ev.draws, objective_stderr=ev.objective_stderr,
                objective_interval=ev.objective_interval, worst_violation=ev.worst_violation,
                pessimistic=ev.extreme(best=False), optimistic=ev.extreme(best=True),
                equilibria=[g.as_dict() for g in ev.groups])


def chooses_equilibrium(method: str) -> bool:
    """Whether ``method`` chooses the followers' equilibrium together with the leader's
    strategy, as the single-level reformulations (``stackopt.methods.mpec``) do: the value
    it optimises is then the optimistic one (the best equilibrium for the leader), not the
    expectation over the equilibria the followers reach."""
    from stackopt.methods import get_method

    try:
        cls = get_method(method)
    except ValueError:
        return False
    return cls.__module__.startswith("stackopt.methods.mpec")


def _optimism_note(out, ev) -> str:
    """What a reformulation's result says: its claim is optimistic, and how far from the
    expected score it is."""
    c = out.claimed_objective
    if c is None or not np.isfinite(c):
        return ""
    best = ev.extreme(best=True)
    if ev.unique:
        return (f"optimised the optimistic value (the followers' equilibrium chosen with the "
                f"leader's strategy), here the expected one: the followers' equilibrium is "
                f"provably unique; claimed objective {c:.6g}, scored {ev.leader_objective:.6g} "
                f"(claim minus score {c - ev.leader_objective:.3g})")
    text = (f"optimised the optimistic value (the followers' equilibrium chosen with the "
            f"leader's strategy): claimed objective {c:.6g}, expected over {ev.draws} "
            f"draw{'s' if ev.draws != 1 else ''} of the followers' equilibrium {ev.leader_objective:.6g}"
            f" (claim minus expectation {c - ev.leader_objective:.3g}")
    if ev.draws > 1 and best:
        text += f"; best draw {best['objective']:.6g}"
    return text + ")"


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
