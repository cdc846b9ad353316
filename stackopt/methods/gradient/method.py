"""The gradient method: implicit gradients inside an augmented Lagrangian (paper Algorithm 1).

The leader minimises, over its box and its linear constraints in its own
variables (kept exactly by projection, :mod:`stackopt.leader.leaderset`), the
augmented Lagrangian of its other constraints ``g <= 0`` evaluated at the
equilibrium ``x*(p)`` (Powell-Hestenes-Rockafellar form, slacks at their exact
minimiser):

    L(p; lam, mu) = f(p) + sum_i (max(0, lam_i + mu g_i(p))^2 - lam_i^2) / (2 mu)

with ``f`` the leader's objective in minimisation form and ``g`` the mean of the
constraints over the sampled equilibria (or, with ``constraints="worst"``, their
largest value). Its gradient ``grad f + sum_i max(0, lam_i + mu g_i) grad g_i``
is one adjoint solve of the KKT matrix per equilibrium
(:mod:`stackopt.oracle.implicit`).

**Scale-free steps.** Every leader variable has a scale ``s_j``: its box width
where both bounds are finite, else ``max(1, |p_j|)`` at the current iterate;
steps are taken in ``u = p / s``, so a problem and its rescaled copy take the
same path and a variable without a box can grow geometrically. The objective
and each constraint are first divided by their magnitude at the start (the
larger of the value and the largest entry of the scaled gradient:
:class:`~stackopt.methods.gradient.merit.Scales`), so that the penalty and the
tolerances mean the same whatever the units: the objective or a constraint
multiplied by any positive factor gives the same run. Two step rules follow each
other (:mod:`stackopt.methods.gradient.steps`):

1. the paper's Adam with ``lr`` (default 1e-2) *relative to each variable's
   scale*, multipliers updated every ``multiplier_every`` steps as in the
   paper's Algorithm 1. Adam travels far and follows curved valleys (the
   constraints tie variables together) quickly, but does not settle;
2. once ``PATIENCE`` inner solves in a row either did not lower ``L`` or did not
   travel (no variable's net displacement reached a tenth of its path, over the
   inner solve or over it and the one before: Adam circling between two points,
   the multiplier update undoing each inner solve's gain), and for the
   last three tenths of the step budget in any case, the spectral
   projected gradient (Birgin, Martinez, Raydan 2000) in a diagonal metric:
   Barzilai-Borwein lengths, which need no learning rate, a non-monotone
   Armijo line search on ``L``, multipliers updated after every inner solve
   that did not stall (it met its tolerance, tightened tenfold per outer
   iteration, or used ``multiplier_every`` steps), and ``mu <-
   penalty_growth * mu`` where an inner solve met its tolerance and the
   constraint measure ``V = ||max(g, -lam/mu)||_inf`` did not fall below
   ``penalty_decrease * V_prev`` (the textbook augmented Lagrangian, ALGENCAN).
   It converges to a stationary point where the equilibrium map is smooth; on
   a kink of ``L`` (an ``abs`` in the game) variables along which ``L`` rises
   both ways are held and count as stationary (:class:`~stackopt.methods.gradient.steps.SpgStep`).

``optimizer="spg"`` uses the second rule throughout, ``"radam"`` Adam rectified
while its second moment rests on few gradients (RAdam: momentum steps first, then
Adam's steps growing to their full length; see
:class:`~stackopt.methods.gradient.steps.AdamStep`) and ``"sgd"`` plain SGD in place
of Adam. A trial whose equilibrium branch cannot be followed by warm
starts counts as a failed trial (halved twice, then the followers re-adjust by
their own dynamics). The initial ``mu`` defaults to ALGENCAN's
``10 max(1, |f|) / max(1, ||g+||^2 / 2)`` (scaled functions).

**Stopping rule.** Every step records the stationarity measure
``||(P(p - s^2 grad L) - p) / s||_inf`` (the scaled projected gradient of the
scaled augmented Lagrangian) and the violation. The method stops, ``converged``,
once the measure is below ``stationarity_tol * max(1, |f|)`` (``f`` scaled) and
``V`` (each constraint's violation in its scale, and complementarity) is below
``feasibility_tol``: a first-order KKT point of the leader's problem. It ends
``infeasible`` where the constraints do not improve over a solved inner problem
at a stationary point of their scaled violation over the leader's set (no
penalty can bring the iterates to feasibility there), returning the strategy
with the smallest violation found. Otherwise it ends once the steps or the
outer iterations reach ``steps`` (``max_iterations``), at the time limit (every
loop checks it), or where the line search finds no decrease three times in a
row, outer iterations that left the strategy where it was aside (``not_converged``).

**Several equilibria** (:mod:`stackopt.leader.answers`). ``samples_per_step``
equilibria are tracked at once; the objective is their mean (``objective="mean"``,
the sample average of the paper's expectation) or the worst of them
(``"worst"``), the constraints their mean or each at its worst
(``constraints``). With ``draws="fixed"`` the draws start at the same seeded
points at every strategy, those of scoring's first draws
(:mod:`stackopt.scoring`): common random numbers across iterates, so that the
sample average optimised is a deterministic function of the leader's variables
and the strategies evaluated on fresh draws are compared on the same draws; the
default ``"fresh"`` draws new starts at every evaluation (a few fixed draws can
be fitted: see :func:`stackopt.leader.problem.declare_sampling`). At multiplier updates (every one while fresh
draws move the equilibria, then at doubling intervals), every
``resample_every`` steps and at the end, the current strategy is evaluated on
fresh draws, the followers' own dynamics from seeded random starts, as scoring
does; where they reach other equilibria than the tracked ones, the method
re-anchors on them, so it optimises what the followers would play rather than a
branch it steered. After every inner solve the tracked equilibria are checked
for a follower's profitable deviation (:mod:`stackopt.oracle.deviation`): a branch that
stopped being a Nash equilibrium is left for the one the followers reach from
the deviation. Only strategies evaluated on fresh draws are returned (the
best feasible tracked iterates are evaluated so at the end): with
``select="best-feasible"``, of the best ten with violation at most
``feasibility_tol``, the one with the best mean objective over five further
fresh draws among those whose mean constraints hold, and hold again over 29
equilibria at least, as many as scoring's first stage draws (else the next, or
the start: :meth:`stackopt.leader.Answers.confirm`); with fixed draws, the best
on the fixed draws: they are common to all; with ``select="last"`` the last.
"""
from __future__ import annotations

