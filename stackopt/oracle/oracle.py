"""The equilibrium oracle: the followers' Nash equilibrium for a leader strategy.

``oracle.solve(p, warm=eq)`` follows a nearby equilibrium: a predictor along
its tangent, then the :class:`~stackopt.oracle.newton.NewtonEngine`. Without ``warm``
the followers start cold, from ``x0`` or a seeded random feasible point drawn
from ``rng``, and adjust by the game's dynamics
(:mod:`stackopt.oracle.dynamics`: gradient play where every follower's set is
simple, else damped best responses), which select among several equilibria
the way the followers' own adjustment would; Newton finishes once the
dynamics' steps are small, and its answer is kept if every follower's reduced
Hessian is positive semidefinite (a local Nash equilibrium, not merely a KKT
point) and no follower gains by a unilateral deviation (a Nash equilibrium;
:mod:`stackopt.oracle.coldstart`, :mod:`stackopt.oracle.deviation`). A warm start that
Newton cannot finish falls back to the cold dynamics from the warm start's values unless
``fallback=False``. In a generalized Nash game (smooth or shared constraints:
:mod:`stackopt.kernel.smooth_rows`) every follower's best response is over the set the
others' values leave it, and the KKT residual carries the shared constraints' multipliers as
the game's concept says (:func:`default_cold_start` says how such games start cold).

Every solve returns an :class:`~stackopt.oracle.equilibrium.Equilibrium` whose
``status`` says whether the residual met ``tol``, with the solve's message and
its work (``counters``: cold starts, warm solves, Newton iterations, dynamics
steps, best responses); iteration and time budgets end every loop, and a
solve ends by the ``deadline`` its caller passes (and within ``time_limit``).
All constants are options of :attr:`EquilibriumOracle.CONFIG`;
:attr:`EquilibriumOracle.counters` is the sum of the counters its solves returned.

**Units.** A Nash equilibrium does not change when every follower's objective
is divided by the same positive number. The oracle divides them by the
followers' own scale (:func:`follower_scale`: their curvature at the initial
values) and works on that game (:class:`FollowerUnits`): the residual's
tolerance ``tol`` and the best responses' ``br_tol`` then mean the same
whatever the units of the followers' objectives (a residual of the gradients
divided by the curvature is about a distance in the followers' variables, hence
the small defaults), and an equilibrium's multipliers and its residual are in
those units. Gradient play keeps the game's own units: its
step ``play_step`` multiplies the followers' gradients as the game states them
(how fast the followers adjust is part of the game and selects among several
equilibria), so its step is ``play_step`` times the scale in the divided game.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
from pyomo.common.config import ConfigDict, ConfigValue, In, NonNegativeInt, PositiveFloat, PositiveInt

from stackopt.core import Status

from .coldstart import ColdStart
from .deviation import Deviations
from .dynamics import GradientPlay, ImplicitGradientPlay, Relaxation, joint_play_applies
from .equilibrium import Equilibrium, OracleCounters
from .implicit import sensitivity, tangent
from .linalg import SOLVERS, make_solver
from .newton import NewtonEngine, NewtonResult
from .residual import KKTResidual
from .responses.best import BestResponses
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
    d("tol", ConfigValue(1e-8, PositiveFloat, "infinity norm of the KKT residual at which a solve has "
      "converged (the followers' objectives divided by their scale, see the module docstring)"))
    d("time_limit", ConfigValue(600.0, PositiveFloat, "seconds allowed for one solve: a safety net (every "
      "loop of a solve has an iteration budget), which a loaded machine must not reach"))
    d("cold_start", ConfigValue(None, _cold_start, "cold-start dynamics: 'gradient-play', 'relaxation' "
      "(damped best response) or 'auto' (Newton first, kept if second-order conditions hold); "
      "None: the game's own dynamics, and 'auto' for a game with smooth or shared constraints "
      "under Rosen's normalized concepts (shared='variational' or 'weighted')"))
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
    d("active_tol", ConfigValue(1e-10, float, "the active-set rule's tolerance (see stackopt.oracle.residual)"))
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
      "deviation (see stackopt.oracle.deviation); 0: local Nash equilibria are accepted as they are"))
    d("deviation_starts", ConfigValue(1, NonNegativeInt, "random starts per follower of a deviation "
      "search, besides the corners of its set"))
    d("deviation_tol", ConfigValue(1e-6, PositiveFloat, "relative objective improvement that makes "
      "a deviation profitable"))
    d("br_tol", ConfigValue(1e-12, PositiveFloat, "best responses: optimality tolerance (in the "
      "followers' units, as tol)"))
    d("br_acceptable_tol", ConfigValue(1e-8, PositiveFloat, "best responses: Ipopt's acceptable_tol"))
    d("br_max_iter", ConfigValue(500, PositiveInt, "best responses: Ipopt's max_iter"))
    d("br_newton_iter", ConfigValue(50, PositiveInt, "best responses of box-only followers: "
      "projected Newton steps before Ipopt takes over"))
    d("br_spg_iter", ConfigValue(500, PositiveInt, "best responses of followers with a box and one row: "
      "spectral projected gradient steps before Ipopt takes over"))
    d("br_exact_hessian_max", ConfigValue(60, PositiveInt, "best responses: largest game (followers' "
      "variables) for which Ipopt gets the exact Hessian block (each costs a game Jacobian)"))
    return cfg


def default_cold_start(kernel) -> str:
    """The game's own dynamics: ``"relaxation"`` for ``dynamics="best-response"``; else
    ``"auto"`` where the game has smooth rows (nonlinear, leader-dependent, coupling or
    shared constraints) and its shared concept is a normalized one (its projections are
    Ipopt solves, and a normalized equilibrium needs no dynamics to select it where the
    game is monotone: Newton from the start; where Newton does not reach a local Nash
    equilibrium, projected gradient play on the joint set where it finds the normalized
    equilibria (:func:`~stackopt.oracle.dynamics.joint_play_applies`), then best responses),
    ``"gradient-play"`` otherwise (best responses where the followers' sets are not
    simple, as for ``shared="any"``)."""
    if kernel.dynamics == "best-response":
        return "relaxation"
    if kernel.smooth is not None and kernel.structure.concept != "any":
        return "auto"
    return "gradient-play"


def follower_scale(kernel) -> float:
    """The followers' scale at their and the leader's initial values: the largest finite
    entry of the followers' own blocks of ``dF/dx`` (their curvature); where every
    follower's objective is linear in its own variables, the largest finite entry of
    ``F``; one where both vanish."""
    x, p = kernel.x0, kernel.p0
    with np.errstate(all="ignore"):
        J = kernel.Jx_batch(x[None, :], p)[0]
        own = kernel.x_owner[kernel.Jx_rows] == kernel.x_owner[kernel.Jx_cols]
        for values in (J[own], kernel.F(x, p)):
            values = np.abs(values[np.isfinite(values)])
            if values.size and values.max() > 0:
                return float(values.max())
    return 1.0


class FollowerUnits:
    """A game kernel whose followers' objectives, gradients ``F`` and Jacobians of ``F``
    are divided by ``scale`` (the other attributes are the kernel's): the game the
    oracle solves (see the module docstring)."""

    def __init__(self, kernel, scale: float):
        self.kernel, self.scale = kernel, float(scale)

    def __getattr__(self, name):  # data, structure and the leader's evaluators
        if name == "kernel":
            raise AttributeError(name)
        return getattr(self.kernel, name)

    def F(self, x, p):
        return self.kernel.F(x, p) / self.scale

    def Jx(self, x, p):
        return self.kernel.Jx(x, p) / self.scale

    def Jx_points(self, X, p):
        return self.kernel.Jx_points(X, p) / self.scale

    def Jx_sparse(self, x, p):
        return self.kernel.Jx_sparse(x, p) / self.scale

    def Jp_values(self, x, p):
        return self.kernel.Jp_values(x, p) / self.scale

    def Jp_points(self, X, p):
        return self.kernel.Jp_points(X, p) / self.scale

    def jacobians(self, x, p):
        return self.Jx(x, p), self.Jp_values(x, p)

    def follower_objectives(self, x, p):
        return self.kernel.follower_objectives(x, p) / self.scale

    def F_batch(self, X, p):
        return self.kernel.F_batch(X, p) / self.scale

    def follower_objectives_batch(self, X, p):
        return self.kernel.follower_objectives_batch(X, p) / self.scale

    def Jx_batch(self, X, p):
        return self.kernel.Jx_batch(X, p) / self.scale

    def F_own(self, X, p, owner):
        return self.kernel.F_own(X, p, owner) / self.scale

    def follower_objective_own(self, X, p, owner):
        return self.kernel.follower_objective_own(X, p, owner) / self.scale

    def Jx_own(self, X, p, owner):
        return self.kernel.Jx_own(X, p, owner) / self.scale


class EquilibriumOracle:
    """Find the followers' equilibrium of a :class:`~stackopt.kernel.GameKernel` (see the module
    docstring); options as keywords, validated by :attr:`CONFIG`."""

    CONFIG = _options(ConfigDict("oracle"))

    def __init__(self, kernel, **options):
        self.config = cfg = self.CONFIG(options)
        if cfg.cold_start is None:
            cfg.cold_start = default_cold_start(kernel)
        # read at every solve: plain values (the config is read once, like the engines' below)
        self._time_limit, self._max_warm_newton, self._tol = cfg.time_limit, cfg.max_warm_newton, cfg.tol
        self.kernel = kernel
        self.units = k = FollowerUnits(kernel, follower_scale(kernel))
        self.counters = OracleCounters()
        self.system = KKTResidual(k, active_tol=cfg.active_tol)
        n, nnz = k.n_x, k.Jx_nnz
        self.solver = make_solver(cfg.linear_solver, n, nnz, cfg.dense_max, rtol=cfg.pivot_tol)
        newton_solver = make_solver(self.solver.name, n, nnz, cfg.dense_max, rtol=cfg.newton_pivot_tol)
        self.newton = NewtonEngine(self.system, newton_solver, cfg.tol, cfg.armijo, cfg.min_step)
        self.sets = FollowerSets(k)
        self.responses = BestResponses(k, self.sets, cfg)
        play_step = cfg.play_step * k.scale  # in the game's own units (module docstring)
        self.play = GradientPlay(k, self.sets, play_step, cfg.play_patience)
        self.implicit_play = ImplicitGradientPlay(self.newton, play_step)
        self.joint_play = (GradientPlay(k, self.sets, play_step, cfg.play_patience,
                                        weights=k.structure.weights) if joint_play_applies(k) else None)
        self.relax = Relaxation(k, self.responses, cfg.damping, cfg.relaxation_patience)
        self.deviations = Deviations(k, self.sets, self.responses, cfg.deviation_starts, cfg.deviation_tol)
        self.cold = ColdStart(self)

    # ---------------------------------------------------------------- solve
    def solve(self, p, *, warm: Equilibrium | None = None, x0: np.ndarray | None = None,
              rng=None, fallback: bool = True, deadline: float | None = None,
              linearization=None) -> Equilibrium:
        """The equilibrium at leader strategy ``p`` (see the module docstring).

        ``warm``: a nearby equilibrium to follow (``linearization``: its factorised KKT
        system, :func:`stackopt.oracle.implicit.sensitivity`, where the caller holds it; else it
        is computed here); ``x0``: follower values the cold dynamics start from; neither:
        a random start drawn from ``rng`` (a seed or Generator). With ``x0`` or a warm
        fallback, ``rng`` also gives further random starts where gradient play does not
        settle. ``fallback=False``: a warm start Newton cannot finish returns unconverged
        at once. ``deadline`` (a ``time.perf_counter()`` value) ends the solve; it ends
        after ``time_limit`` seconds in any case. The returned equilibrium carries the
        solve's work (``counters``).
        """
        p = self.kernel.check_leader(p)
        if warm is not None and x0 is not None:
            raise ValueError("give warm= (an Equilibrium) or x0= (follower values), not both")
        if warm is not None and not isinstance(warm, Equilibrium):
            raise ValueError(f"warm must be an Equilibrium, got {type(warm).__name__}")
        cap = time.perf_counter() + self._time_limit
        deadline = cap if deadline is None else min(float(deadline), cap)
        if warm is not None:
            res = self._warm(warm, p, deadline, linearization)
            work = OracleCounters(warm_solves=1, newton_iterations=res.iterations)
            if res.converged or not fallback:
                return self._done(self.finish(res.z, p, work, res.residual), deadline)
            start, restarts = warm.x, (self.config.cold_restarts if rng is not None else 0)
        elif x0 is not None:
            work = OracleCounters()
            start, restarts = x0, (self.config.cold_restarts if rng is not None else 0)
        else:
            work = OracleCounters()
            start, restarts = None, self.config.cold_restarts
        work = work + OracleCounters(cold_starts=1)
        return self._done(self.cold.run(start, p, deadline, np.random.default_rng(rng), restarts,
                                        checked=warm is None, work=work), deadline)

    def _done(self, eq: Equilibrium, deadline: float) -> Equilibrium:
        """``eq``, counted; a solve that ended past its ``deadline`` counts a clock stop (a
        check of the clock may have cut its dynamics, Newton or a deviation search short)."""
        if time.perf_counter() > deadline:
            eq = replace(eq, counters=eq.counters + OracleCounters(clock_stops=1))
        self.counters = self.counters + eq.counters
        return eq

    def _warm(self, warm, p, deadline, lin=None) -> NewtonResult:
        z = (warm.x.copy(), warm.nu.copy(), warm.lam.copy(), warm.w.copy())
        if warm.p.shape == p.shape and warm.system is self.system:
            lin = sensitivity(self.kernel, warm) if lin is None else lin
            if (p != warm.p).any():  # predictor along the tangent
                dx, dnu, dlam = tangent(self.kernel, warm, p - warm.p, lin)
                k = self.kernel
                z = ((z[0] + dx).clip(k.x_lb, k.x_ub), z[1] + dnu, np.maximum(z[2] + dlam, 0.0), z[3])
        else:
            lin = None
        return self.newton.solve(z, p, deadline, self._max_warm_newton, chord=lin)

    # -------------------------------------------------------------- helpers
    def residual(self, x, nu, lam, w, p) -> np.ndarray:
        """The KKT residual (see :mod:`stackopt.oracle.residual`)."""
        return self.system.value(x, nu, lam, w, p)

    def random_start(self, p, rng) -> np.ndarray:
        """A seeded random feasible point (see :meth:`FollowerSets.random_start`)."""
        return self.sets.random_start(np.asarray(p, dtype=float), rng).x

    def finish(self, z, p, work: OracleCounters, rn=None, message: str = "",
               status: Status | None = None) -> Equilibrium:
        """The :class:`Equilibrium` a solve ends with at the point ``z = (x, nu, lam, w)``,
        with the solve's ``work``; converged where the residual norm ``rn`` (computed where
        not given) meets ``tol``, unless ``status`` is given."""
        x, nu, lam, w = z
        if rn is None:
            rn = self.system.norm(self.system.value(x, nu, lam, w, p))
        if status is None:
            status = Status.CONVERGED if rn <= self._tol else Status.NOT_CONVERGED
        if status is not Status.CONVERGED:
            work = work + OracleCounters(failures=1)
        return Equilibrium(x=x, nu=nu, lam=lam, w=w, p=p.copy(), residual=float(rn), status=status,
                           newton_iterations=work.newton_iterations,
                           relaxation_iterations=work.dynamics_steps, message=message,
                           counters=work, scale=self.units.scale, system=self.system,
                           solver=self.solver)
