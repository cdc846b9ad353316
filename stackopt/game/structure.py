"""Reading a game's Pyomo model into its :class:`GameStructure`.

:func:`build_structure` checks what :meth:`~stackopt.game.StackelbergGame.structure`
promises: every variable belongs to the leader or to exactly one follower, each
follower has one active objective, the leader's constraints are inequalities
(normalised to ``body <= 0``), every coefficient is finite, and every active
constraint and objective and every unfixed variable of the model belongs to a
follower's block, is a shared constraint
(:meth:`~stackopt.game.StackelbergGame.add_shared_constraint`) or is declared to
the leader (``set_leader``); anything else is a ``ValueError`` naming it and saying
how to give it to a player (:func:`_remedies`), since no method would see it.
Deactivated components and blocks are left out. Every expression can be compiled
and differentiated.

A follower's constraints bind that follower only (the others' and the leader's
variables are data to it: a generalized Nash game). Those linear in the
follower's own variables with constant coefficients and using no other
follower's variables (right-hand sides smooth in the leader's) are its *linear
rows*, the fast path of :mod:`stackopt.kernel.rows`; every other smooth constraint
(nonlinear in its own variables, coefficients that depend on the leader's,
other followers' variables) is listed in :attr:`Follower.smooth` and compiled by
:mod:`stackopt.kernel.smooth_rows`. A shared constraint binds every follower it names
(by default those whose variables appear in it), with multipliers as the
game's ``shared`` concept says.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyomo.core as pyo
from pyomo.core.base.component import ActiveComponent
from pyomo.core.base.var import VarData
from pyomo.core.expr.expr_common import ExpressionType
from pyomo.core.expr.numvalue import native_types
from pyomo.core.expr.relational_expr import EqualityExpression, RangedExpression
from pyomo.core.expr.visitor import identify_variables
from pyomo.repn.standard_repn import generate_standard_repn

from stackopt.expr import scan


@dataclass(frozen=True)
class Follower:
    """A validated follower: its block, variables, objective and linear constraints."""

    name: str
    block: Any
    variables: tuple  # VarData, not fixed, in declaration order
    objective: Any  # expression
    sense: int  # pyo.minimize (1) or pyo.maximize (-1)
    constraints: tuple  # ConstraintData: every active constraint of the follower's block
    smooth: tuple = ()  # those of ``constraints`` outside the linear-row fast path


@dataclass(frozen=True)
class LeaderConstraint:
    """``body <= 0`` after normalisation, with the user's text for messages."""

    name: str
    body: Any


@dataclass(frozen=True)
class SharedConstraint:
    """A constraint shared by ``followers`` (their names, in game order), declared once by
    :meth:`~stackopt.game.StackelbergGame.add_shared_constraint`."""

    name: str
    constraint: Any  # ConstraintData
    followers: tuple


@dataclass(frozen=True)
class GameStructure:
    """What :meth:`~stackopt.game.StackelbergGame.structure` checked and extracted.

    ``shared`` lists the shared constraints, ``concept`` the equilibrium concept they are
    read with (``"variational"``, ``"weighted"`` or ``"any"``) and ``weights`` Rosen's
    weight of each follower (all 1 unless ``"weighted"``).
    """

    followers: tuple
    leader_variables: tuple
    leader_objective: Any
    leader_sense: int
    leader_constraints: tuple
    shared: tuple = ()
    concept: str = "variational"
    weights: tuple = ()
    # what the game is made of besides the model's components, so that an edit of it is seen:
    # every named expression its expressions enter, and the variables they use or the leader
    # declares that are not on the game's model
    named_expressions: tuple = ()
    expression_variables: tuple = ()

    @property
    def follower_variables(self) -> tuple:
        return tuple(v for f in self.followers for v in f.variables)


