"""One MPEC pipeline: the leader plus every follower's KKT conditions, as one single-level model.

:func:`build_single_level` clones ``game.model`` (the user's model is never
altered) and puts everything it generates into one named block on the clone:

- ``objective``: the leader's objective, in the leader's sense;
- ``leader_constraints``: the leader's constraints, ``body <= 0``;
- ``followers[name]``: per follower, a copy of its objective (as a minimisation) and constraints
  and, from Pyomo's ``core.kkt`` transformation applied to that block with
  ``parameterize_wrt`` = every other variable the follower's problem uses
  (other followers' and the leader's), a ``kkt`` block with the equality
  multipliers ``gamma``, the inequality multipliers ``alpha >= 0``, the
  stationarity conditions and the complementarity conditions
  (``pyomo.mpec``) of its constraints and of its own variables' bounds.

Stacking the followers' KKT systems gives their Nash equilibrium conditions
(each follower optimises its own variables, everything else is data). The
original objectives and constraints on the clone are deactivated. Each
reformulation mode (:mod:`stackopt.methods.mpec.registry`) only decides how the
complementarity pairs ``0 <= multiplier _|_ slack >= 0`` of
:attr:`SingleLevel.pairs` become constraints. The followers' variables must
be continuous (a ``ValueError`` names one that is not).

Generalized Nash games: a follower's constraint may be nonlinear in its own
variables (``u1**2 + u2**2 <= 1``: its slack is then nonlinear), have the
leader's variables anywhere, coefficients included (``p * x <= 2``), and use
other followers' variables (data to it); ``core.kkt`` differentiates whatever
is there. A shared constraint (``game.add_shared_constraint("cap", f.q + g.q
<= 30)``) is copied into every follower it binds for ``core.kkt`` and then
written once with its multipliers tied as the game's ``shared`` concept says
(:mod:`~stackopt.methods.mpec.shared`): one common multiplier under
``"variational"``, divided by each follower's weight under ``"weighted"``, one
per follower under ``"any"``.

The KKT conditions are necessary and, for followers convex in their own
variables, sufficient; the single-level model chooses the equilibrium in the
leader's favour (optimistic bilevel solution). Under ``"variational"`` and
``"weighted"`` it is among the normalized equilibria (unique for a monotone
game, the one the gradient methods follow); under ``"any"`` among every
generalized Nash equilibrium (a manifold where a shared constraint binds),
which may differ from the one the followers' dynamics reach.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.common.collections import ComponentMap, ComponentSet
from pyomo.common.enums import ObjectiveSense
from pyomo.common.numeric_types import RegisterIntegerType, native_numeric_types
from pyomo.core.expr.visitor import StreamBasedExpressionVisitor, identify_variables, replace_expressions
from pyomo.mpec import Complementarity

from stackopt.game import convex_constraint, convex_in_own
from stackopt.kernel import kernel_of
from stackopt.leader import variable_scale
from stackopt.oracle.oracle import follower_scale
from stackopt.solvers.nlp import TimeLimitReached

from .options import DEFAULT_BLOCK
from .shared import write_shared
from .units import Units, magnitude

# core.kkt multiplies an objective's sense into an expression; registering the
# enum as an integer type up front is what Pyomo would otherwise do with a warning.
if ObjectiveSense not in native_numeric_types:
    RegisterIntegerType(ObjectiveSense)


@dataclass(frozen=True)
class Pair:
    """``0 <= multiplier  _|_  slack >= 0`` for one follower inequality or variable bound.

    ``source`` is the constraint copy (on the generated block) or the
    follower's variable (on the clone); ``side`` is ``"lower"`` or ``"upper"``.
    ``slack`` is nonlinear where the constraint is (a mode that needs it linear
    links it through an auxiliary variable, :mod:`~stackopt.methods.mpec.slacks`).
    ``follower`` names the follower; a shared constraint's common multiplier
    names every follower it binds, comma-separated.
    """

    follower: str
    multiplier: Any  # VarData, >= 0
    slack: Any  # expression, >= 0 when the follower's constraint holds
    source: Any
    side: str
    linked: Any = None  # the nonlinear slack an auxiliary ``slack`` stands for (slacks.linear_pairs)

    @property
    def name(self) -> str:
        return f"{self.side} side of {self.source.name}"


@dataclass
class SingleLevel:
    """The single-level model on a clone of the game's model.

    ``leader_variables`` and ``follower_variables`` are the clone's variables
    in the order of ``game.structure()``; ``multipliers`` maps each of the
    *user's* follower constraints and variables to the multiplier(s) on the
    clone (a Var for an equality, ``(lower, upper)`` for an inequality or a
    variable's bounds, an entry ``None`` where that side does not exist); a
    shared constraint maps to its common multiplier(s), or under ``"any"`` to
    ``{follower: multiplier(s)}``. ``nonconvex`` names each follower whose objective or
    set is not provably convex in its own variables (a nonlinear equality, a concave
    constraint, an objective the rules cannot prove convex) and why: its KKT conditions
    are necessary only. ``units`` says what the model's functions are divided by
    (:class:`~stackopt.methods.mpec.units.Units`; the game's own units unless built with
    ``scale=True``): a multiplier on the model is the game's divided by ``units.followers``,
    the model's objective the leader's divided by ``units.objective``.
    """

    model: Any
    block: Any
    leader_variables: tuple
    follower_variables: tuple
    pairs: tuple
    multipliers: ComponentMap
    complementarities: tuple  # the pyomo.mpec components, one per follower
    nonconvex: dict = field(default_factory=dict)  # follower -> why its KKT points may not be best responses
    units: Units = field(default_factory=Units)

    def note(self) -> str:
        """A line for the result's message naming the followers of :attr:`nonconvex`."""
        if not self.nonconvex:
            return ""
        names = "; ".join(f"{f!r}: {why}" for f, why in self.nonconvex.items())
        return (f"KKT conditions are not sufficient for follower(s) {names}: the single-level "
                "model may hold a KKT point that is not a best response; the strategy is scored "
                "at the equilibrium the oracle finds")

    def deactivate_complementarity(self) -> None:
        """Deactivate the pyomo.mpec components (a mode has written its own constraints)."""
        for comp in self.complementarities:
            comp.deactivate()

    def dump(self, path) -> Path:
        """Write the single-level model to ``path``; the writer follows the extension.

        ``.nl`` keeps the complementarity conditions (AMPL's MPEC form, via
        ``mpec.nl``); other formats Pyomo writes (``.gms``, ``.lp``, ...) get
        them as nonlinear constraints ``multiplier * slack <= 0``
        (``mpec.simple_nonlinear``).
        """
        path = Path(path)
        if not path.suffix:
            raise ValueError(f"dump path {str(path)!r} needs an extension such as .nl or .gms")
        copy = self.model.clone()
        for comp in copy.component_objects(Complementarity, descend_into=True):
            comp.activate()
        xform = "mpec.nl" if path.suffix == ".nl" else "mpec.simple_nonlinear"
        pyo.TransformationFactory(xform).apply_to(copy)
        try:
            copy.write(str(path), io_options={"symbolic_solver_labels": True})
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"could not write the single-level model to {str(path)!r}: {exc}") from None
        return path


