"""Writing a Stackelberg game in Pyomo: one leader, several followers in Nash equilibrium.

A game owns a ``pyo.ConcreteModel``. Each follower is a block on it holding the
follower's variables, exactly one objective (which may use the other followers'
and the leader's variables) and optional constraints linear in its own
variables with constant coefficients, whose right-hand sides may be smooth
nonlinear functions of the leader's variables (``G x_i <= h(p)``,
``A x_i = b(p)``). The leader names its variables, an objective and inequality
constraints; the leader's objective and constraints are evaluated at the
followers' equilibrium.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pyomo.environ as pyo
from pyomo.core.base.var import VarData
from pyomo.core.expr.numvalue import native_types
from pyomo.core.expr.visitor import identify_variables
from pyomo.core.expr.expr_common import ExpressionType
from pyomo.repn.standard_repn import generate_standard_repn

from .expr_params import nonfinite_constant

from .expr import derivatives

SENSES = {pyo.minimize: "minimize", pyo.maximize: "maximize"}


@dataclass(frozen=True)
class Follower:
    """A validated follower: its block, variables, objective and linear constraints."""

    name: str
    block: Any
    variables: tuple  # VarData, not fixed, in declaration order
    objective: Any  # expression
    sense: int  # pyo.minimize (1) or pyo.maximize (-1)
    constraints: tuple  # ConstraintData: linear in the follower's own variables, smooth in the leader's


@dataclass(frozen=True)
class LeaderConstraint:
    """``body <= 0`` after normalisation, with the user's text for messages."""

    name: str
    body: Any


@dataclass(frozen=True)
class GameStructure:
    """What :meth:`StackelbergGame.structure` checked and extracted."""

    followers: tuple
    leader_variables: tuple
    leader_objective: Any
    leader_sense: int
    leader_constraints: tuple

    @property
    def follower_variables(self) -> tuple:
        return tuple(v for f in self.followers for v in f.variables)


