"""The registered MPEC methods: ``mpec`` (mode and solver as options) and its two presets.

- ``mpec``: any registered mode (:data:`~stackopt.methods.mpec.registry.MODES`) with
  any solver that mode accepts, e.g. ``solve(game, "mpec", mode="smoothing",
  solver="scip")``; the options of every mode and solver are its options,
  and one that does not apply to the chosen pair is refused.
- ``mpec-ipopt`` (alias ``scholtes``): mode ``regularization`` with solver
  ``ipopt``, and only their options.
- ``mpec-scip`` (alias ``fortuny-amat-mccarl``): mode ``disjunctive`` with
  solver ``scip``, and only their options.

The modes and solvers must be imported before this module (the package's
``__init__`` does), since the ``mpec`` method's options are read from them.

Generalized Nash games: each follower's own constraints (nonlinear in its
variables, with the leader's coefficients, using other followers' variables)
are written with their KKT conditions, the others' variables as parameters;
a shared constraint is written once with the multipliers of the game's
``shared`` concept (:mod:`~stackopt.methods.mpec.shared`). Every mode takes
every form; a mode that needs linear slacks links a nonlinear one through an
auxiliary variable (:mod:`~stackopt.methods.mpec.slacks`).

Which equilibrium: all three methods are optimistic, the leader's favourite
among the followers' equilibria of the game's concept: Rosen's normalized
equilibrium for ``"variational"`` and ``"weighted"`` (the one the oracle-based
methods follow, wherever it is unique), every generalized Nash equilibrium for
``"any"`` (there the MPEC may pick one the followers' dynamics do not reach, and
its strategy is scored at the equilibrium the oracle finds).
"""
from __future__ import annotations

import dataclasses
import time

from pyomo.common.config import ConfigDict, ConfigValue

from stackopt.core import Status
from stackopt.game import initial_leader
from stackopt.kernel import kernel_of
from stackopt.solvers.nlp import TimeLimitReached

from ..registry import Method, MethodOutput, register_method
from .modes.disjunctive import Disjunctive
from .modes.scholtes import Regularization
from .options import merge, pipeline_options
from .pipeline import build_single_level, check_deadline, check_finite
from .registry import MODES, SOLVERS, get_mode, get_solver
from .solvers.nlp import IpoptSolver
from .solvers.scip import ScipSolver


def _mode_name(val) -> str:
    return get_mode(val).name


def _solver_name(val):
    return None if val is None else get_solver(val).name


def _choice() -> ConfigDict:
    cfg = ConfigDict("choice")
    cfg.declare("mode", ConfigValue(
        default="regularization", domain=_mode_name,
        doc=f"reformulation of the complementarity pairs: one of {sorted(MODES)}"))
    cfg.declare("solver", ConfigValue(
        default=None, domain=_solver_name,
        doc=f"solver of the single-level model: one of {sorted(SOLVERS)} (None: the mode's first)"))
    return cfg


def _unique(classes):
    return list(dict.fromkeys(classes))


