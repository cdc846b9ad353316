"""Reading a game's Pyomo model into its :class:`GameStructure`.

:func:`build_structure` checks what :meth:`~stackopt.game.StackelbergGame.structure`
promises: every variable belongs to the leader or to exactly one follower, each
follower has one active objective and constraints linear in its own variables
with constant coefficients (right-hand sides smooth in the leader's), the
leader's constraints are inequalities (normalised to ``body <= 0``), every
coefficient is finite and every expression can be compiled and differentiated.
Every active constraint and objective and every unfixed variable of the model
is accounted for: it belongs to a follower's block or is declared to the leader
(``set_leader``); anything else is a ``ValueError`` naming it and saying how to
give it to a player (:func:`_remedies`), since no method would see it.
Deactivated components and blocks are left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyomo.environ as pyo
from pyomo.core.base.component import ActiveComponent
from pyomo.core.base.var import VarData
from pyomo.core.expr.numvalue import native_types
from pyomo.core.expr.visitor import identify_variables
from pyomo.core.expr.expr_common import ExpressionType
from pyomo.repn.standard_repn import generate_standard_repn

from .expr import derivatives, scan


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
    """What :meth:`~stackopt.game.StackelbergGame.structure` checked and extracted."""

    followers: tuple
    leader_variables: tuple
    leader_objective: Any
    leader_sense: int
    leader_constraints: tuple
    # what the game is made of besides the model's components, so that an edit of it is seen:
    # every named expression its expressions enter, and the variables they use or the leader
    # declares that are not on the game's model
    named_expressions: tuple = ()
    expression_variables: tuple = ()

    @property
    def follower_variables(self) -> tuple:
        return tuple(v for f in self.followers for v in f.variables)


def build_structure(name: str, model, follower_names: list, leader: dict | None) -> GameStructure:
    """Validate the game ``name`` (its model, its followers' block names, what
    ``set_leader`` recorded) and return its parts; raises ``ValueError`` naming what is wrong."""
    if not follower_names:
        raise ValueError(f"game {name!r} has no followers: call add_follower()")
    if leader is None:
        raise ValueError(f"game {name!r} has no leader: call set_leader()")
    owner: dict[int, str] = {}
    leader_vars = []
    for item in leader["variables"]:
        for v in _flatten_vars(item, "leader variable"):
            if v.fixed:
                continue
            owner[id(v)] = "leader"
            leader_vars.append(v)
    leader_ids = set(owner)
    followers = []
    for fname in follower_names:
        f = _build_follower(model, fname, owner, leader_ids)
        followers.append(f)
    if not leader_vars:
        raise ValueError("the leader has no (unfixed) variables: pass them in set_leader(variables=...)")
    obj = leader["objective"]
    _check_expression(obj, "leader objective")
    lcons = []
    for k, c in enumerate(leader["constraints"]):
        lcons.extend(_normalise_leader_constraint(c, k))
    exprs = [("leader objective", obj)] + [(c.name, c.body) for c in lcons]
    exprs += [(f"objective of follower {f.name!r}", f.objective) for f in followers]
    exprs += [(f"constraint {c.name!r} of follower {f.name!r}", c.body)
              for f in followers for c in f.constraints]
    scans = [scan(e) for _, e in exprs]  # one walk of each expression for every check below
    for (what, e), found in zip(exprs, scans):
        if found.nonfinite is not None:
            raise ValueError(f"the {what} has the coefficient {found.nonfinite!r}; expected finite numbers")
        if found.unsupported is not None:
            raise ValueError(
                f"the {what} uses {found.unsupported}, which stackopt cannot differentiate: every "
                "method needs the derivatives of the game's expressions; write it with smooth "
                "functions (abs() is supported: max(a, b) = (a + b + abs(a - b)) / 2)")
    for (what, e), found in zip(exprs[: 1 + len(lcons) + len(followers)], scans):
        for v in found.variables:
            if not v.fixed and id(v) not in owner:
                raise ValueError(
                    f"variable {v.name!r} in the {what} belongs to nobody: declare it on a "
                    "follower block or pass it in set_leader(variables=...)"
                )
    _check_accounted(model, followers, leader, owner)
    return GameStructure(
        followers=tuple(followers),
        leader_variables=tuple(leader_vars),
        leader_objective=obj,
        leader_sense=leader["sense"],
        leader_constraints=tuple(lcons),
        named_expressions=tuple({id(e): e for found in scans for e in found.named}.values()),
        expression_variables=_off(model, [v for found in scans for v in found.variables]
                                  + [v for item in leader["variables"] for v in _flatten_vars(item, "")]),
    )


def _off(model, variables: list) -> tuple:
    """The variables of ``variables`` that are not on ``model``, each once."""
    return tuple({id(v): v for v in variables if v.model() is not model}.values())


# the kinds of component a game's model may hold: data (variables, parameters, sets, named
# expressions, suffixes), what stackopt reads (constraints, objectives) and blocks
_READ = (pyo.Var, pyo.Param, pyo.Set, pyo.RangeSet, pyo.Expression, pyo.Suffix, pyo.Constraint,
         pyo.Objective, pyo.Block)


def _check_accounted(model, followers: list, leader: dict, owner: dict) -> None:
    """Raise ``ValueError`` naming an active constraint or objective, or an unfixed variable,
    of ``model`` that belongs to no follower and is not declared to the leader, or an active
    component of a kind stackopt does not read (``pyo.LogicalConstraint``, ``Complementarity``,
    ``SOSConstraint``, ``Piecewise``, disjunctions), anywhere: no method would see it.
    Deactivated components and blocks are left out; the contents of follower blocks are the
    followers' (checked by :func:`_build_follower`)."""
    skip = {id(f.block) for f in followers}
    declared = {id(leader["objective"])}
    for c in leader["constraints"]:
        declared.update(id(cd) for cd in (c.values() if isinstance(c, pyo.Constraint) else [c]))
    stack = [model]
    while stack:
        block = stack.pop()
        for comp in block.component_objects(active=True, descend_into=False, sort=False):
            if comp.ctype not in _READ and isinstance(comp, ActiveComponent) and comp.active:
                raise ValueError(
                    f"{comp.name!r} is a {comp.ctype.__name__}, which stackopt does not read, so no "
                    "method would use it: write it with pyo.Constraint (a follower's on its block, "
                    "the leader's in set_leader(constraints=...)), or deactivate it")
        if id(block) in skip:
            continue
        for comp in block.component_data_objects((pyo.Var, pyo.Constraint, pyo.Objective),
                                                 active=True, descend_into=False, sort=False):
            if id(comp) in declared or (comp.ctype is pyo.Var and (comp.fixed or id(comp) in owner)):
                continue
            raise ValueError(_unaccounted(comp, block is not model and block.name, owner))
        stack.extend(block.component_data_objects(pyo.Block, active=True, descend_into=False, sort=False))