import time
from dataclasses import make_dataclass

import numpy as np
from pyomo.common.config import (
    ConfigDict,
    ConfigValue,
    In,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)

from stackopt.kernel import kernel_of
from stackopt.leader import LeaderProblem, declare_sampling, fixed_seed
from stackopt.oracle import EquilibriumOracle

from ..registry import Method, register_method
from .steps import AdamStep, SpgStep


def _unit_interval(v):
    v = float(v)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"expected a number in [0, 1), got {v!r}")
    return v


def _optional_positive(v):
    if v is None:
        return None
    v = float(v)
    if not v > 0 or not np.isfinite(v):
        raise ValueError(f"expected a finite number > 0 or None, got {v!r}")
    return v


def _greater_than_one(v):
    v = float(v)
    if not v > 1 or not np.isfinite(v):
        raise ValueError(f"expected a finite number > 1, got {v!r}")
    return v


CONFIG = ConfigDict("gradient")  # the gradient method's options, declared once
CONFIG.declare("steps", ConfigValue(5000, PositiveInt, "largest number of gradient steps"))
CONFIG.declare("optimizer", ConfigValue(
    "adam", In(["adam", "radam", "sgd", "spg"]),
    "steps: adam (the paper's), radam (Adam rectified while its second moment rests on few "
    "steps) or sgd, lr relative to each variable's scale, until they stop improving, then "
    "spg; or spg throughout (spectral projected gradient in a diagonal metric with a line "
    "search, no learning rate)"))
CONFIG.declare("lr", ConfigValue(1e-2, PositiveFloat,
                                 "radam/adam/sgd: step relative to each leader variable's scale"))
CONFIG.declare("beta1", ConfigValue(0.9, _unit_interval, "Adam first-moment decay"))
CONFIG.declare("beta2", ConfigValue(0.999, _unit_interval, "Adam second-moment decay"))
CONFIG.declare("lr_decay", ConfigValue(
    "none", In(["none", "cosine"]), "radam/adam/sgd: learning-rate schedule over the steps"))
CONFIG.declare("mu", ConfigValue(
    None, _optional_positive, "initial augmented Lagrangian penalty (None: scaled to the problem)"))
