"""The equilibrium oracle: the followers' Nash equilibrium for a leader strategy.

``oracle.solve(p, warm=eq)`` follows a nearby equilibrium: a predictor along
its tangent, then the :class:`~stackopt.newton.NewtonEngine`. Without ``warm``
the followers start cold, from ``x0`` or a seeded random feasible point drawn
from ``rng``, and adjust by the game's dynamics
(:mod:`stackopt.dynamics`: gradient play where every follower's set is
simple, else damped best responses), which select among several equilibria
the way the followers' own adjustment would; Newton finishes once the
dynamics' steps are small, and its answer is kept if every follower's reduced
Hessian is positive semidefinite (a local Nash equilibrium, not merely a KKT
point) and no follower gains by a unilateral deviation (a Nash equilibrium;
:mod:`stackopt.coldstart`, :mod:`stackopt.deviation`). A warm start that Newton cannot finish falls back to the cold dynamics
from the warm start's values unless ``fallback=False``.

Every solve returns an :class:`~stackopt.equilibrium.Equilibrium` whose
``status`` says whether the residual met ``tol``; iteration and time budgets
end every loop. All constants are options of :attr:`EquilibriumOracle.CONFIG`;
:attr:`EquilibriumOracle.counters` counts cold starts, warm solves, Newton
iterations, dynamics steps and best responses.
"""
from __future__ import annotations

import time

import numpy as np
from pyomo.common.config import ConfigDict, ConfigValue, In, NonNegativeInt, PositiveFloat, PositiveInt

from .best_response import BestResponses
from .coldstart import ColdStart
from .dynamics import GradientPlay, ImplicitGradientPlay, Relaxation
from .deviation import Deviations
from .equilibrium import WORK, Equilibrium, OracleCounters
from .implicit import tangent
from .linalg import SOLVERS, make_solver
from .newton import NewtonEngine, NewtonResult
from .residual import KKTResidual
from .result import Status
from .sets import FollowerSets

__all__ = ["Equilibrium", "EquilibriumOracle", "OracleCounters"]


def _damping(v):
    v = float(v)
    if not 0 < v <= 1:
        raise ValueError(f"damping must be in (0, 1], got {v!r}")
    return v


def _ladder(v):
    vals = tuple(float(t) for t in v)
    if not vals or any(not t > 0 for t in vals) or any(b >= a for a, b in zip(vals, vals[1:])):
        raise ValueError(f"handover_ladder must be a decreasing sequence of positive numbers, got {v!r}")
    return vals


def _cold_start(v):
    if v is not None and v not in ("gradient-play", "relaxation", "auto"):
        raise ValueError(f"cold_start must be 'gradient-play', 'relaxation' or 'auto', got {v!r}")
    return v