def _unaccounted(comp, block, owner: dict) -> str:
    """The message for a component of the model that belongs to nobody: what it is, where,
    and each way of giving it to a player (:func:`_remedies`)."""
    kind = {pyo.Var: "variable", pyo.Constraint: "constraint", pyo.Objective: "objective"}[comp.ctype]
    where = f" (on block {block!r}, which is not a follower)" if block else ""
    users = [] if kind == "variable" else [
        owner.get(id(v), "nobody") for v in scan(comp.body if kind == "constraint" else comp.expr).variables
        if not v.fixed]
    leave = ("fix it (a fixed variable is a constant) or delete it" if kind == "variable"
             else "deactivate it (or delete it) to leave it out")
    return (f"{kind} {comp.name!r}{where} belongs to no follower and is not declared to the leader, "
            f"so no method would use it: " + "; ".join(_remedies(kind, comp, users)) + f"; or {leave}")


def _remedies(kind: str, comp, users: list) -> list:
    """How to give an unaccounted component to a player, by what it is and whose unfixed
    variables (``users``: "leader", a follower's name, "nobody") it uses."""
    ref = "game.model." + comp.parent_component().name
    if kind == "variable":
        return ["declare it on a follower's block", f"pass it in set_leader(variables=[..., {ref}])"]
    if kind == "objective":
        return [f"if it is the leader's, pass it in set_leader(objective={ref}, sense=...)",
                "if it is a follower's, declare it on that follower's block (and deactivate the "
                "follower's other objective)"]
    followers = list(dict.fromkeys(u for u in users if u not in ("leader", "nobody")))
    out = []
    if len(followers) == 1:
        out.append(f"if it is a constraint of follower {followers[0]!r} alone, declare it on that "
                   f"follower's block (game.model.{followers[0]}.{comp.parent_component().local_name} = "
                   "pyo.Constraint(...))")
    if users and all(u == "leader" for u in users):
        out.append(f"it uses only the leader's variables: pass it in set_leader(constraints=[..., "
                   f"{ref}]) (kept exactly by every gradient method where it is linear)")
    else:  # each further way of declaring a constraint (one the followers share) is one more entry
        out.append(f"if the leader must keep it at the followers' equilibrium, pass it in "
                   f"set_leader(constraints=[..., {ref}])")
    return out


def _build_follower(model, fname: str, owner: dict, leader_ids: set) -> Follower:
    block = model.component(fname)
    if block is None:
        raise ValueError(f"follower {fname!r} is no longer on the model (its block was deleted); a "
                         "game's followers cannot be removed: build the game without it")
    if block.ctype is not pyo.Block or block.is_indexed():
        raise ValueError(f"follower {fname!r}: the model's component {fname!r} is now a "
                         f"{type(block).__name__}, not the follower's block; a game's followers "
                         "cannot be replaced: build the game anew")
    if not block.active:
        raise ValueError(f"follower {fname!r} is deactivated; a game's followers cannot be "
                         "switched off: activate its block again, or build the game without it")
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