def check_deadline(deadline: float | None, doing: str) -> None:
    """Raise :class:`~stackopt.solvers.nlp.TimeLimitReached` once ``deadline`` (a
    ``time.perf_counter()`` value, or None) has passed, saying what was being done."""
    if deadline is not None and time.perf_counter() > deadline:
        raise TimeLimitReached(f"time limit reached while {doing}")


def build_single_level(game, block_name: str = DEFAULT_BLOCK, dump=None,
                       deadline: float | None = None, scale: bool = False) -> SingleLevel:
    """Build the single-level (MPEC) model of ``game`` on a clone of ``game.model``.

    ``deadline`` (a ``time.perf_counter()`` value) is checked after the clone and
    after each follower's KKT conditions (:class:`~stackopt.solvers.nlp.TimeLimitReached`).
    With ``scale``, the model is written in its own units (:mod:`~stackopt.methods.mpec.units`:
    the leader's objective and each leader constraint divided by its magnitude at the
    model's values, the followers' objectives by their common scale), the same model for
    the game and for any positive multiple of its objectives or constraints; the MPEC
    methods build it so. Without, everything is in the game's units."""
    if not isinstance(block_name, str) or not block_name.isidentifier():
        raise ValueError(f"block_name must be a Python identifier, got {block_name!r}")
    structure = game.structure()
    check_finite(structure)
    if game.model.component(block_name) is not None:
        raise ValueError(
            f"block name {block_name!r} is already used on the model of game {game.name!r}; "
            "choose another block_name"
        )
    clone = game.model.clone()
    translate = _Translator(game.model, clone)
    check_deadline(deadline, "building the single-level model (cloning the game's model)")

    for comp in list(clone.component_data_objects((pyo.Objective, pyo.Constraint), active=True,
                                                  descend_into=True)):
        comp.deactivate()

    blk = pyo.Block(concrete=True)
    clone.add_component(block_name, blk)
    objective = translate(structure.leader_objective)
    bodies = [translate(lc.body) for lc in structure.leader_constraints]
    units = _units(game, structure, translate, objective, bodies) if scale else Units()
    blk.objective = pyo.Objective(expr=_divided(objective, units.objective),
                                  sense=structure.leader_sense)
    blk.leader_constraints = pyo.ConstraintList()
    for i, body in enumerate(bodies):
        blk.leader_constraints.add(_divided(body, units.constraint(i)) <= 0)

    names = [f.name for f in structure.followers]
    blk.followers = pyo.Block(names)
    kkt = pyo.TransformationFactory("core.kkt")
    pairs: list[Pair] = []
    multipliers = ComponentMap()
    comps = []
    shared_copies: dict = {k: [] for k in range(len(structure.shared))}
    for f in structure.followers:
        fb = blk.followers[f.name]
        binding = [k for k, s in enumerate(structure.shared) if f.name in s.followers]
        copies, own, used = _follower_copy(
            fb, f, translate, [structure.shared[k].constraint for k in binding], units.followers)
        params = [v for v in used if v not in ComponentSet(own)]
        kkt.apply_to(fb, kkt_block_name="kkt", parameterize_wrt=params)
        comps.append(fb.kkt.complements)
        own_copies = copies[:len(f.constraints)]
        for k, (_, cd) in zip(binding, copies[len(f.constraints):]):
            shared_copies[k].append((f.name, fb, cd))
        pairs += _pairs(kkt, fb, f, own_copies, own, used, multipliers)
        check_deadline(deadline, f"building the single-level model (KKT conditions of follower "
                                 f"{f.name!r})")
    pairs += [Pair(*t) for t in write_shared(blk, structure, shared_copies, kkt, translate,
                                             multipliers)]
    sl = SingleLevel(
        model=clone, block=blk,
        leader_variables=tuple(translate.var(v) for v in structure.leader_variables),
        follower_variables=tuple(translate.var(v) for v in structure.follower_variables),
        pairs=tuple(pairs), multipliers=multipliers, complementarities=tuple(comps),
        nonconvex=not_provably_convex(structure), units=units,
    )
    if dump is not None:
        sl.dump(dump)
    return sl


