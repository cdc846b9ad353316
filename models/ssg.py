"""Security game with several defenders coordinated by a reimbursing leader (the paper; docs/games.md).

``T`` targets are attacked by a quantal-response attacker; ``n`` defenders (the
followers) each patrol their own subset ``T_i`` of coverable targets with
``resources`` units of coverage. The leader reimburses defender ``i`` an amount
``pi_it >= 0`` when target ``t`` is successfully attacked, to steer the
defenders' Nash equilibrium towards targets the leader values.

Notation (all arrays are part of ``game.data``):

* ``x_it in [0, 1]`` for ``t in T_i``, ``sum_{t in T_i} x_it = resources`` (a
  follower constraint). No variable exists for ``t`` outside ``T_i``; where a
  formula below needs one, ``x_it = 0`` there.
* coverage ``cov_t = 1 - prod_{i: t in T_i} (1 - x_it)``;
* attack distribution ``p = softmax(a - rationality * cov)`` with
  attractiveness ``a_t ~ N(0, 1)``;
* defender ``i`` maximises ``sum_{t in R_i} p_t (1 - cov_t) (U_it + pi_it)`` with
  ``U_it ~ -Uniform[0, 10]`` on its own targets and ``U_it = 0`` elsewhere (a
  defender loses nothing on a target it does not guard);
* the leader maximises ``sum_t p_t (1 - cov_t) U_t`` with ``U_t ~ -Uniform[0, 10]``.

Sizes. By default each defender may cover a random subset of
``coverable = ceil(targets / 2)`` targets and has ``resources`` = a fifth of its
smallest coverable set: 50 targets and 10 units at the reference size of 100
targets, 10 and 2 at 20 targets, so every size has a game in which the
defenders choose.

Which pairs are reimbursed (``reimburse``), the set ``R_i`` above:

* ``"coverable"`` (default): only a defender's own targets, ``R_i = T_i``
  (``sum_i |T_i|`` leader variables, 250 at the reference size); the reference
  experiments' SLSQP baseline;
* ``"all"``: every (defender, target) pair, ``R_i`` = all targets (``n T``
  leader variables, 500); the reference experiments' gradient method did this.
  A defender paid for an attack on a target it cannot cover still profits when
  that target draws the attack away from its own.

Two budget definitions (``budget_kind``), for either set:

* ``"reimbursement"`` (default, the reference experiments' definition, so results
  compare with the published table): each defender's reimbursement weighted by
  its own non-coverage of the target,
  ``sum_{i, t in R_i} pi_it (1 - x_it) <= B``; with ``reimburse="coverable"``
  that is ``sum_{i, t in T_i} pi_it (1 - x_it) <= B``, with ``"all"`` it is
  ``sum_{i, t in T_i} pi_it (1 - x_it) + sum_{i, t not in T_i} pi_it <= B``
  (an off-region reimbursement costs its full amount);
* ``"expected"`` (the paper's prose): the expected payment
  ``sum_{i, t in R_i} pi_it p_t (1 - cov_t) <= B``.

``reference_seed`` (36, 38-45) loads the reference experiments' own instance of
that seed (100 targets, 5 defenders, 50 coverable targets and 10 units each;
see :mod:`stackopt.models.reference`). Note that the reference's oracle starts
the defenders from all-zero coverage, which selects one equilibrium among
several; stackopt scores from seeded random starts, so its initial objective
differs from the recorded one (see ``tests/test_reference.py``).

The followers' game is not concave and may have several equilibria; the
equilibrium is drawn by the oracle from seeded random starts, so the game is
built with ``samples`` (default 5) equilibrium samples per scored strategy.

The shared subexpressions are ``pyo.Expression`` components on the top-level
model, built once and used by every follower's objective and by the leader's:
``unprotected[t] = 1 - cov_t``, ``coverage[t]``,
``weight[t] = exp(a_t - max(a) - rationality cov_t)``, ``partition = sum_t weight[t]``,
``exposure[t] = weight[t] * unprotected[t]``, and for inspection
``attack[t] = p_t = weight[t] / partition`` and ``hit[t] = p_t (1 - cov_t)``.
The constant shift by ``max(a)`` leaves ``p`` unchanged and keeps ``exp`` in
range for any attractiveness. Every objective is written as one ratio,
``sum_t exposure[t] * payoff_t / partition``, equal to ``sum_t p_t (1 - cov_t) payoff_t``:
its derivatives hold the derivative of ``partition`` once rather than once per
target, which makes the compiled Jacobians about three times cheaper.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyomo.core as pyo

from stackopt.game import StackelbergGame

from . import Param, register_game
from .reference import check_seed, load_instance

BUDGET_KINDS = ("reimbursement", "expected")
REIMBURSE = ("coverable", "all")

PARAMS = {
    "targets": Param(int, 100, "number of targets T"),
    "defenders": Param(int, 5, "number of defenders (followers) n"),
    "coverable": Param(int, None, "targets each defender may cover (random subset), when no "
                       "coverage is given; default ceil(targets / 2)"),
    "resources": Param(float, None, "coverage units per defender: sum_t x_it = resources; "
                       "default a fifth of the smallest coverable set (10 of 50)"),
    "rationality": Param(float, 5.0, "attacker's quantal-response rationality: p = softmax(a - rationality*cov)"),
    "budget": Param(float, 1.0, "leader's budget B", mutable=True,
                    check=lambda value: _finite_at_least("budget", value, 0.0)),
    "budget_kind": Param(str, "reimbursement",
                         "budget definition: 'reimbursement' sum pi_it (1-x_it) <= B (reference "
                         "experiments) or 'expected' sum pi_it p_t (1-cov_t) <= B (paper prose)"),
    "reimburse": Param(str, "coverable",
                       "reimbursed pairs: 'coverable' (each defender's own targets) or 'all' "
                       "(every defender-target pair, as the reference's gradient method)"),
    "reference_seed": Param(int, None, "use the reference experiments' instance of this seed "
                            "(36, 38-45; 100 targets, 5 defenders) instead of a draw"),
    "samples": Param(int, 5, "equilibria sampled from random starts per scored leader strategy"),
    "attractiveness": Param(object, None, "attractiveness a_t, shape (targets,); default N(0,1)"),
    "leader_payoffs": Param(object, None, "leader payoff U_t, shape (targets,); default -U[0,10]"),
    "defender_payoffs": Param(object, None, "defender payoffs U_it, shape (defenders, targets); "
                              "default -U[0,10]"),
    "coverage": Param(object, None, "coverable targets: boolean mask (defenders, targets) or one "
                      "list of target indices per defender; default random subsets"),
    "coverage_graph": Param(object, None, "coverable targets as a networkx bipartite graph "
                            "(defender nodes bipartite=0, target nodes bipartite=1)"),
}


@register_game("ssg", params=PARAMS)
def ssg(
    seed: int = 0, *, targets: int = 100, defenders: int = 5, coverable: int | None = None,
    resources: float | None = None, rationality: float = 5.0, budget: float = 1.0,
    budget_kind: str = "reimbursement", reimburse: str = "coverable",
    reference_seed: int | None = None, samples: int = 5, attractiveness=None,
    leader_payoffs=None, defender_payoffs=None, coverage=None, coverage_graph=None,
) -> StackelbergGame:
    """Security game with multiple defenders and a reimbursing leader (see the module docstring).

    Random data come from ``numpy.random.default_rng(seed)``, drawn in a fixed
    order (attractiveness, leader payoffs, defender payoffs, then the coverable
    subsets), so overriding one array leaves the others as they were for that seed.

    ``coverage`` may be a boolean mask of shape ``(defenders, targets)`` or a list
    of ``defenders`` collections of target indices. ``coverage_graph`` is a
    networkx bipartite graph: nodes with attribute ``bipartite=0`` are the
    defenders, ``bipartite=1`` the targets, each side numbered in node insertion
    order (as networkx's bipartite generators create them); an edge means the
    defender may cover the target. Give at most one of the two. ``coverable``
    (default ``ceil(targets / 2)``) is only used to draw random subsets when
    neither is given. ``resources`` defaults to a fifth of the smallest coverable
    set. ``reference_seed`` takes every array and the resources from the
    reference experiments' instance of that seed instead.
    """
    targets = _int_at_least("targets", targets, 1)
    defenders = _int_at_least("defenders", defenders, 1)
    samples = _int_at_least("samples", samples, 1)
    rationality = _finite_at_least("rationality", rationality, 0.0)
    budget = _finite_at_least("budget", budget, 0.0)
    if resources is not None:
        resources = _finite_at_least("resources", resources, 0.0)
    if budget_kind not in BUDGET_KINDS:
        raise ValueError(f"budget_kind must be one of {BUDGET_KINDS}, got {budget_kind!r}")
    if reimburse not in REIMBURSE:
        raise ValueError(f"reimburse must be one of {REIMBURSE}, got {reimburse!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    arrays = dict(attractiveness=attractiveness, leader_payoffs=leader_payoffs,
                  defender_payoffs=defender_payoffs, coverage=coverage,
                  coverage_graph=coverage_graph)
    a, u_leader, u_def, mask, resources = _instance(
        seed, targets, defenders, coverable, resources, reference_seed, arrays)

    game = StackelbergGame("ssg", samples=samples)
    game.data.update(
        attractiveness=a, leader_payoffs=u_leader, defender_payoffs=u_def, coverage=mask,
        resources=resources, rationality=rationality, budget=budget,
        budget_kind=budget_kind,
    )
    if reimburse != "coverable":  # recorded only where it changes the game, so that
        game.data["reimburse"] = reimburse  # earlier instances keep their fingerprints
    # every random start reaches its own equilibrium here, and the budget depends on
    # it: track 4 draws and meet the budget at the worst of them (so also in expectation)
    game.method_options["gradient"] = dict(samples_per_step=4, constraints="worst")
    game.method_options["implicit-ipopt"] = dict(samples_per_step=4, constraints="worst")
    _build(game, a, u_leader, u_def, mask, resources, rationality, budget, budget_kind, reimburse)
    return game


def _instance(seed, targets, defenders, coverable, resources, reference_seed, arrays):
    """The instance's arrays and resources (the reference's or the seeded draw), checked."""
    if reference_seed is not None:
        a, u_leader, u_def, mask, resources = _reference(
            reference_seed, targets, defenders, resources, arrays)
    else:
        a, u_leader, u_def, mask = _draw(seed, targets, defenders, coverable, arrays)
        if resources is None:  # a fifth of the smallest coverable set: 10 of 50
            resources = float(mask.sum(axis=1).min()) / 5.0
    for i in range(defenders):
        size = int(mask[i].sum())
        if size < resources - 1e-12:
            raise ValueError(
                f"defender {i} may cover {size} targets but must place resources={resources} "
                "units with at most 1 per target; give it at least that many coverable targets"
            )
    return a, u_leader, u_def, mask, resources


def _draw(seed, targets, defenders, coverable, arrays):
    """The seeded random instance, with any array the user gave in place of its draw."""
    rng = np.random.default_rng(int(seed))
    a = rng.normal(size=targets)
    u_leader = -rng.uniform(0.0, 10.0, size=targets)
    u_def = -rng.uniform(0.0, 10.0, size=(defenders, targets))
    if arrays["attractiveness"] is not None:
        a = _array("attractiveness", arrays["attractiveness"], (targets,), "(targets,)")
    if arrays["leader_payoffs"] is not None:
        u_leader = _array("leader_payoffs", arrays["leader_payoffs"], (targets,), "(targets,)")
    if arrays["defender_payoffs"] is not None:
        u_def = _array("defender_payoffs", arrays["defender_payoffs"], (defenders, targets),
                       "(defenders, targets)")
    coverage, coverage_graph = arrays["coverage"], arrays["coverage_graph"]
    if coverage is not None and coverage_graph is not None:
        raise ValueError("give either coverage or coverage_graph, not both")
    if coverage_graph is not None:
        return a, u_leader, u_def, _mask_from_graph(coverage_graph, defenders, targets)
    if coverage is not None:
        return a, u_leader, u_def, _mask_from_coverage(coverage, defenders, targets)
    coverable = -(-targets // 2) if coverable is None else coverable  # ceil(targets / 2)
    coverable = _int_at_least("coverable", coverable, 1)
    if coverable > targets:
        raise ValueError(
            f"coverable must be <= targets ({targets}), got {coverable}: a defender cannot "
            "cover more targets than exist"
        )
    mask = np.zeros((defenders, targets), dtype=bool)
    for i in range(defenders):
        mask[i, rng.choice(targets, size=coverable, replace=False)] = True
    return a, u_leader, u_def, mask


def _reference(reference_seed, targets, defenders, resources, arrays):
    """The reference experiments' instance: attractiveness, payoffs, coverage, resources."""
    reference_seed = check_seed("ssg", reference_seed)
    given = [k for k, v in arrays.items() if v is not None]
    if given:
        raise ValueError(f"give either reference_seed or {', '.join(given)}, not both: the "
                         "reference instance fixes every array")
    if (targets, defenders) != (100, 5):
        raise ValueError(f"reference_seed={reference_seed} is an instance with targets=100 and "
                         f"defenders=5, got targets={targets}, defenders={defenders}")
    d = load_instance("ssg", reference_seed)
    units = float(d["resources"][0])
    if not np.all(d["resources"] == units):
        raise ValueError(f"reference instance {reference_seed} gives the defenders different "
                         f"resources {d['resources'].tolist()}; this model takes one value")
    if resources is not None and resources != units:
        raise ValueError(f"reference_seed={reference_seed} fixes resources={units:g}, got "
                         f"resources={resources!r}")
    return d["attractiveness"], d["leader_payoffs"], d["defender_payoffs"], d["coverage"], units


