"""Writing a Stackelberg game in Pyomo: one leader, several followers in Nash equilibrium.

A game owns a ``pyo.ConcreteModel``. Each follower is a block on it holding the
follower's variables, exactly one objective (which may use the other followers'
and the leader's variables) and optional smooth constraints, equalities and
inequalities, which bind that follower only and may use every variable of the
game: nonlinear in its own variables (``u1**2 + u2**2 <= 1``), coefficients in
the leader's (``p * x <= 1``), other followers' variables (a generalized Nash
game). A constraint shared by several followers is declared once with
:meth:`StackelbergGame.add_shared_constraint` (``game.add_shared_constraint("cap",
f.q + g.q <= 30)``); the game's ``shared`` option says which equilibrium concept
reads it (``"variational"``: one common multiplier, Rosen's normalized equilibrium;
``"weighted"``: divided by each follower's weight; ``"any"``: one per follower, any
generalized Nash equilibrium). The leader names its variables, an objective
and inequality constraints; the leader's objective and constraints are evaluated
at the followers' equilibrium. ``docs/game-class.md`` states the class with an
example of each form and which equilibrium each method solves.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyomo.core as pyo

from .structure import GameStructure, _is_relation, build_structure

SENSES = {pyo.minimize: "minimize", pyo.maximize: "maximize"}
SHARED_CONCEPTS = ("variational", "weighted", "any")


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

    ``shared`` is the equilibrium concept of the shared constraints
    (:meth:`add_shared_constraint`): ``"variational"`` (the default: one multiplier
    per shared constraint for all the followers it binds, Rosen's normalized
    equilibrium, which is unique where the game is strictly monotone),
    ``"weighted"`` (Rosen's normalized equilibrium with weights ``r_i > 0``: follower
    ``i``'s multiplier is ``lambda / r_i``; ``shared_weights`` maps each follower a
    shared constraint binds to its weight) or ``"any"`` (each follower its own
    multiplier: any generalized Nash equilibrium; where a shared constraint is
    active the equilibria form a manifold, the KKT matrix is singular there, and
    results say so).
    """

    def __init__(self, name: str, *, samples: int = 1, dynamics: str = "gradient-play",
                 shared: str = "variational", shared_weights: dict | None = None):
        if not isinstance(name, str) or not name.strip():  # a label, never a component name
            raise ValueError(f"game name must be a non-empty string, got {name!r}")
        if not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        if dynamics not in ("gradient-play", "best-response"):
            raise ValueError(f"dynamics must be 'gradient-play' or 'best-response', got {dynamics!r}")
        if shared not in SHARED_CONCEPTS:
            raise ValueError(f"shared must be one of {SHARED_CONCEPTS}, got {shared!r}")
        self.name = name
        self.samples = samples
        self.dynamics = dynamics
        self.shared = shared
        self.shared_weights = _check_weights(shared, shared_weights)
        self._shared: dict[str, tuple] = {}
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

    def add_shared_constraint(self, name: str, expr, followers: Iterable[str] | None = None):
        """Declare a constraint shared by several followers, once; returns its component.

        ``expr`` is a relation (``f1.q + f2.q <= 30``, an equality, or ranged), put on the
        model as the Constraint ``game.model.<name>``, or a Constraint component already on
        ``game.model`` (every active element is shared). It binds every follower whose
        variables appear in it, or those named in ``followers`` (each must appear in it);
        the leader's variables may appear anywhere. How its multipliers are shared is the
        game's ``shared`` concept.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"shared constraint name must be a Python identifier, got {name!r}")
        if name in self._shared:
            raise ValueError(f"shared constraint {name!r} is already declared")
        if followers is not None:
            if isinstance(followers, str):
                followers = [followers]
            followers = tuple(followers)
            unknown = [f for f in followers if f not in self._followers]
            if unknown:
                raise ValueError(f"shared constraint {name!r} names {', '.join(map(repr, unknown))}, "
                                 f"which {'is not a follower' if len(unknown) == 1 else 'are not followers'}; "
                                 f"followers are {self._followers}")
            if not followers:
                raise ValueError(f"shared constraint {name!r}: followers must name at least one "
                                 "follower (or be None: those whose variables appear)")
        if isinstance(expr, pyo.Constraint):
            if expr.model() is not self.model:
                raise ValueError(f"shared constraint {name!r}: the Constraint {expr.name!r} is not "
                                 "on this game's model")
            comp = expr
        else:
            if not _is_relation(expr):
                raise ValueError(f"shared constraint {name!r} must be a relation such as "
                                 f"`f1.q + f2.q <= 30` or a Constraint on the model, got {expr!r}")
            if self.model.component(name) is not None:
                raise ValueError(f"shared constraint name {name!r} is already used on the model")
            comp = pyo.Constraint(expr=expr)
            self.model.add_component(name, comp)
        self._shared[name] = (comp, followers)
        self._touch()
        return comp

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
            if self.shared not in SHARED_CONCEPTS:
                raise ValueError(f"shared must be one of {SHARED_CONCEPTS}, got {self.shared!r}")
            _check_weights(self.shared, self.shared_weights)
            structure = build_structure(
                self.name, self.model, self._followers, self._leader, shared=self._shared,
                concept=self.shared, weights=self.shared_weights)
            self._cache["structure"] = structure
            self._cache["signature"] = self._signature(structure)
        return self._cache["structure"]

    def refresh(self) -> None:
        """Bring what was prepared from the model up to date with it (every solve does this).

        A structural change since the structure was read (a component added,
        removed, deactivated or given a new expression, a named ``pyo.Expression``
        given a new one, a variable fixed or unfixed, a constraint's sides
        changed, a follower's block deleted) discards the prepared forms, which
        are rebuilt and validated again on use; values (mutable Params, variable
        bounds, values of fixed variables, right-hand sides and coefficients,
        initial values) are read again without recompiling anything.
        """
        if "structure" not in self._cache:
            return  # nothing prepared: the structure is read on first use
        structure = self._cache["structure"]
        if self._cache["signature"][0] != self._signature(structure)[0]:
            self._cache.clear()
        elif "kernel" in self._cache:
            self._cache["kernel"].refresh()

    def _signature(self, structure: GameStructure) -> tuple[tuple, list]:
        """What the prepared forms of ``structure`` depend on besides values, and the objects
        whose identities it holds (kept alive with it, so that no identity is reused by an
        object made later): every component (of any kind), block, variable, active objective
        and active constraint of the model, the leader's constraints, the shared constraints'
        declarations and concept, and the named expressions (and the variables off the model)
        met in the game's expressions, collected when the structure was read, so that no
        expression is walked here. Linear in the number of components."""
        model = self.model
        components = list(model.component_objects(descend_into=True, sort=False))  # of every kind
        blocks = list(model.component_data_objects(pyo.Block, descend_into=True, sort=False))
        variables = list(model.component_data_objects(pyo.Var, descend_into=True, sort=False))
        objectives = list(model.component_data_objects(pyo.Objective, active=True, descend_into=True,
                                                       sort=False))
        constraints = list(model.component_data_objects(pyo.Constraint, active=True, descend_into=True,
                                                        sort=False))
        named = list(structure.named_expressions)
        exprs = [x.expr for x in objectives + constraints + named]
        foreign = list(structure.expression_variables)
        keep = [model, *components, *blocks, *variables, *objectives, *constraints, *named, *exprs,
                *foreign]
        parts = [
            tuple((f, id(model.component(f))) for f in self._followers),
            tuple(map(id, components)), tuple(getattr(c, "active", None) for c in components),
            tuple(map(id, blocks)), tuple(b.active for b in blocks),
            tuple(map(id, variables)), tuple(v.fixed for v in variables),
            tuple(map(id, objectives)), tuple(int(o.sense) for o in objectives),
            tuple(map(id, constraints)),
            tuple((c.equality, c.has_lb(), c.has_ub()) for c in constraints),
            tuple(map(id, named)), tuple(map(id, exprs)),
            tuple(map(id, foreign)), tuple(v.fixed for v in foreign),
            (self.shared, tuple(sorted((self.shared_weights or {}).items()))),
            tuple((sname, named, id(comp)) for sname, (comp, named) in self._shared.items()),
        ]
        if self._leader is not None:
            parts.extend(_constraint_signature(c, keep) for c in self._leader["constraints"])
        return tuple(parts), keep

    def cached(self, key: str, build, keep=None):
        """Per-game cache for prepared artefacts (cleared when the game changes); with
        ``keep``, a value built now is kept only where ``keep(value)`` holds (it is returned
        either way)."""
        if key in self._cache:
            return self._cache[key]
        value = build()
        if keep is None or keep(value):
            self._cache[key] = value
        return value

    def recall(self, key: str, default=None):
        """The value the per-game cache holds under ``key``, else ``default``."""
        return self._cache.get(key, default)

    def remember(self, key: str, value) -> None:
        """Keep ``value`` under ``key`` in the per-game cache (cleared when the game changes)."""
        self._cache[key] = value

    def __repr__(self) -> str:
        return f"StackelbergGame({self.name!r}, followers={self._followers})"


def initial_leader(game) -> np.ndarray:
    """The leader's variable values in structure order, ``None`` read as 0, clipped to the bounds."""
    out = []
    for v in game.structure().leader_variables:
        val = 0.0 if v.value is None else float(v.value)
        lo = -np.inf if v.lb is None else float(v.lb)
        hi = np.inf if v.ub is None else float(v.ub)
        out.append(min(max(val, lo), hi))
    return np.array(out, dtype=float)


def _check_weights(shared: str, weights) -> dict | None:
    """Rosen's weights by follower name: given exactly where ``shared == "weighted"``,
    each a finite number > 0."""
    if shared != "weighted":
        if weights is not None:
            raise ValueError(f"shared_weights are Rosen's weights of shared='weighted'; with "
                             f"shared={shared!r} pass none, got {weights!r}")
        return None
    if not isinstance(weights, dict) or not weights:
        raise ValueError("shared='weighted' needs shared_weights, a dict of follower name -> "
                         f"weight > 0, got {weights!r}")
    out = {}
    for key, val in weights.items():
        if not isinstance(key, str):
            raise ValueError(f"shared_weights keys must be follower names, got {key!r}")
        if isinstance(val, bool) or not isinstance(val, (int, float, np.integer, np.floating)) \
                or not np.isfinite(val) or not val > 0:
            raise ValueError(f"shared_weights[{key!r}] must be a finite number > 0, got {val!r}")
        out[key] = float(val)
    return out


def _constraint_signature(c, keep: list) -> tuple:
    """A leader constraint's identity, activity and expression (a component's, per element);
    the objects whose identities it holds are appended to ``keep``."""
    if isinstance(c, pyo.Constraint):
        keep.extend(x for cd in c.values() for x in (cd, cd.expr))
        return tuple((id(cd), cd.active, id(cd.expr)) for cd in c.values())
    keep.append(c)
    if hasattr(c, "active") and hasattr(c, "expr") and not _is_relation(c):
        keep.append(c.expr)
        return ((id(c), c.active, id(c.expr)),)
    return ((id(c),),)