CONFIG.declare("penalty_growth", ConfigValue(
    10.0, _greater_than_one, "factor on mu where the constraints did not improve enough"))
CONFIG.declare("penalty_decrease", ConfigValue(
    0.5, _unit_interval, "required decrease of the constraint measure between multiplier updates"))
CONFIG.declare("multiplier_every", ConfigValue(
    100, PositiveInt, "largest number of steps between multiplier updates (K)"))
CONFIG.declare("stationarity_tol", ConfigValue(
    1e-6, PositiveFloat, "stop once the scaled projected gradient is below this times max(1, |f|) "
    "(f divided by its magnitude at the start)"))
CONFIG.declare("feasibility_tol", ConfigValue(
    1e-9, NonNegativeFloat, "largest violation of an iterate counted as feasible, each constraint "
    "relative to its magnitude at the start (the larger of its value and its scaled gradient, "
    "which for a budget is the budget times the spend's sensitivity: a tolerance of 1e-9 leaves "
    "about 1e-6 of a budget of 1000)"))
CONFIG.declare("oracle_tol", ConfigValue(1e-8, PositiveFloat, "equilibrium residual tolerance (in the "
                                         "followers' units, see stackopt.oracle)"))
CONFIG.declare("samples_per_step", ConfigValue(1, PositiveInt, "equilibria tracked and averaged"))
CONFIG.declare("jacobian_every", ConfigValue(
    1, PositiveInt, "radam/adam/sgd: steps between fresh game Jacobians in the adjoint (1: exact "
    "gradients; more reuses the last one while the active sets stay)"))
CONFIG.declare("resample_every", ConfigValue(
    0, NonNegativeInt, "steps between fresh equilibrium draws besides those at every multiplier "
    "update and at the end (0: only those)"))
CONFIG.declare("constraints", ConfigValue(
    "mean", In(["mean", "worst"]), "leader constraints over the sampled equilibria: their mean "
    "(in expectation, paper Definition 2) or their worst value (met at every sampled equilibrium)"))
declare_sampling(CONFIG)  # objective, draws
CONFIG.declare("select", ConfigValue(
    "best-feasible", In(["best-feasible", "last"]), "which strategy evaluated on fresh draws to return"))


def _check(self) -> None:
    """Options that contradict each other are an error naming both."""
    if self.resample_every > self.steps:
        raise ValueError(
            f"resample_every={self.resample_every} is larger than steps={self.steps}: no fresh "
            "draw would be taken before the end; lower resample_every or raise steps")


# the options as plain attributes (read every step): one field per entry of CONFIG
Options = make_dataclass(
    "Options", [(name, object) for name in CONFIG], frozen=True,
    namespace={"__doc__": "The gradient method's options (those of ``CONFIG``) as plain attributes.",
               "__module__": __name__, "check": _check})


@register_method("gradient", "augmented-lagrangian")
class GradientMethod(Method):
    """Augmented Lagrangian with scale-free projected steps through the followers' equilibrium.

    Generalized Nash games (shared constraints, follower constraints in any smooth form):
    the followers play the equilibrium of the game's ``shared`` concept, as the oracle
    finds it (Rosen's normalized equilibrium for ``"variational"`` and ``"weighted"``; the
    one the followers' best responses reach for ``"any"``, where the KKT matrix is
    singular on a shared constraint and the result says so: ``singular_kkt``).
    """

    CONFIG = CONFIG

    def check(self, config) -> None:
        Options(**config.value()).check()

    def run(self, game, config, seed, time_limit):
        opts = Options(**config.value())
        deadline = time.perf_counter() + (time_limit if time_limit else np.inf)  # preparation included
        k = kernel_of(game)
        oracle = EquilibriumOracle(k, tol=opts.oracle_tol)
        prob = LeaderProblem(k, oracle, np.random.default_rng(seed), samples=opts.samples_per_step,
                             aggregate=opts.constraints, objective=opts.objective,
                             fixed_seed=fixed_seed(opts.draws, seed),
                             deadline=deadline)
        from .lagrangian import AugmentedLagrangian

        rules = [SpgStep(prob, opts)] if opts.optimizer == "spg" else [AdamStep(prob, opts), SpgStep(prob, opts)]
        return AugmentedLagrangian(prob, opts, deadline, self.progress).solve(rules)