def build_structure(name: str, model, follower_names: list, leader: dict | None,
                    shared: dict | None = None, concept: str = "variational",
                    weights: dict | None = None) -> GameStructure:
    """Validate the game ``name`` (its model, its followers' block names, what
    ``set_leader`` recorded, the shared constraints ``shared``: name -> (component,
    named followers or None), the shared concept and Rosen's ``weights`` by follower name)
    and return its parts; raises ``ValueError`` naming what is wrong."""
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
    own_vars = {fname: _follower_variables(model, fname, owner) for fname in follower_names}
    followers = [_build_follower(model, fname, own_vars[fname], owner, leader_ids)
                 for fname in follower_names]
    if not leader_vars:
        raise ValueError("the leader has no (unfixed) variables: pass them in set_leader(variables=...)")
    obj = leader["objective"]
    _check_expression(obj, "leader objective")
    lcons = []
    for k, c in enumerate(leader["constraints"]):
        lcons.extend(_normalise_leader_constraint(c, k))
    shared_cons = _build_shared(shared or {}, owner, follower_names)
    exprs = [("leader objective", obj)] + [(c.name, c.body) for c in lcons]
    exprs += [(f"objective of follower {f.name!r}", f.objective) for f in followers]
    exprs += [(f"constraint {c.name!r} of follower {f.name!r}", c.body)
              for f in followers for c in f.constraints]
    exprs += [(f"shared constraint {s.name!r}", s.constraint.body) for s in shared_cons]
    scans = [scan(e) for _, e in exprs]  # one walk of each expression for every check below
    for (what, _), found in zip(exprs, scans):
        if found.nonfinite is not None:
            raise ValueError(f"the {what} has the coefficient {found.nonfinite!r}; expected finite numbers")
        if found.unsupported is not None:
            raise ValueError(
                f"the {what} uses {found.unsupported}, which stackopt cannot differentiate: every "
                "method needs the derivatives of the game's expressions; write it with smooth "
                "functions (abs() is supported: max(a, b) = (a + b + abs(a - b)) / 2)")
    for (what, _), found in zip(exprs[: 1 + len(lcons) + len(followers)], scans):
        for v in found.variables:
            if not v.fixed and id(v) not in owner:
                raise ValueError(
                    f"variable {v.name!r} in the {what} belongs to nobody: declare it on a "
                    "follower block or pass it in set_leader(variables=...)"
                )
    _check_accounted(model, followers, leader, owner, shared_cons)
    return GameStructure(
        followers=tuple(followers),
        leader_variables=tuple(leader_vars),
        leader_objective=obj,
        leader_sense=leader["sense"],
        leader_constraints=tuple(lcons),
        shared=tuple(shared_cons),
        concept=concept,
        weights=_weights(concept, weights, follower_names, shared_cons),
        named_expressions=tuple({id(e): e for found in scans for e in found.named}.values()),
        expression_variables=_off(model, [v for found in scans for v in found.variables]
                                  + [v for item in leader["variables"] for v in _flatten_vars(item, "")]),
    )


def _off(model, variables: list) -> tuple:
    """The variables of ``variables`` that are not on ``model``, each once."""
    return tuple({id(v): v for v in variables if v.model() is not model}.values())


def _follower_variables(model, fname: str, owner: dict) -> list:
    """The follower's unfixed variables; records every variable of its block in ``owner``."""
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
    return variables


def _build_follower(model, fname: str, variables: list, owner: dict, leader_ids: set) -> Follower:
    block = model.component(fname)
    objs = list(block.component_data_objects(pyo.Objective, active=True, descend_into=True))
    if len(objs) != 1:
        raise ValueError(
            f"follower {fname!r} must have exactly one active objective, found {len(objs)}"
        )
    own = {id(v) for v in variables}
    cons = [c for c in block.component_data_objects(pyo.Constraint, active=True, descend_into=True)]
    smooth = tuple(c for c in cons if not _linear_row(c, fname, own, owner, leader_ids))
    obj = objs[0]
    _check_expression(obj.expr, f"objective {obj.name!r}")
    return Follower(
        name=fname, block=block, variables=tuple(variables), objective=obj.expr,
        sense=int(obj.sense), constraints=tuple(cons), smooth=smooth,
    )


def _linear_row(c, fname: str, own: set, owner: dict, leader_ids: set) -> bool:
    """Whether the follower constraint ``c`` is a linear row ``(constant coefficients) . x_i +
    h(leader) (<=, =) bound``; else it is a smooth constraint of the follower.

    Raises ``ValueError`` naming the constraint where a variable belongs to nobody, where
    it uses none of the follower's own variables but other followers' (a constraint
    of theirs, or a shared one), or where it has no bound.
    """
    if not c.has_lb() and not c.has_ub():
        raise ValueError(f"constraint {c.name!r} of follower {fname!r} has neither a lower nor "
                         "an upper bound")
    repn = generate_standard_repn(c.body, compute_values=True, quadratic=False)
    nonlinear = list(repn.nonlinear_vars or ())
    others = []
    for v in list(repn.linear_vars) + nonlinear:
        if id(v) not in owner:
            raise ValueError(
                f"constraint {c.name!r} of follower {fname!r} uses variable {v.name!r}, which "
                "belongs to nobody: declare it on a follower block or pass it in "
                "set_leader(variables=...)"
            )
        if id(v) not in own and id(v) not in leader_ids:
            others.append(v)
    if others:
        if not any(id(v) in own for v in identify_variables(c.body, include_fixed=False)):
            raise ValueError(
                f"constraint {c.name!r} of follower {fname!r} uses none of the follower's own "
                f"variables but other followers' ({', '.join(v.name for v in others)}): a "
                "constraint binds the follower whose block holds it; declare it on theirs, or "
                "once for several followers with game.add_shared_constraint(name, expr)"
            )
        return False
    return not any(id(v) in own for v in nonlinear)


