"""Tables and figures from a results store: ``stackopt report results.sqlite --out DIR``.

For every experiment and grid point, each method's mean and standard error of
the leader objective, constraint violation, equilibrium residual and time,
as markdown (``report.md``) and CSV (``summary.csv``, plus ``cells.csv`` with
every row); the paper's Figure 3 (objective against the swept parameter, one
line per method, error bars) and Figure 4 (violation), and a runtime plot, as
PNG and SVG.

Where a cell certified a bound (status ``optimal`` with a ``bound``, as
``mpec-scip`` does), every method's optimality gap to that bound on the same
instance is tabulated. Rows of one instance (game, parameters, seed) must all
carry the same data fingerprint; otherwise the report refuses to compare them.
"""
from __future__ import annotations

import csv
import json
import math
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .figures import draw, figures, numeric_axis
from .runner import FAILED

# left out of the means: the proposal of a method that failed means nothing. A cell
# that hit its time limit but returned a strategy is scored like any other (a cell
# killed by the harness has no objective and drops out on its own).
EXCLUDED = ("error", "solver_error")
from .store import Store

METRICS = (("objective", "leader_objective"), ("violation", "constraint_violation"),
           ("residual", "equilibrium_residual"), ("time", "time_s"))


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


def _axis_hints(store: Store) -> dict[str, str]:
    hints: dict[str, str] = {}
    for run in store.runs():
        try:
            raw = tomllib.loads(run.get("config_text") or "")
        except tomllib.TOMLDecodeError:
            continue
        for name, exp in (raw.get("experiments") or {}).items():
            if isinstance(exp, dict) and isinstance(exp.get("axis"), str):
                hints[name] = exp["axis"]
    return hints


def _choose_axis(points: list[dict], hint: str | None) -> str | None:
    varying = {k for p in points for k in p if len({json.dumps(q.get(k)) for q in points}) > 1}
    if hint in varying:
        return hint
    if not varying:
        return None
    return max(sorted(varying), key=lambda k: len({json.dumps(p.get(k)) for p in points}))


@dataclass
class ExperimentTable:
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

    def others(self, params: dict) -> str:
        return ", ".join(f"{k}={params.get(k)}" for k in self.split)

    def fixed_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.fixed.items()))


def build_tables(rows: list[dict], axis_hints: dict[str, str] | None = None) -> list[ExperimentTable]:
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
        tables.append(ExperimentTable(
            exp, erows[0]["game"], axis,
            [groups[(p, m)] for p in points for m in methods if (p, m) in groups],
            methods, points,
            {p: float(np.mean(list(v.values()))) for p, v in init.items() if v},
            any(k[0] == exp for k in bounds), fixed, split))
    return sorted(tables, key=lambda t: t.name)


def _sort_key(point: dict, axis: str | None):
    others = json.dumps({k: v for k, v in point.items() if k != axis}, sort_keys=True)
    a = point.get(axis) if axis else None
    return (others, (0, a, "") if isinstance(a, (int, float)) else (1, 0, str(a)))