def _options(cfg: ConfigDict) -> ConfigDict:
    d = cfg.declare
    d("tol", ConfigValue(1e-6, PositiveFloat, "infinity norm of the KKT residual at which a solve has converged"))
    d("time_limit", ConfigValue(60.0, PositiveFloat, "seconds allowed for one solve"))
    d("cold_start", ConfigValue(None, _cold_start, "cold-start dynamics: 'gradient-play', 'relaxation' "
      "(damped best response) or 'auto' (Newton first, kept if second-order conditions hold); "
      "None: the game's own dynamics"))
    d("max_newton", ConfigValue(50, PositiveInt, "Newton steps of an 'auto' cold start"))
    d("max_warm_newton", ConfigValue(10, PositiveInt, "Newton steps of a warm solve; a warm start "
      "that needs more has lost its branch"))
    d("handover_newton", ConfigValue(20, PositiveInt, "Newton steps after a hand-over from the dynamics"))
    d("handover_ladder", ConfigValue((1e-4, 1e-5, 1e-6, 1e-7), _ladder, "gradient-play step sizes at "
      "which Newton takes over, tried in turn where Newton cannot finish from the previous one"))
    d("play_step", ConfigValue(0.5, PositiveFloat, "initial gradient-play step eta"))
    d("play_budget", ConfigValue(1000, PositiveInt, "gradient-play steps per hand-over attempt"))
    d("play_patience", ConfigValue(10, PositiveInt, "gradient-play steps per window of its oscillation "
      "test: eta is halved where a window's mean step is not below 0.9 times the previous window's and "
      "the play's net displacement over it is under half its path"))
    d("cold_restarts", ConfigValue(3, NonNegativeInt, "further random starts when gradient play does "
      "not settle (with a random stream), before best responses"))
    d("damping", ConfigValue(0.5, _damping, "relaxation: x <- (1 - d) x + d BR(x)"))
    d("min_damping", ConfigValue(0.05, PositiveFloat, "relaxation: where the damped map does not "
      "contract (relaxation_patience sweeps without a smaller step) and Newton cannot finish from its "
      "last point, d is halved and the relaxation goes on, down to this"))
    d("max_relaxation", ConfigValue(300, PositiveInt, "best-response sweeps per solve"))
    d("relaxation_tol", ConfigValue(1e-3, PositiveFloat, "relaxation step below which Newton takes over"))
    d("relaxation_patience", ConfigValue(30, PositiveInt, "best-response sweeps without a smaller step "
      "after which the relaxation stops (the damped map does not contract) and Newton is tried from "
      "its last best responses"))
    d("relaxation_ladder", ConfigValue((1.0, 1e-1, 1e-2), _ladder, "predicted distances from the relaxation's "
      "limit at which Newton takes over earlier; its answer is kept only within that distance and "
      "where it attracts the damped best-response map"))
    d("armijo", ConfigValue(1e-4, PositiveFloat, "sufficient-decrease constant of the line searches"))
    d("min_step", ConfigValue(1e-4, PositiveFloat, "shortest line-search step"))
    d("active_tol", ConfigValue(1e-10, float, "the active-set rule's tolerance (see stackopt.residual)"))
    d("second_order_tol", ConfigValue(1e-8, PositiveFloat, "relative eigenvalue tolerance of the "
      "second-order (local Nash) test"))
    d("linear_solver", ConfigValue("auto", In(SOLVERS), "KKT solves: 'dense' LU, 'sparse' LU, "
      "'iterative' (GMRES + ILU) or 'auto' (dense up to dense_max unknowns or when dense)"))
    d("dense_max", ConfigValue(400, PositiveInt, "'auto': largest game factorised densely whatever its sparsity"))
    d("pivot_tol", ConfigValue(1e-12, PositiveFloat, "relative pivot below which the KKT matrix of an "
      "equilibrium is singular (then least squares, flagged)"))
    d("newton_pivot_tol", ConfigValue(1e-14, PositiveFloat, "the same for Newton steps"))
    d("deviation_rounds", ConfigValue(3, NonNegativeInt, "cold starts: searches for a follower's "
      "profitable deviation from a local Nash equilibrium, each followed by the dynamics from the "
      "deviation (see stackopt.deviation); 0: local Nash equilibria are accepted as they are"))
    d("deviation_starts", ConfigValue(1, NonNegativeInt, "random starts per follower of a deviation "
      "search, besides the corners of its set"))
    d("deviation_tol", ConfigValue(1e-6, PositiveFloat, "relative objective improvement that makes "
      "a deviation profitable"))
    d("br_tol", ConfigValue(1e-10, PositiveFloat, "best responses: optimality tolerance"))
    d("br_acceptable_tol", ConfigValue(1e-8, PositiveFloat, "best responses: Ipopt's acceptable_tol"))
    d("br_max_iter", ConfigValue(500, PositiveInt, "best responses: Ipopt's max_iter"))
    d("br_newton_iter", ConfigValue(50, PositiveInt, "best responses of box-only followers: "
      "projected Newton steps before Ipopt takes over"))
    d("br_spg_iter", ConfigValue(500, PositiveInt, "best responses of followers with a box and one row: "
      "spectral projected gradient steps before Ipopt takes over"))
    d("br_exact_hessian_max", ConfigValue(60, PositiveInt, "best responses: largest game (followers' "
      "variables) for which Ipopt gets the exact Hessian block (each costs a game Jacobian)"))
    return cfg