def _units(game, structure, translate, objective, bodies) -> Units:
    """The :class:`~stackopt.methods.mpec.units.Units` of the single-level model at the
    clone's values (the game's, when the solve starts)."""
    kernel = kernel_of(game)
    leader = [translate.var(v) for v in structure.leader_variables]
    widths = variable_scale(kernel, np.array([v.value or 0.0 for v in leader], dtype=float))
    scales = {id(v): float(w) for v, w in zip(leader, widths)}  # the followers': max(1, |value|)
    return Units(objective=magnitude(objective, scales),
                 constraints=tuple(magnitude(b, scales) for b in bodies),
                 followers=follower_scale(kernel))


def _divided(expr, by: float):
    return expr if by == 1.0 else expr / by


def not_provably_convex(structure) -> dict:
    """Follower name -> why its problem is not provably convex in its own variables (its
    objective, or the constraints binding it: its own and the shared ones), by the rules
    of :mod:`stackopt.game.convexity`; followers proven convex are left out."""
    out = {}
    for f in structure.followers:
        why = []
        if not convex_in_own(f.objective, f.variables, f.sense):
            why.append("its objective is not provably convex in its own variables")
        cons = list(f.constraints) + [s.constraint for s in structure.shared if f.name in s.followers]
        bad = sorted({c.name for c in cons for side in _sides(c)
                      if not convex_constraint(c, side, f.variables)})
        if bad:
            why.append(f"its set is not provably convex in its own variables ({', '.join(bad)})")
        if why:
            out[f.name] = "; ".join(why)
    return out


def _sides(c) -> list:
    if c.equality:
        return ["equality"]
    return [side for side, present in (("upper", c.has_ub()), ("lower", c.has_lb())) if present]


class _NonFinite(StreamBasedExpressionVisitor):
    """Raises ValueError at a non-finite number, Param value or fixed variable's value."""

    def __init__(self, where: str):
        super().__init__()
        self.where = where

    def beforeChild(self, node, child, child_idx):
        self.check(child)
        return True, None

    def check(self, leaf) -> None:
        if leaf.__class__ in native_numeric_types:
            if not math.isfinite(leaf):
                raise ValueError(f"the {self.where} has the non-finite number {leaf!r}")
        elif not leaf.is_expression_type() and (leaf.is_parameter_type() or leaf.is_fixed()) \
                and not math.isfinite(pyo.value(leaf)):
            kind = "variable" if leaf.is_variable_type() else "parameter"
            raise ValueError(f"{kind} {leaf.name!r} in the {self.where} has the non-finite value "
                             f"{pyo.value(leaf)!r}")