class StackelbergGame:
    """A leader and followers written in Pyomo on ``game.model``.

    >>> game = StackelbergGame("duopoly")
    >>> f = game.add_follower("firm1")            # a pyo.Block on game.model

    ``data`` may hold the instance data the game was generated from (arrays,
    numbers); the comparison harness fingerprints it. ``samples`` is the number
    of equilibria drawn from seeded random starts when a leader strategy is
    scored: 1 for games with a unique equilibrium, more where the followers'
    equilibrium is a random draw among several. ``dynamics`` is how the followers
    adjust from a cold start, which selects the equilibrium where there are
    several: ``"gradient-play"`` (projected gradient play, the default; the oracle
    uses best responses where follower sets are not simple) or ``"best-response"``
    (the paper's damped simultaneous best response, for followers whose objectives
    have local optima that gradient play would stop at). ``method_options`` maps a
    method's name to the options the game's author recommends for it (e.g. the
    gradient method's learning rate for the game's scale); :func:`stackopt.solve`
    applies them beneath the options a user passes.
    """

    def __init__(self, name: str, *, samples: int = 1, dynamics: str = "gradient-play"):
        if not isinstance(name, str) or not name.strip():  # a label, never a component name
            raise ValueError(f"game name must be a non-empty string, got {name!r}")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        if dynamics not in ("gradient-play", "best-response"):
            raise ValueError(f"dynamics must be 'gradient-play' or 'best-response', got {dynamics!r}")
        self.name = name
        self.samples = samples
        self.dynamics = dynamics
        self.method_options: dict[str, dict[str, Any]] = {}
        self.model = pyo.ConcreteModel(name=name)
        self.data: dict[str, Any] = {}
        self._followers: list[str] = []
        self._leader: dict[str, Any] | None = None
        self._version = 0
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ building
    def add_follower(self, name: str):
        """Add a follower block ``game.model.<name>`` and return it."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"follower name must be a Python identifier, got {name!r}")
        if self.model.component(name) is not None:
            raise ValueError(f"follower name {name!r} is already used on the model")
        block = pyo.Block(concrete=True)
        self.model.add_component(name, block)
        self._followers.append(name)
        self._touch()
        return block

    def set_leader(
        self,
        variables: Iterable,
        objective,
        sense=pyo.maximize,
        constraints: Iterable = (),
    ) -> None:
        """Declare the leader's variables, objective, sense and constraints.

        ``variables``: Var components or their elements; their bounds are the
        leader's feasible set. ``constraints``: inequalities (``expr <= c``,
        ``expr >= c``, ranged, or Constraint components), evaluated at the
        equilibrium.
        """
        if sense not in SENSES:
            raise ValueError(f"leader sense must be pyo.minimize or pyo.maximize, got {sense!r}")
        if isinstance(constraints, (str, bytes)) or not isinstance(constraints, Iterable):
            raise ValueError(f"leader constraints must be a list of inequalities, got {constraints!r}")
        self._leader = dict(
            variables=list(variables), objective=objective, sense=sense,
            constraints=list(constraints),
        )
        self._touch()

    def _touch(self) -> None:
        self._version += 1
        self._cache.clear()

    @property
    def follower_names(self) -> list[str]:
        return list(self._followers)

    def follower(self, name: str):
        if name not in self._followers:
            raise ValueError(f"unknown follower {name!r}; followers are {self._followers}")
        return self.model.component(name)

    # ---------------------------------------------------------------- validation
    def structure(self) -> GameStructure:
        """Validate the game and return its parts; raises ``ValueError`` naming what is wrong."""
        if "structure" not in self._cache:
            self._cache.setdefault("signature", self._signature())
            self._cache["structure"] = self._build_structure()
        return self._cache["structure"]

    def refresh(self) -> None:
        """Bring what was prepared from the model up to date with it (every solve does this).

        A structural change since the last solve (a component added, removed,
        deactivated or given a new expression, a variable fixed or unfixed, a
        follower constraint's sides changed) discards the prepared forms, which
        are rebuilt on use; values (mutable Params, variable bounds, right-hand
        sides and coefficients, initial values) are read again without
        recompiling anything.
        """
        sig = self._signature()
        if self._cache.get("signature") != sig:
            self._cache.clear()
            self._cache["signature"] = sig
        elif "kernel" in self._cache:
            self._cache["kernel"].refresh()

    def _signature(self) -> tuple:
        """What the compiled form depends on besides values (see :meth:`refresh`)."""
        parts = [tuple(self._followers)]
        for fname in self._followers:
            block = self.model.component(fname)
            if block is None:
                parts.append((fname, None))
                continue
            parts.append(tuple((id(v), v.fixed) for v in block.component_data_objects(
                pyo.Var, descend_into=True, sort=False)))
            parts.append(tuple((id(o), o.active, id(o.expr), int(o.sense)) for o in
                               block.component_data_objects(pyo.Objective, descend_into=True)))
            parts.append(tuple((id(c), c.active, id(c.expr), c.equality, c.has_lb(), c.has_ub())
                               for c in block.component_data_objects(pyo.Constraint, descend_into=True)))
        if self._leader is not None:
            for item in self._leader["variables"]:
                vs = item.values() if isinstance(item, pyo.Var) else [item]
                parts.append(tuple((id(v), v.fixed) for v in vs if isinstance(v, VarData)))
            parts.extend(_constraint_signature(c) for c in self._leader["constraints"])
        return tuple(parts)

    def cached(self, key: str, build):
        """Per-game cache for prepared artefacts (cleared when the game changes)."""
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def _build_structure(self) -> GameStructure:
        if not self._followers:
            raise ValueError(f"game {self.name!r} has no followers: call add_follower()")
        if self._leader is None:
            raise ValueError(f"game {self.name!r} has no leader: call set_leader()")
        owner: dict[int, str] = {}
        leader_vars = []
        for item in self._leader["variables"]:
            for v in _flatten_vars(item, "leader variable"):
                if v.fixed:
                    continue
                owner[id(v)] = "leader"
                leader_vars.append(v)
        leader_ids = set(owner)
        followers = []
        for fname in self._followers:
            f = self._build_follower(fname, owner, leader_ids)
            followers.append(f)
        if not leader_vars:
            raise ValueError("the leader has no (unfixed) variables: pass them in set_leader(variables=...)")
        obj = self._leader["objective"]
        _check_expression(obj, "leader objective")
        lcons = []
        for k, c in enumerate(self._leader["constraints"]):
            lcons.extend(_normalise_leader_constraint(c, k))
        exprs = [("leader objective", obj)] + [(c.name, c.body) for c in lcons]
        exprs += [(f"objective of follower {f.name!r}", f.objective) for f in followers]
        exprs += [(f"constraint {c.name!r} of follower {f.name!r}", c.body)
                  for f in followers for c in f.constraints]
        for what, e in exprs:
            bad = nonfinite_constant([e])
            if bad is not None:
                raise ValueError(f"the {what} has the coefficient {bad!r}; expected finite numbers")
        for what, e in exprs[: 1 + len(lcons) + len(followers)]:
            for v in identify_variables(e, include_fixed=False):
                if id(v) not in owner:
                    raise ValueError(
                        f"variable {v.name!r} in the {what} belongs to nobody: declare it on a "
                        "follower block or pass it in set_leader(variables=...)"
                    )
        return GameStructure(
            followers=tuple(followers),
            leader_variables=tuple(leader_vars),
            leader_objective=obj,
            leader_sense=self._leader["sense"],
            leader_constraints=tuple(lcons),
        )

    def _build_follower(self, fname: str, owner: dict, leader_ids: set) -> Follower:
        block = self.model.component(fname)
        variables = []
        for v in block.component_data_objects(pyo.Var, descend_into=True, sort=False):
            if owner.get(id(v)) == "leader":
                raise ValueError(f"leader variable {v.name!r} is declared on follower {fname!r}")
            if id(v) in owner:
                raise ValueError(f"variable {v.name!r} belongs to two followers")
            owner[id(v)] = fname
            if not v.fixed:
                variables.append(v)
        if not variables:
            raise ValueError(f"follower {fname!r} has no (unfixed) variables: declare a pyo.Var on its block")
        objs = list(block.component_data_objects(pyo.Objective, active=True, descend_into=True))
        if len(objs) != 1:
            raise ValueError(
                f"follower {fname!r} must have exactly one active objective, found {len(objs)}"
            )
        own = {id(v) for v in variables}
        cons = [c for c in block.component_data_objects(pyo.Constraint, active=True, descend_into=True)]
        for c in cons:
            _check_follower_constraint(c, fname, own, leader_ids)
        obj = objs[0]
        _check_expression(obj.expr, f"objective {obj.name!r}")
        return Follower(
            name=fname, block=block, variables=tuple(variables), objective=obj.expr,
            sense=int(obj.sense), constraints=tuple(cons),
        )

    def __repr__(self) -> str:
        return f"StackelbergGame({self.name!r}, followers={self._followers})"


def _check_follower_constraint(c, fname: str, own: set, leader_ids: set) -> None:
    """A follower constraint must read ``(constant coefficients) . x_i + h(leader) (<=, =) bound``.

    Raises ``ValueError`` naming the constraint and what is wrong: a variable of
    another follower (or of nobody), a term nonlinear in the follower's own
    variables, or a coefficient of the follower's variables that depends on
    the leader's.
    """
    repn = generate_standard_repn(c.body, compute_values=True, quadratic=False)
    nonlinear = list(repn.nonlinear_vars or ())
    for v in list(repn.linear_vars) + nonlinear:
        if id(v) not in own and id(v) not in leader_ids:
            raise ValueError(
                f"constraint {c.name!r} of follower {fname!r} uses variable {v.name!r}, "
                "which is neither the follower's own nor a leader variable"
            )
    mixed = [v for v in nonlinear if id(v) in own]
    if not mixed:
        return
    derivs = derivatives(c.body, mixed)
    by_leader = [v.name for j, v in enumerate(mixed)
                 if not any(id(u) in own for u in _variables_of(derivs.get(j, 0.0)))
                 and _variables_of(derivs.get(j, 0.0))]
    if len(by_leader) == len(mixed):
        raise ValueError(
            f"constraint {c.name!r} of follower {fname!r} multiplies the follower's variables "
            f"({', '.join(by_leader)}) by expressions in the leader's variables; the coefficients "
            "of a follower's own variables must be constants (G x_i <= h(leader))"
        )
    raise ValueError(
        f"constraint {c.name!r} of follower {fname!r} is not linear in the follower's own "
        f"variables ({', '.join(v.name for v in mixed if v.name not in by_leader)}); follower "
        "constraints must be linear in the follower's own variables (their right-hand sides may "
        "be nonlinear in the leader's)"
    )


def _variables_of(expr) -> list:
    if expr.__class__ in native_types or not hasattr(expr, "is_expression_type"):
        return []
    return list(identify_variables(expr, include_fixed=False))


def initial_leader(game) -> np.ndarray:
    """The leader's variable values in structure order, ``None`` read as 0, clipped to the bounds."""
    out = []
    for v in game.structure().leader_variables:
        val = 0.0 if v.value is None else float(v.value)
        lo = -np.inf if v.lb is None else float(v.lb)
        hi = np.inf if v.ub is None else float(v.ub)
        out.append(min(max(val, lo), hi))
    return np.array(out, dtype=float)


def _constraint_signature(c) -> tuple:
    """A leader constraint's identity, activity and expression (a component's, per element)."""
    if isinstance(c, pyo.Constraint):
        return tuple((id(cd), cd.active, id(cd.expr)) for cd in c.values())
    if hasattr(c, "active") and hasattr(c, "expr") and not _is_relation(c):
        return ((id(c), c.active, id(c.expr)),)
    return ((id(c),),)


def _flatten_vars(item, what: str) -> list:
    if isinstance(item, VarData):
        return [item]
    if isinstance(item, pyo.Var):
        return list(item.values())
    raise ValueError(f"{what} must be a pyo.Var or one of its elements, got {item!r}")


def _check_expression(expr, what: str) -> None:
    if expr is None:
        raise ValueError(f"the {what} is missing")
    if _is_relation(expr):
        raise ValueError(f"the {what} must be a numeric expression, got the relation {expr}")
    if expr.__class__ not in native_types and not hasattr(expr, "is_expression_type"):
        raise ValueError(f"the {what} must be a Pyomo expression or a number, got {expr!r}")


def _is_relation(expr) -> bool:
    return hasattr(expr, "is_expression_type") and expr.is_expression_type(ExpressionType.RELATIONAL)


def _normalise_leader_constraint(c, k: int) -> list:
    """Turn an inequality into one or two ``body <= 0`` forms."""
    if isinstance(c, pyo.Constraint) and c.is_indexed():
        out = []
        for cd in c.values():
            out.extend(_normalise_leader_constraint(cd, k))
        return out
    if hasattr(c, "active") and not _is_relation(c) and not c.active:
        return []  # a deactivated constraint component
    if hasattr(c, "to_bounded_expression") and not _is_relation(c):
        lower, body, upper = c.to_bounded_expression()
        equality = c.equality
        text = c.name
    elif not _is_relation(c):
        raise ValueError(
            f"leader constraint {k} must be an inequality such as `expr <= c`, got {c!r}"
        )
    else:
        tmp = pyo.Constraint(expr=c)
        tmp.construct()
        lower, body, upper = tmp.to_bounded_expression()
        equality = tmp.equality
        text = str(c)
    if equality:
        raise ValueError(
            f"leader constraint {k} ({text}) is not an inequality; the leader's constraints must "
            "be inequalities (`<=`, `>=` or ranged)"
        )
    out = []
    if upper is not None:
        out.append(LeaderConstraint(name=f"{text} (upper)" if lower is not None else text, body=body - upper))
    if lower is not None:
        out.append(LeaderConstraint(name=f"{text} (lower)" if upper is not None else text, body=lower - body))
    return out
