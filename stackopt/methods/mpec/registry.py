"""Reformulation modes and solvers of the MPEC methods, registered under names.

A **mode** (:class:`Reformulation`) decides how each complementarity pair
``0 <= multiplier _|_ slack >= 0`` of the single-level model
(:mod:`stackopt.methods.mpec.pipeline`) becomes Pyomo components: its
:meth:`~Reformulation.add_pair` writes them onto one block of the model's
clone. A **solver** (:class:`Solver`) takes the single-level model with the
mode's block and returns the method's proposal. The two are chosen
separately (``solve(game, "mpec", mode=..., solver=...)``); a mode lists the
solvers that can take what it writes.

Adding a mode is one file with a :class:`Reformulation` subclass decorated
with :func:`register_mode`, plus its import in :mod:`stackopt.methods.mpec`.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.common.config import ConfigDict, ConfigValue

from stackopt.core import registrar

from .options import finite_positive, fraction
from .slacks import linear_pairs

MODES: dict[str, type[Reformulation]] = {}
SOLVERS: dict[str, type[Solver]] = {}
MODE_BLOCK = "reformulation"  # name of the mode's block inside the single-level block


def register_mode(name: str, *aliases: str):
    """Class decorator registering a :class:`Reformulation` under ``name`` (and aliases)."""
    return registrar(MODES, "mode", name, aliases)


def register_solver(name: str, *aliases: str):
    """Class decorator registering a :class:`Solver` under ``name`` (and aliases)."""
    return registrar(SOLVERS, "solver", name, aliases)


def get_mode(name) -> type[Reformulation]:
    if name not in MODES:
        raise ValueError(f"unknown mode {name!r}; expected one of {sorted(MODES)}")
    return MODES[name]


def get_solver(name) -> type[Solver]:
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; expected one of {sorted(SOLVERS)}")
    return SOLVERS[name]


class Reformulation:
    """Base of the modes: :meth:`add_pair` writes one complementarity pair as Pyomo components.

    ``CONFIG`` holds the mode's options; ``solvers`` the solvers that can take
    its components. A mode with ``linear_slacks = True`` gets every pair with a
    linear slack: a nonlinear one (a follower constraint nonlinear in its own
    variables, or with the leader's coefficients) is first linked through a
    bounded auxiliary variable (:func:`~stackopt.methods.mpec.slacks.linear_pairs`).
    A mode with ``continuation = True`` has a parameter
    ``eps`` (options ``eps_initial``, ``eps_final``, ``eps_factor``) that a
    local solver drives down with warm starts (:meth:`schedule`,
    :meth:`set_parameter`); a global solver solves at ``eps_final`` once.
    """

    name = ""
    aliases: tuple = ()
    CONFIG = ConfigDict("mode")
    solvers: tuple = ("ipopt", "scip")
    continuation = False
    linear_slacks = False

    def __init__(self, config):
        self.config = config

    def apply(self, sl):
        """Write every pair of ``sl`` onto a new block ``sl.block.reformulation``; returns it."""
        blk = pyo.Block(concrete=True)
        sl.block.add_component(MODE_BLOCK, blk)
        self.setup(blk, sl)
        pairs = linear_pairs(blk, sl.pairs) if self.linear_slacks else sl.pairs
        for k, pair in enumerate(pairs):
            self.add_pair(blk, k, pair)
        self.finish(blk)
        return blk

    def setup(self, block, sl) -> None:
        """Declare the block's components before the pairs are added."""

    def add_pair(self, block, k: int, pair) -> None:
        raise NotImplementedError

    def finish(self, block) -> None:
        """Complete the block after every pair was added."""

    # ------------------------------------------------------ continuation modes
    def schedule(self) -> list[float]:
        """eps_initial, eps_initial * eps_factor, ... down to eps_final (included)."""
        c = self.config
        if c.eps_final > c.eps_initial:
            raise ValueError(f"eps_final must be <= eps_initial, got {c.eps_final} > {c.eps_initial}")
        out, eps = [], c.eps_initial
        while eps > c.eps_final * (1 + 1e-12):
            out.append(eps)
            eps = max(eps * c.eps_factor, c.eps_final)
        out.append(c.eps_final)
        return out

    def set_parameter(self, block, value: float) -> None:
        raise NotImplementedError(f"mode {self.name!r} has no continuation parameter")


def continuation_options(name: str) -> ConfigDict:
    """eps_initial / eps_final / eps_factor, shared by the continuation modes (same meaning:
    the complementarity product is held at or below eps)."""
    cfg = ConfigDict(name)
    cfg.declare("eps_initial", ConfigValue(
        default=1e-1, domain=finite_positive, doc="first value of the continuation parameter eps"))
    cfg.declare("eps_final", ConfigValue(
        default=1e-8, domain=finite_positive, doc="last value of the continuation parameter eps"))
    cfg.declare("eps_factor", ConfigValue(
        default=0.1, domain=fraction, doc="eps is multiplied by this factor after each solve"))
    return cfg


class Solver:
    """Base of the solvers: :meth:`solve` the single-level model with a mode's block on it.

    The MPEC methods build the model in its own units (``sl.units``,
    :mod:`~stackopt.methods.mpec.units`): a solver's absolute tolerances then mean the same
    for a game and any positive multiple of its objectives or constraints. A solver reports
    objective values (claimed objective, bound, history) in the game's units:
    ``sl.units.objective_value(value)``.
    """

    name = ""
    aliases: tuple = ()
    CONFIG = ConfigDict("solver")

    def __init__(self, config):
        self.config = config

    def solve(self, sl, mode: Reformulation, block, seed: int, time_limit, clock_start: float):
        """Return a :class:`~stackopt.methods.MethodOutput`; ``time_limit`` counts from
        ``clock_start`` (``time.perf_counter()`` when the method began)."""
        raise NotImplementedError


def clipped(variables, values) -> np.ndarray:
    """``values`` of ``variables`` projected onto the variables' bounds.

    Local solvers may return points a hair outside a bound (Ipopt's
    ``bound_relax_factor``); a method never proposes a leader value outside
    the leader's box.
    """
    out = np.array(values, dtype=float)
    for j, v in enumerate(variables):
        if v.lb is not None:
            out[j] = max(out[j], float(v.lb))
        if v.ub is not None:
            out[j] = min(out[j], float(v.ub))
    return out
