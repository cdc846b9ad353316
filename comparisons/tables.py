"""Summary tables from a results store's rows: one :class:`ExperimentTable` per experiment.

:func:`build_tables` groups the rows by experiment, grid point and method
(:class:`Group`, with each method's mean and standard error of a column),
chooses each experiment's x axis (the hinted parameter if it varies, else the
one with most values), pairs every cell with the initial strategy on the same
instance, and measures every method's gap to the tightest certified bound
(status ``optimal`` with a ``bound``) on the same instance. Rows of one
instance (game, parameters, seed) must all carry the same data fingerprint;
otherwise :func:`check_fingerprints` refuses to compare them.

A cell's answer is *infeasible* where its scored constraint violation exceeds
the report's tolerance (:data:`FEASIBILITY_TOL` unless given). At every grid
point :meth:`ExperimentTable.best` names the best feasible method: the best
mean objective among the methods whose every cell there returned a scored,
feasible answer (a cell stopped at its time limit counts with its answer),
with the methods within :data:`TIE` of it as ties, and those whose 95 %
interval (:meth:`Group.interval`) overlaps its own: a method wins only where
the intervals separate.

A cell's objective is the mean over the scoring's draws of the followers'
equilibrium, with a 95 % interval (stored as ``objective_low`` and
``objective_high``; zero wide where the equilibrium is provably unique).
Every method is scored on the same instances, so a group's interval is that
of its mean given the instances: the cells' half-widths combined as
independent errors, ``sqrt(sum h_i**2) / n``. A database written before the
intervals were stored has none: its tables show the standard error over the
seeds and decide by :data:`TIE` alone, as they did.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# left out of the means: the proposal of a method that failed means nothing. A cell
# that hit its time limit but returned a strategy is scored like any other (a cell
# killed by the harness has no objective and drops out on its own).
EXCLUDED = ("error", "solver_error")
FEASIBILITY_TOL = 1e-6  # largest scored violation of a feasible answer (the methods' default)
TIE = 1e-6  # relative difference of mean objectives within which methods tie for best


class FingerprintMismatch(ValueError):
    """Rows of one instance were generated from different data."""


@dataclass
class Group:
    """One method at one grid point of one experiment."""

    experiment: str
    game: str
    params: dict[str, Any]
    method: str
    pkey: str = ""  # canonical params JSON, as stored
    rows: list[dict] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)

    def values(self, column: str) -> np.ndarray:
        ok = [r for r in self.rows if r["status"] not in EXCLUDED or column == "time_s"]
        return np.array([_num(r.get(column)) for r in ok], dtype=float)

    def stat(self, column: str) -> tuple[float, float, int]:
        v = self.values(column)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return math.nan, math.nan, 0
        se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
        return float(v.mean()), se, int(v.size)

    def interval(self) -> tuple[float, float] | None:
        """The 95 % interval of the mean objective over the answers, given the instances (see
        the module docstring); None where some answer has no stored interval."""
        answers = self.answers()
        if not answers:
            return None
        halves = []
        for r in answers:
            low, high = _num(r.get("objective_low")), _num(r.get("objective_high"))
            if not (math.isfinite(low) and math.isfinite(high)):
                return None
            halves.append(max(high - low, 0.0) / 2)
        mean = float(np.mean([_num(r["leader_objective"]) for r in answers]))
        half = math.sqrt(sum(h * h for h in halves)) / len(halves)
        return mean - half, mean + half

    def draws(self) -> tuple[int, int] | None:
        """The fewest and most draws of the answers' scoring, where stored."""
        n = [int(r["draws"]) for r in self.answers() if r.get("draws")]
        return (min(n), max(n)) if n else None

    def gap_stat(self) -> tuple[float, float, int]:
        v = np.array([g for g in self.gaps if math.isfinite(g)], dtype=float)
        if v.size == 0:
            return math.nan, math.nan, 0
        se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
        return float(v.mean()), se, int(v.size)

    @property
    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.rows:
            out[r["status"]] += 1
        return dict(sorted(out.items()))

    def answers(self) -> list[dict]:
        """The cells with a scored answer (a failed or killed cell has none)."""
        return [r for r in self.rows if r["status"] not in EXCLUDED
                and math.isfinite(_num(r.get("leader_objective")))]

    def infeasible(self, tol: float) -> int:
        """How many answers violate the leader's constraints by more than ``tol``."""
        return sum(1 for r in self.answers() if not _num(r.get("constraint_violation")) <= tol)

    @property
    def time_limited(self) -> int:
        return sum(1 for r in self.rows if r["status"] == "time_limit")

    def eligible(self, tol: float) -> bool:
        """Every cell returned a scored answer and every answer is feasible (within ``tol``)."""
        return bool(self.rows) and len(self.answers()) == len(self.rows) and not self.infeasible(tol)