def _build(game, a, u_leader, u_def, mask, resources, rationality, budget, budget_kind,
           reimburse="coverable") -> None:
    m = game.model
    n, T = mask.shape
    cover_sets = [[int(t) for t in np.flatnonzero(mask[i])] for i in range(n)]
    paid = cover_sets if reimburse == "coverable" else [list(range(T))] * n  # R_i
    pairs = [(i, t) for i in range(n) for t in paid[i]]

    blocks = []
    for i in range(n):
        b = game.add_follower(f"defender{i}")
        b.x = pyo.Var(cover_sets[i], bounds=(0.0, 1.0),
                      initialize=resources / max(len(cover_sets[i]), 1))
        b.resources = pyo.Constraint(expr=sum(b.x[t] for t in cover_sets[i]) == resources)
        blocks.append(b)

    m.reimbursement = pyo.Var(pairs, domain=pyo.NonNegativeReals, initialize=0.0)

    def unprotected(_m, t):
        e = 1.0
        for i in range(n):
            if mask[i, t]:
                e = e * (1.0 - blocks[i].x[t])
        return e

    m.unprotected = pyo.Expression(range(T), rule=unprotected)
    m.coverage = pyo.Expression(range(T), rule=lambda _m, t: 1.0 - _m.unprotected[t])
    shift = float(np.max(a))
    m.weight = pyo.Expression(
        range(T), rule=lambda _m, t: pyo.exp(float(a[t]) - shift - rationality * _m.coverage[t]))
    m.partition = pyo.Expression(expr=sum(m.weight[t] for t in range(T)))
    m.exposure = pyo.Expression(range(T), rule=lambda _m, t: _m.weight[t] * _m.unprotected[t])
    m.attack = pyo.Expression(range(T), rule=lambda _m, t: _m.weight[t] / _m.partition)
    m.hit = pyo.Expression(range(T), rule=lambda _m, t: _m.exposure[t] / _m.partition)

    for i, b in enumerate(blocks):  # U_it = 0 off the defender's own targets
        b.utility = pyo.Objective(
            expr=sum(m.exposure[t] * ((float(u_def[i, t]) if mask[i, t] else 0.0)
                                      + m.reimbursement[i, t])
                     for t in paid[i]) / m.partition,
            sense=pyo.maximize,
        )

    if budget_kind == "reimbursement":  # x_it = 0 off T_i: the full amount there
        spend = sum(m.reimbursement[i, t] * ((1.0 - blocks[i].x[t]) if mask[i, t] else 1.0)
                    for i, t in pairs)
    else:
        spend = sum(m.reimbursement[i, t] * m.exposure[t] for i, t in pairs) / m.partition
    m.spend = pyo.Expression(expr=spend)
    m.budget = pyo.Param(mutable=True, initialize=budget)  # varied on a built game (models.vary)
    game.set_leader(
        variables=[m.reimbursement],
        objective=sum(m.exposure[t] * float(u_leader[t]) for t in range(T)) / m.partition,
        sense=pyo.maximize,
        constraints=[m.spend <= m.budget],
    )