def check_finite(structure) -> None:
    """ValueError naming a non-finite coefficient, right-hand side or bound of the game."""
    parts = [("leader objective", structure.leader_objective)]
    parts += [(f"leader constraint {c.name}", c.body) for c in structure.leader_constraints]
    for f in structure.followers:
        parts.append((f"objective of follower {f.name!r}", f.objective))
        for c in f.constraints:
            parts += [(f"constraint {c.name!r}", e) for e in c.to_bounded_expression()
                      if e is not None]
    for s in structure.shared:
        parts += [(f"shared constraint {s.name!r}", e) for e in s.constraint.to_bounded_expression()
                  if e is not None]
    for where, expr in parts:
        walker = _NonFinite(where)
        if hasattr(expr, "is_expression_type") and expr.is_expression_type():
            walker.walk_expression(expr)
        else:
            walker.check(expr)
    for v in list(structure.leader_variables) + list(structure.follower_variables):
        for side, bound in (("lower", v.lb), ("upper", v.ub)):
            if bound is not None and math.isnan(bound):
                raise ValueError(f"variable {v.name!r} has the {side} bound nan")


def _follower_copy(fb, f, translate, shared=(), scale: float = 1.0):
    """The follower's objective (as a minimisation, divided by ``scale``), constraints and
    the ``shared`` constraints that bind it copied onto ``fb``.

    Returns ``(user constraint, copy)`` pairs (the follower's own constraints, then
    ``shared``), the follower's own variables on the clone and every variable its
    copied problem uses.
    """
    own = [translate.var(v) for v in f.variables]
    for v in own:
        if not v.is_continuous():
            raise ValueError(
                f"variable {v.name!r} of follower {f.name!r} has the domain {v.domain.name}; "
                "KKT conditions need continuous follower variables")
    # as a minimisation: core.kkt multiplies the sense into the Lagrangian, and a
    # maximize sense would stay in the expressions as an enum coefficient
    # (which the NL writer then writes as the word "maximize")
    obj = _divided(translate(f.objective), scale)
    fb.objective = pyo.Objective(expr=obj if f.sense == pyo.minimize else -obj, sense=pyo.minimize)
    fb.constraints = pyo.ConstraintList()
    copies = []
    for c in list(f.constraints) + list(shared):
        lower, body, upper = c.to_bounded_expression()
        lower = None if lower is None else translate(lower)
        upper = None if upper is None else translate(upper)
        body = translate(body)
        if c.equality:
            cd = fb.constraints.add(body == upper)
        else:
            cd = fb.constraints.add(pyo.inequality(lower, body, upper))
        copies.append((c, cd))
    used = ComponentSet()
    for e in [fb.objective.expr] + [cd.body for _, cd in copies]:
        used.update(identify_variables(e, include_fixed=True))
    return copies, own, used


def _pairs(kkt, fb, f, copies, own, used, multipliers) -> list:
    """The follower's complementarity pairs; fills ``multipliers`` (user's component -> multiplier)."""
    pairs = []
    for c, cd in copies:
        mult = kkt.get_multiplier_from_object(fb, cd)
        multipliers[c] = mult
        if cd.equality:
            continue
        low, up = mult
        if low is not None:
            pairs.append(Pair(f.name, low, cd.body - cd.lower, cd, "lower"))
        if up is not None:
            pairs.append(Pair(f.name, up, cd.upper - cd.body, cd, "upper"))
    for v_user, v in zip(f.variables, own):
        if v not in used:
            continue
        low, up = kkt.get_multiplier_from_object(fb, v)
        multipliers[v_user] = (low, up)
        if low is not None:
            pairs.append(Pair(f.name, low, v - v.lb, v, "lower"))
        if up is not None:
            pairs.append(Pair(f.name, up, v.ub - v, v, "upper"))
    return pairs


class _Translator:
    """Rewrites expressions over the user's model into expressions over its clone (by name)."""

    def __init__(self, model, clone):
        self.map: dict[int, Any] = {}
        for ctype in (pyo.Var, pyo.Param):
            clone_data = {d.name: d for d in clone.component_data_objects(ctype, descend_into=True)}
            for d in model.component_data_objects(ctype, descend_into=True):
                if ctype is pyo.Param and not d.parent_component().mutable:
                    continue
                self.map[id(d)] = clone_data[d.name]

    def var(self, v):
        try:
            return self.map[id(v)]
        except KeyError:
            raise ValueError(f"variable {v.name!r} is not on the game's model") from None

    def __call__(self, expr):
        if expr.__class__ in (int, float):
            return expr
        if not hasattr(expr, "is_expression_type"):
            return expr
        if not expr.is_expression_type():
            return self.map.get(id(expr), expr)
        return replace_expressions(expr, substitution_map=self.map,
                                   descend_into_named_expressions=True,
                                   remove_named_expressions=True)