def _num(v) -> float:
    return math.nan if v is None else float(v)


def check_fingerprints(rows: list[dict]) -> None:
    """Raise :class:`FingerprintMismatch` if one instance has rows with different data."""
    seen: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("fingerprint"):
            seen[(r["game"], r["params"], r["seed"])][r["fingerprint"]].append(
                f"{r['experiment']}/{r['method']}")
    bad = {k: v for k, v in seen.items() if len(v) > 1}
    if bad:
        (game, params, seed), prints = next(iter(bad.items()))
        detail = "; ".join(f"{fp[:12]}: {', '.join(sorted(set(who)))}" for fp, who in prints.items())
        raise FingerprintMismatch(
            f"refusing to compare: game {game!r} {params} seed {seed} was generated from "
            f"different data in different rows ({detail}); {len(bad)} instance(s) affected. "
            "The game's generator changed between runs: rerun into a fresh database."
        )


def _time(r: dict) -> float:
    t = r.get("wall_time_s")
    return _num(t if t is not None else r.get("cell_time_s"))


def _choose_axis(points: list[dict], hint: str | None) -> str | None:
    varying = {k for p in points for k in p if len({json.dumps(q.get(k)) for q in points}) > 1}
    if hint in varying:
        return hint
    if not varying:
        return None
    return max(sorted(varying), key=lambda k: len({json.dumps(p.get(k)) for p in points}))


@dataclass
class ExperimentTable:
    """One experiment's groups, by grid point (in axis order) and method."""

    name: str
    game: str
    axis: str | None
    groups: list[Group]
    methods: list[str]
    points: list[str]  # params json, sorted by axis value
    initial: dict[str, float]  # params json -> mean initial objective
    has_bounds: bool
    fixed: dict[str, Any] = field(default_factory=dict)  # parameters equal at every point
    split: list[str] = field(default_factory=list)  # varied parameters other than the axis
    maximize: bool = True  # the leader's sense (at the first point; see ``senses``)
    tol: float = FEASIBILITY_TOL  # largest violation of a feasible answer
    senses: dict[str, bool] = field(default_factory=dict)  # point -> maximise (games may differ)
    reported: Any = None  # the config's published means (config.Reported), shown beside these

    def maximizes(self, point: str) -> bool:
        return self.senses.get(point, self.maximize)

    @property
    def mixed(self) -> bool:
        """Whether the leader maximises at some grid points and minimises at others."""
        return len(set(self.senses.values())) > 1

    def best(self, point: str) -> list[str]:
        """The best feasible method(s) at grid point ``point`` (params JSON): the best mean
        objective among the eligible groups (:meth:`Group.eligible`), and every eligible
        method within :data:`TIE` (relative) of it or whose interval overlaps its own (a
        tie); [] where no method is eligible."""
        scored = [(g.stat("leader_objective")[0], g.method, g.interval()) for g in self.groups
                  if g.pkey == point and g.eligible(self.tol)]
        scored = [(v if self.maximizes(point) else -v, m, i) for v, m, i in scored
                  if math.isfinite(v)]
        if not scored:
            return []
        top, _, top_interval = max(scored, key=lambda s: s[0])

        def ties(v, interval):
            if v >= top - TIE * max(1.0, abs(top)):
                return True
            return (interval is not None and top_interval is not None
                    and interval[0] <= top_interval[1] and top_interval[0] <= interval[1])

        return sorted(m for v, m, i in scored if ties(v, i))

    def others(self, params: dict) -> str:
        return ", ".join(f"{k}={params.get(k)}" for k in self.split)

    def fixed_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.fixed.items()))