# ---------------------------------------------------------------------- validation
def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _finite_at_least(name: str, value: Any, low: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= {low}, got {value!r}") from None
    if not math.isfinite(v) or v < low:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value!r}")
    return v


def _array(name: str, value: Any, shape: tuple, text: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array of shape {text} = {shape}, got {value!r}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {text} = {shape}, got shape {arr.shape}")
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        idx = tuple(int(k) for k in bad[0])
        raise ValueError(f"{name} must be finite, got {arr[idx]} at index {idx if len(idx) > 1 else idx[0]}")
    return arr.copy()


def _mask_from_coverage(coverage: Any, n: int, T: int) -> np.ndarray:
    arr = None
    if isinstance(coverage, np.ndarray) and coverage.ndim == 2:
        arr = coverage
    if arr is not None:
        if arr.shape != (n, T):
            raise ValueError(f"coverage mask must have shape (defenders, targets) = {(n, T)}, got shape {arr.shape}")
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError("coverage mask must hold only 0/1 or booleans")
        return arr.astype(bool)
    try:
        sets = [list(s) for s in coverage]
    except TypeError:
        raise ValueError(f"coverage must be a (defenders, targets) mask or one list of target "
                         f"indices per defender, got {coverage!r}") from None
    if len(sets) != n:
        raise ValueError(f"coverage must list the targets of each of the {n} defenders, got {len(sets)} lists")
    mask = np.zeros((n, T), dtype=bool)
    for i, s in enumerate(sets):
        for t in s:
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < T:
                raise ValueError(f"coverage of defender {i} contains {t!r}; expected target indices in 0..{T - 1}")
            if mask[i, t]:
                raise ValueError(f"coverage of defender {i} lists target {t} twice")
            mask[i, t] = True
    return mask


def _mask_from_graph(graph: Any, n: int, T: int) -> np.ndarray:
    import networkx as nx  # only where a graph is given: importing it costs every command

    if not isinstance(graph, nx.Graph):
        raise ValueError(f"coverage_graph must be a networkx graph, got {type(graph).__name__}")
    sides: dict[int, list] = {0: [], 1: []}
    for node, side in graph.nodes(data="bipartite"):
        if side not in (0, 1):
            raise ValueError(
                f"coverage_graph node {node!r} has bipartite={side!r}; expected 0 (defender) or 1 (target)"
            )
        sides[side].append(node)
    if len(sides[0]) != n:
        raise ValueError(f"coverage_graph has {len(sides[0])} defender nodes (bipartite=0) but defenders={n}")
    if len(sides[1]) != T:
        raise ValueError(f"coverage_graph has {len(sides[1])} target nodes (bipartite=1) but targets={T}")
    d_index = {node: k for k, node in enumerate(sides[0])}
    t_index = {node: k for k, node in enumerate(sides[1])}
    mask = np.zeros((n, T), dtype=bool)
    for u, v in graph.edges():
        if u in d_index and v in t_index:
            mask[d_index[u], t_index[v]] = True
        elif v in d_index and u in t_index:
            mask[d_index[v], t_index[u]] = True
        else:
            raise ValueError(f"coverage_graph edge ({u!r}, {v!r}) does not join a defender to a target")
    return mask