def _fmt(mean: float, se: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "-"
    m = _g(mean, digits)
    return m if not math.isfinite(se) else f"{m} ± {_g(se, 2)}"


def _g(x: float, digits: int) -> str:
    """``digits`` decimals from 1 up, ``digits`` significant figures below 1, else e-notation."""
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e5 or ax < 1e-3:
        return f"{x:.{max(1, digits - 2)}e}"
    text = f"{x:.{digits}f}" if ax >= 1 else f"{x:.{digits}g}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _label(params: dict, axis: str | None) -> str:
    if axis is None:
        return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "-"
    return str(params.get(axis))


# --------------------------------------------------------------------------- outputs
def write_csv(tables: list[ExperimentTable], rows: list[dict], out: Path) -> list[Path]:
    summary = out / "summary.csv"
    with open(summary, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["experiment", "game", "params", "axis", "axis_value", "method", "cells",
                    "failed", "statuses", "initial_objective"]
                   + [f"{m}_{s}" for m, _ in METRICS for s in ("mean", "se")]
                   + ["improvement_mean", "improvement_se"]
                   + ["gap_mean", "gap_se", "gap_instances"])
        for t in tables:
            for g in t.groups:
                pj = g.pkey
                stats = [g.stat(col) for _, col in METRICS]
                gap = g.gap_stat()
                w.writerow([t.name, t.game, pj, t.axis or "", g.params.get(t.axis, "") if t.axis else "",
                            g.method, len(g.rows), sum(g.statuses.get(s, 0) for s in FAILED),
                            " ".join(f"{k}:{v}" for k, v in g.statuses.items()),
                            t.initial.get(pj, "")]
                           + [x for s in stats for x in s[:2]]
                           + list(g.stat("improvement")[:2]) + [gap[0], gap[1], gap[2]])
    cells = out / "cells.csv"
    cols = ["id", "experiment", "game", "params", "seed", "method", "options", "status",
            "leader_objective", "initial_objective", "constraint_violation",
            "equilibrium_residual", "wall_time_s", "cell_time_s", "claimed_objective", "bound",
            "gap", "fingerprint", "worker", "message"]
    with open(cells, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([_short(r.get(c)) for c in cols])
    return [summary, cells]


def _short(v):
    if isinstance(v, str) and len(v) > 300:
        return v[:300] + "..."
    return v


def markdown(tables: list[ExperimentTable], store_path: str, runs: list[dict]) -> str:
    lines = [f"# stackopt comparison report", "", f"Results: `{store_path}`.", ""]
    if runs:
        last = runs[-1]
        versions = json.loads(last.get("versions") or "{}")
        machine = json.loads(last.get("machine") or "{}")
        lines += [f"Runs: {len(runs)} (last: config `{last.get('config_name')}`, "
                  f"{last.get('scheduler')}). Machine: {machine.get('platform')}, "
                  f"{machine.get('cpu_count')} CPUs. Versions: "
                  + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".", ""]
    lines += ["Means over seeds ± standard error. Objective: the leader's, at the equilibrium "
              "the common oracle reaches; violation: largest positive part of the leader's "
              "constraints; residual: followers' equilibrium residual; time: the method's wall "
              "clock in seconds. Cells with status error or solver_error, and cells killed at "
              "their time limit, are counted but left out of the means; a method that stopped "
              "at its time limit with a strategy is scored like any other. Instances differ a lot, so the standard errors of the "
              "objective mostly measure that spread; the gain figure pairs every cell with the "
              "initial strategy on the same instance, which shows the methods' differences.", ""]
    for t in tables:
        ax = t.axis or "grid point"
        lines += [f"## {t.name} (game `{t.game}`)", ""]
        if t.fixed:
            lines += [f"Fixed parameters: {t.fixed_text()}.", ""]
        by_point = defaultdict(dict)
        for g in t.groups:
            by_point[g.pkey][g.method] = g
        subsets: dict[str, list[str]] = defaultdict(list)  # one wide table per other setting
        for p in t.points:
            subsets[t.others(json.loads(p))].append(p)
        for other, pts in subsets.items():
            heads = [json.loads(p) for p in pts]
            for title, col in (("Leader objective", "leader_objective"),
                               ("Constraint violation", "constraint_violation")):
                lines += [f"**{title}**" + (f" ({other})" if other else ""), ""]
                lines.append("| " + " | ".join([f"{ax}"] + [_label(p, t.axis) for p in heads]) + " |")
                lines.append("|" + "---|" * (len(heads) + 1))
                if col == "leader_objective" and t.initial and "initial" not in t.methods:
                    lines.append("| *initial strategy* | " + " | ".join(
                        _g(t.initial[p], 4) if p in t.initial else "-" for p in pts) + " |")
                for m in t.methods:
                    cells = []
                    for p in pts:
                        g = by_point[p].get(m)
                        if g is None:
                            cells.append("-")
                            continue
                        mean, se, n = g.stat(col)
                        text = _fmt(mean, se, digits=4 if col == "leader_objective" else 2)
                        if n == 0:  # every cell failed: say how
                            text = " ".join(f"{k} ×{v}" for k, v in g.statuses.items())
                        else:
                            if n < len(g.rows):  # some cells failed: say over how many
                                text += f" ({n}/{len(g.rows)})"
                            if g.statuses.get("time_limit"):
                                text += " †"
                        cells.append(text)
                    lines.append(f"| {m} | " + " | ".join(cells) + " |")
                lines.append("")
        if any(g.statuses.get("time_limit") for g in t.groups):
            lines += ["† some of these cells stopped at their time limit (see the statuses "
                      "below).", ""]
        lines += ["**Per method and grid point**", ""]
        head = [ax, "method", "cells", "statuses", "objective", "violation", "residual", "time (s)"]
        if t.has_bounds:
            head.append("gap to certified bound")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for g in t.groups:
            row = [_label(g.params, t.axis), g.method, str(len(g.rows)),
                   " ".join(f"{k} {v}" for k, v in g.statuses.items())]
            row += [_fmt(*g.stat(col)[:2], digits=4 if name == "objective" else 2)
                    for name, col in METRICS]
            if t.has_bounds:
                gm, gs, gn = g.gap_stat()
                row.append(f"{_fmt(gm, gs, 3)} (n={gn})" if gn else "-")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if numeric_axis(t):
            lines += [" ".join(f"![{k}]({t.name}-{k}.png)"
                               for k in ("objective", "improvement", "violation", "runtime")), ""]
    return "\n".join(lines) + "\n"


# The figures the README shows: file name -> (config, experiment, figure kind). The main job
# (`stackopt compare`, config quick) makes them; `stackopt report ... --docs docs` writes them.
README_FIGURES = {
    "quick-ssg-objective.png": ("quick", "ssg", "objective"),
}


def make_report(db: str, out: str, *, experiments: list[str] | None = None,
                docs: str | None = None) -> list[Path]:
    """Write report.md, summary.csv, cells.csv and the figures to ``out``; return the paths.

    With ``docs``, also write the README's figures (:data:`README_FIGURES`) into that
    folder; a ValueError names any the database cannot make.
    """
    with Store.open(db, create=False) as store:
        rows = store.rows(experiments=experiments)
        runs = store.runs()
        hints = _axis_hints(store)
    if not rows:
        raise ValueError(f"results database {db!r} has no cells"
                         + (f" for experiments {experiments}" if experiments else ""))
    tables = build_tables(rows, hints)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = write_csv(tables, rows, outdir)
    paths += figures(tables, outdir)
    md = outdir / "report.md"
    md.write_text(markdown(tables, db, runs))
    if docs is not None:
        paths += readme_figures(rows, runs, hints, Path(docs), db)
    return [md] + paths


def readme_figures(rows: list[dict], runs: list[dict], hints: dict[str, str], docs: Path,
                   db: str = "the results database") -> list[Path]:
    """Draw each of :data:`README_FIGURES` from the rows of its config's runs into ``docs``."""
    import matplotlib.pyplot as plt

    config_of = {r["id"]: r.get("config_name") for r in runs}
    written, missing = [], []
    for name, (config, experiment, kind) in README_FIGURES.items():
        mine = [r for r in rows if r["experiment"] == experiment
                and config_of.get(r.get("run_id")) == config]
        tables = [t for t in build_tables(mine, hints) if numeric_axis(t)] if mine else []
        if not tables:
            missing.append(f"{name} (experiment {experiment!r} of config {config!r})")
            continue
        docs.mkdir(parents=True, exist_ok=True)
        fig = draw(tables[0], kind)
        fig.savefig(docs / name, dpi=130)
        plt.close(fig)
        written.append(docs / name)
    if missing:
        raise ValueError(f"{db} cannot make the README's figures {', '.join(missing)}: run "
                         "the main job first (`stackopt compare`, config quick)")
    return written