class _MpecBase(Method):
    preset: tuple | None = None  # (mode, solver) of a preset; None: both are options
    honours_integers = True  # the pipeline refuses them for Ipopt and follower variables

    def run(self, game, config, seed: int, time_limit: float | None) -> MethodOutput:
        """Build the single-level model and solve it; with ``time_limit``, building counts:
        each step checks the deadline, and one that passes it ends the run with
        ``TIME_LIMIT`` at the leader's initial values."""
        start = time.perf_counter()
        deadline = None if time_limit is None else start + time_limit
        mode_cls, solver_cls = self._choose(config)
        mode = mode_cls(config)
        if mode.continuation:
            mode.schedule()  # validates eps_initial / eps_final
        try:
            if deadline is not None:
                # scoring's compiled game, prepared within the limit so that scoring keeps its
                # grace (after the pipeline's own check of the data, whose messages name more)
                check_finite(game.structure())
                kernel_of(game)
                check_deadline(deadline, "preparing the game for scoring")
            sl = build_single_level(game, block_name=config.block_name, dump=config.dump,
                                    deadline=deadline, scale=True)
            sl.deactivate_complementarity()
            block = mode.apply(sl)
            out = solver_cls(config).solve(sl, mode, block, seed, time_limit, start)
        except TimeLimitReached as exc:
            return MethodOutput(leader=initial_leader(game), status=Status.TIME_LIMIT,
                                message=f"{exc} (after {time.perf_counter() - start:.3g} s); "
                                        "the leader's initial values are returned")
        note = sl.note()
        return dataclasses.replace(out, message=f"{out.message}\n{note}") if note else out

    def _choose(self, config):
        if self.preset is not None:
            return get_mode(self.preset[0]), get_solver(self.preset[1])
        mode_cls = get_mode(config.mode)
        solver = config.solver or mode_cls.solvers[0]
        if solver not in mode_cls.solvers:
            raise ValueError(
                f"mode {mode_cls.name!r} cannot be solved by solver {solver!r}: it writes "
                f"{_writes(mode_cls)}; its solvers are {list(mode_cls.solvers)}")
        solver_cls = get_solver(solver)
        allowed = (set(mode_cls.CONFIG.keys()) | set(solver_cls.CONFIG.keys())
                   | set(pipeline_options().keys()) | {"mode", "solver"})
        for item in config.user_values():
            key = item.name()
            if key and key not in allowed:
                raise ValueError(
                    f"option {key!r} does not apply to mode {mode_cls.name!r} with solver "
                    f"{solver!r}; their options are {sorted(allowed)}")
        return mode_cls, solver_cls


def _writes(mode_cls) -> str:
    return "binary variables and SOS1 sets" if "ipopt" not in mode_cls.solvers else "its constraints"


@register_method("mpec")
class Mpec(_MpecBase):
    """MPEC reformulation with a chosen ``mode`` (how complementarity is written) and ``solver``.

    Every follower's KKT conditions go into one single-level model
    (:mod:`stackopt.methods.mpec.pipeline`); the ``mode`` writes its complementarity
    pairs as constraints and the ``solver`` solves the result.

    Modes: ``regularization`` (alias ``scholtes``; lambda * s <= eps),
    ``disjunctive`` (aliases ``big-m``, ``fortuny-amat-mccarl``; binaries or
    SOS1 sets), and any other registered one. Solvers: ``ipopt`` (local, for
    the continuation modes) and ``scip`` (global). The solution is optimistic:
    among the followers' equilibria the leader's favourite (normalized equilibria
    under ``shared="variational"`` or ``"weighted"``, every generalized Nash
    equilibrium under ``"any"``). Each mode's and solver's docstring states its
    options.
    """

    CONFIG = merge("mpec", _choice(), *[c.CONFIG for c in _unique(MODES.values())],
                   *[c.CONFIG for c in _unique(SOLVERS.values())], pipeline_options())


@register_method("mpec-ipopt", "scholtes")
class MpecIpopt(_MpecBase):
    """``mpec`` with mode ``regularization`` (Scholtes 2001) and solver ``ipopt``.

    Each pair ``0 <= lambda _|_ s >= 0`` becomes ``lambda * s <= eps``, eps
    driven from ``eps_initial`` to ``eps_final`` by ``eps_factor`` with warm
    starts, from ``starts`` points; the best converged point is polished on
    its active set. A local solution of the optimistic problem: the followers'
    normalized equilibria under ``shared="variational"`` or ``"weighted"``, every
    generalized Nash equilibrium under ``"any"``.
    """

    CONFIG = merge("mpec-ipopt", Regularization.CONFIG, IpoptSolver.CONFIG, pipeline_options())
    preset = ("regularization", "ipopt")


@register_method("mpec-scip", "fortuny-amat-mccarl")
class MpecScip(_MpecBase):
    """``mpec`` with mode ``disjunctive`` (Fortuny-Amat & McCarl 1981) and solver ``scip``.

    Each pair becomes a big-M disjunction with a binary (or an SOS1 set), and
    SCIP solves the MINLP to global optimality in a subprocess, with its
    bound and gap. The global optimistic optimum over the followers' normalized
    equilibria under ``shared="variational"`` or ``"weighted"``, over every generalized
    Nash equilibrium under ``"any"``.
    """

    CONFIG = merge("mpec-scip", Disjunctive.CONFIG, ScipSolver.CONFIG, pipeline_options())
    preset = ("disjunctive", "scip")