def build_tables(rows: list[dict], axis_hints: dict[str, str] | None = None,
                 tol: float = FEASIBILITY_TOL) -> list[ExperimentTable]:
    """The experiments' tables (see the module docstring); ``tol``: the largest scored
    violation of a feasible answer."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < math.inf:
        raise ValueError(f"the feasibility tolerance must be a finite number >= 0, got {tol!r}")
    check_fingerprints(rows)
    axis_hints = axis_hints or {}
    for r in rows:
        r["time_s"] = _time(r)
        obj, init = _num(r.get("leader_objective")), _num(r.get("initial_objective"))
        # paired with the same instance's initial strategy, in the leader's favour
        r["improvement"] = (init - obj) if r.get("sense") == "minimize" else (obj - init)
    # certified bounds per instance: the tightest among optimal cells
    bounds: dict[tuple, float] = {}
    for r in rows:
        if r["status"] == "optimal" and r.get("bound") is not None and math.isfinite(r["bound"]):
            key = (r["experiment"], r["params"], r["seed"])
            b = float(r["bound"])
            if key not in bounds:
                bounds[key] = b
            else:
                bounds[key] = min(bounds[key], b) if r.get("sense") != "minimize" else max(bounds[key], b)
    by_exp: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_exp[r["experiment"]].append(r)
    tables = []
    for exp, erows in by_exp.items():
        groups: dict[tuple, Group] = {}
        init: dict[str, dict[int, float]] = defaultdict(dict)  # point -> seed -> value
        for r in erows:
            g = groups.setdefault((r["params"], r["method"]), Group(
                exp, r["game"], json.loads(r["params"]), r["method"], r["params"]))
            g.rows.append(r)
            if r.get("initial_objective") is not None and r["status"] not in EXCLUDED:
                init[r["params"]].setdefault(r["seed"], float(r["initial_objective"]))
            b = bounds.get((exp, r["params"], r["seed"]))
            if b is not None and r["status"] not in EXCLUDED and r.get("leader_objective") is not None:
                obj = float(r["leader_objective"])
                g.gaps.append(obj - b if r.get("sense") == "minimize" else b - obj)
        point_dicts = {p: json.loads(p) for p, _ in groups}
        axis = _choose_axis(list(point_dicts.values()), axis_hints.get(exp))
        points = sorted(point_dicts, key=lambda p: _sort_key(point_dicts[p], axis))
        methods = sorted({m for _, m in groups})
        dicts = list(point_dicts.values())
        names = sorted({k for d in dicts for k in d})
        fixed = {k: dicts[0].get(k) for k in names
                 if len({json.dumps(d.get(k)) for d in dicts}) == 1}
        split = [k for k in names if k not in fixed and k != axis]
        senses = {r["params"]: r["sense"] != "minimize" for r in erows if r.get("sense")}
        tables.append(ExperimentTable(
            exp, erows[0]["game"], axis,
            [groups[(p, m)] for p in points for m in methods if (p, m) in groups],
            methods, points,
            {p: float(np.mean(list(v.values()))) for p, v in init.items() if v},
            any(k[0] == exp for k in bounds), fixed, split,
            maximize=next((r["sense"] for r in erows if r.get("sense")), "maximize") != "minimize",
            tol=float(tol), senses=senses))
    return sorted(tables, key=lambda t: t.name)


def _sort_key(point: dict, axis: str | None):
    others = json.dumps({k: v for k, v in point.items() if k != axis}, sort_keys=True)
    a = point.get(axis) if axis else None
    return (others, (0, a, "") if isinstance(a, (int, float)) else (1, 0, str(a)))