class EquilibriumOracle:
    """Find the followers' equilibrium of a :class:`~stackopt.kernel.GameKernel` (see the module
    docstring); options as keywords, validated by :attr:`CONFIG`."""

    CONFIG = _options(ConfigDict("oracle"))

    def __init__(self, kernel, **options):
        self.config = cfg = self.CONFIG(options)
        if cfg.cold_start is None:
            cfg.cold_start = "relaxation" if kernel.dynamics == "best-response" else "gradient-play"
        self.kernel = k = kernel
        self.counters = OracleCounters()
        self.system = KKTResidual(k, active_tol=cfg.active_tol)
        n, nnz = k.n_x, k.Jx_nnz
        self.solver = make_solver(cfg.linear_solver, n, nnz, cfg.dense_max, rtol=cfg.pivot_tol)
        newton_solver = make_solver(self.solver.name, n, nnz, cfg.dense_max, rtol=cfg.newton_pivot_tol)
        self.newton = NewtonEngine(self.system, newton_solver, cfg.tol, cfg.armijo, cfg.min_step)
        self.sets = FollowerSets(k)
        self.responses = BestResponses(k, self.sets, cfg, self.counters)
        self.play = GradientPlay(k, self.sets, cfg.play_step, cfg.play_patience)
        self.implicit_play = ImplicitGradientPlay(self.newton, cfg.play_step)
        self.relax = Relaxation(k, self.responses, cfg.damping, cfg.relaxation_patience)
        self.deviations = Deviations(k, self.sets, self.responses, cfg.deviation_starts, cfg.deviation_tol)
        self.cold = ColdStart(self)

    # ---------------------------------------------------------------- solve
    def solve(self, p, *, warm: Equilibrium | None = None, x0: np.ndarray | None = None,
              rng=None, fallback: bool = True) -> Equilibrium:
        """The equilibrium at leader strategy ``p`` (see the module docstring).

        ``warm``: a nearby equilibrium to follow; ``x0``: follower values the cold
        dynamics start from; neither: a random start drawn from ``rng`` (a seed or
        Generator). With ``x0`` or a warm fallback, ``rng`` also gives further random
        starts where gradient play does not settle. ``fallback=False``: a warm start
        Newton cannot finish returns unconverged at once.
        """
        p = self.kernel.check_leader(p)
        if warm is not None and x0 is not None:
            raise ValueError("give warm= (an Equilibrium) or x0= (follower values), not both")
        if warm is not None and not isinstance(warm, Equilibrium):
            raise ValueError(f"warm must be an Equilibrium, got {type(warm).__name__}")
        deadline = time.perf_counter() + self.config.time_limit
        eq = self._solve(p, warm, x0, rng, fallback, deadline)
        if time.perf_counter() > deadline:  # a check of the clock may have cut it short (its
            WORK["clock_stops"] += 1        # dynamics, Newton or a deviation search): not a budget
        return eq

    def _solve(self, p, warm, x0, rng, fallback, deadline) -> Equilibrium:
        tally = [0, 0]  # Newton iterations, dynamics steps
        if warm is not None:
            self.counters.warm_solves += 1
            WORK["warm_solves"] += 1
            res = self._warm(warm, p, deadline, tally)
            if res.converged or not fallback:
                return self._result(res.z, p, tally, res.residual)
            start, restarts = warm.x, (self.config.cold_restarts if rng is not None else 0)
        elif x0 is not None:
            start, restarts = x0, (self.config.cold_restarts if rng is not None else 0)
        else:
            start, restarts = None, self.config.cold_restarts
        self.counters.cold_starts += 1
        WORK["cold_starts"] += 1
        return self.cold.run(start, p, deadline, np.random.default_rng(rng), restarts, tally,
                             checked=warm is None)

    def _warm(self, warm, p, deadline, tally) -> NewtonResult:
        z = (warm.x.copy(), warm.nu.copy(), warm.lam.copy(), warm.w.copy())
        lin = None
        if warm.p.shape == p.shape and warm.system is self.system:
            lin = warm.linearization()
            if np.any(p != warm.p):  # predictor along the tangent
                dx, dnu, dlam = tangent(self.kernel, warm, p - warm.p)
                k = self.kernel
                z = (np.clip(z[0] + dx, k.x_lb, k.x_ub), z[1] + dnu, np.maximum(z[2] + dlam, 0.0), z[3])
        res = self.newton.solve(z, p, deadline, self.config.max_warm_newton, chord=lin)
        tally[0] += res.iterations
        return res

    # -------------------------------------------------------------- helpers
    def residual(self, x, nu, lam, w, p) -> np.ndarray:
        """The KKT residual (see :mod:`stackopt.residual`)."""
        return self.system.value(x, nu, lam, w, p)

    def random_start(self, p, rng) -> np.ndarray:
        """A seeded random feasible point (see :meth:`FollowerSets.random_start`)."""
        return self.sets.random_start(np.asarray(p, dtype=float), rng).x

    def _result(self, z, p, tally, rn=None, message: str = "") -> Equilibrium:
        x, nu, lam, w = z
        if rn is None:
            rn = self.system.norm(self.system.value(x, nu, lam, w, p))
        status = Status.CONVERGED if rn <= self.config.tol else Status.NOT_CONVERGED
        c = self.counters
        c.newton_iterations += tally[0]
        c.dynamics_steps += tally[1]
        c.failures += status is not Status.CONVERGED
        return Equilibrium(x=x, nu=nu, lam=lam, w=w, p=p.copy(), residual=float(rn), status=status,
                           newton_iterations=tally[0], relaxation_iterations=tally[1], message=message,
                           system=self.system, solver=self.solver)