def _build_shared(shared: dict, owner: dict, follower_names: list) -> list:
    """Every active element of each shared constraint, with the followers it binds."""
    out = []
    for comp, named in shared.values():
        datas = list(comp.values()) if comp.is_indexed() else [comp]
        for cd in datas:
            if not cd.active:
                continue
            what = f"shared constraint {cd.name!r}"
            if not cd.has_lb() and not cd.has_ub():
                raise ValueError(f"the {what} has neither a lower nor an upper bound")
            appear = []
            for v in identify_variables(cd.body, include_fixed=False):
                who = owner.get(id(v))
                if who is None:
                    raise ValueError(
                        f"variable {v.name!r} in the {what} belongs to nobody: declare it on a "
                        "follower block or pass it in set_leader(variables=...)"
                    )
                if who != "leader" and who not in appear:
                    appear.append(who)
            if named is not None:
                missing = [f for f in named if f not in appear]
                if missing:
                    raise ValueError(
                        f"the {what} names follower {', '.join(map(repr, missing))}, whose "
                        "variables do not appear in it; name only followers it constrains"
                    )
                binds = [f for f in follower_names if f in named]
            else:
                binds = [f for f in follower_names if f in appear]
            if not binds:
                raise ValueError(
                    f"the {what} uses no follower's variables: a constraint in the leader's "
                    "variables only belongs to set_leader(constraints=...)"
                )
            out.append(SharedConstraint(name=cd.name, constraint=cd, followers=tuple(binds)))
    return out


def _weights(concept: str, weights: dict | None, follower_names: list, shared: list) -> tuple:
    """Rosen's weight of each follower, in game order (1 unless ``concept == "weighted"``)."""
    if concept != "weighted":
        return tuple(1.0 for _ in follower_names)
    weights = dict(weights or {})
    unknown = [f for f in weights if f not in follower_names]
    if unknown:
        raise ValueError(f"shared_weights names {', '.join(map(repr, unknown))}, which "
                         f"{'is not a follower' if len(unknown) == 1 else 'are not followers'}; "
                         f"followers are {follower_names}")
    bound = [f for f in follower_names if any(f in s.followers for s in shared)]
    missing = [f for f in bound if f not in weights]
    if missing:
        raise ValueError(f"shared='weighted' needs a weight for every follower a shared constraint "
                         f"binds; shared_weights has none for {', '.join(map(repr, missing))}")
    return tuple(float(weights.get(f, 1.0)) for f in follower_names)


# the kinds of component a game's model may hold: data (variables, parameters, sets, named
# expressions, suffixes), what stackopt reads (constraints, objectives) and blocks
_READ = (pyo.Var, pyo.Param, pyo.Set, pyo.RangeSet, pyo.Expression, pyo.Suffix, pyo.Constraint,
         pyo.Objective, pyo.Block)


def _check_accounted(model, followers: list, leader: dict, owner: dict, shared: list) -> None:
    """Raise ``ValueError`` naming an active constraint or objective, or an unfixed variable,
    of ``model`` that belongs to no follower, is not a shared constraint and is not declared
    to the leader, or an active component of a kind stackopt does not read
    (``pyo.LogicalConstraint``, ``Complementarity``, ``SOSConstraint``, ``Piecewise``,
    disjunctions), anywhere: no method would see it. Deactivated components and blocks are
    left out; the contents of follower blocks are the followers' (checked by
    :func:`_build_follower`)."""
    skip = {id(f.block) for f in followers}
    declared = {id(leader["objective"])} | {id(s.constraint) for s in shared}
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
                    "one several followers share with game.add_shared_constraint, the leader's in "
                    "set_leader(constraints=...)), or deactivate it")
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
    declared = ("is neither shared nor declared to the leader" if kind == "constraint"
                else "is not declared to the leader")
    return (f"{kind} {comp.name!r}{where} belongs to no follower and {declared}, so no method would "
            "use it: " + "; ".join(_remedies(kind, comp, users)) + f"; or {leave}")


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
    if len(followers) > 1:
        out.append(f"if it binds the followers {', '.join(map(repr, followers))} together, declare it "
                   f"once with game.add_shared_constraint({comp.parent_component().local_name!r}, "
                   f"{ref})")
    if users and all(u == "leader" for u in users):
        out.append(f"it uses only the leader's variables: pass it in set_leader(constraints=[..., "
                   f"{ref}]) (kept exactly by every gradient method where it is linear)")
    else:
        out.append(f"if the leader must keep it at the followers' equilibrium, pass it in "
                   f"set_leader(constraints=[..., {ref}])")
    return out


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


def _relation_text(rel) -> str:
    """A relation as text for messages, a named Expression by its name: Pyomo's own text
    writes every named Expression out in full (a leader constraint on a model's
    ``Expression`` of a thousand terms would be named by tens of thousands of characters)."""
    def side(arg) -> str:
        if hasattr(arg, "is_named_expression_type") and arg.is_named_expression_type():
            return arg.name
        return str(arg)

    if isinstance(rel, RangedExpression):  # lower <= body <= upper, strictness per side
        lo, hi = ("<" if s else "<=" for s in rel.strict)
        return f"{side(rel.args[0])}  {lo}  {side(rel.args[1])}  {hi}  {side(rel.args[2])}"
    op = "==" if isinstance(rel, EqualityExpression) else ("<" if rel.strict else "<=")
    return f"{side(rel.args[0])}  {op}  {side(rel.args[1])}"


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
        text = _relation_text(c)
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
