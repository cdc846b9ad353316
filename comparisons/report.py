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
The summary tables come from :mod:`.tables`; this module writes them out.
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import tomllib

from .figures import draw, figures, numeric_axis
from .runner import FAILED
from .store import Store
from .tables import EXCLUDED, ExperimentTable, FingerprintMismatch, Group, build_tables, check_fingerprints

METRICS = (("objective", "leader_objective"), ("violation", "constraint_violation"),
           ("residual", "equilibrium_residual"), ("time", "time_s"))


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
    """The text of report.md: what was run and how to read it, then one section per experiment."""
    lines = _preamble(store_path, runs)
    for t in tables:
        lines += _section(t)
    return "\n".join(lines) + "\n"


def _preamble(store_path: str, runs: list[dict]) -> list[str]:
    lines = ["# stackopt comparison report", "", f"Results: `{store_path}`.", ""]
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
              "at its time limit with a strategy is scored like any other. Instances differ a lot, "
              "so the standard errors of the "
              "objective mostly measure that spread; the gain figure pairs every cell with the "
              "initial strategy on the same instance, which shows the methods' differences.", ""]
    return lines


def _section(t: ExperimentTable) -> list[str]:
    """One experiment: its wide tables, the per-method table and its figures."""
    lines = [f"## {t.name} (game `{t.game}`)", ""]
    if t.fixed:
        lines += [f"Fixed parameters: {t.fixed_text()}.", ""]
    lines += _wide_tables(t)
    if any(g.statuses.get("time_limit") for g in t.groups):
        lines += ["† some of these cells stopped at their time limit (see the statuses "
                  "below).", ""]
    lines += _detail_table(t)
    if numeric_axis(t):
        lines += [" ".join(f"![{k}]({t.name}-{k}.png)"
                           for k in ("objective", "improvement", "violation", "runtime")), ""]
    return lines


def _wide_tables(t: ExperimentTable) -> list[str]:
    """Objective and violation, one column per grid point: a pair of tables per other setting."""
    ax = t.axis or "grid point"
    by_point = defaultdict(dict)
    for g in t.groups:
        by_point[g.pkey][g.method] = g
    subsets: dict[str, list[str]] = defaultdict(list)  # one wide table per other setting
    for p in t.points:
        subsets[t.others(json.loads(p))].append(p)
    lines: list[str] = []
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
                cells = [_wide_cell(by_point[p].get(m), col) for p in pts]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def _wide_cell(g: Group | None, col: str) -> str:
    """A method's mean ± se at one grid point, or how its cells failed."""
    if g is None:
        return "-"
    mean, se, n = g.stat(col)
    text = _fmt(mean, se, digits=4 if col == "leader_objective" else 2)
    if n == 0:  # every cell failed: say how
        text = " ".join(f"{k} ×{v}" for k, v in g.statuses.items())
    else:
        if n < len(g.rows):  # some cells failed: say over how many
            text += f" ({n}/{len(g.rows)})"
        if g.statuses.get("time_limit"):
            text += " †"
    return text


def _detail_table(t: ExperimentTable) -> list[str]:
    """Every metric (and the gap to a certified bound) per method and grid point."""
    lines = ["**Per method and grid point**", ""]
    head = [t.axis or "grid point", "method", "cells", "statuses", "objective", "violation",
            "residual", "time (s)"]
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
    return lines


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


__all__ = ["make_report", "readme_figures", "README_FIGURES", "markdown", "write_csv", "METRICS",
           "build_tables", "check_fingerprints", "ExperimentTable", "Group",
           "FingerprintMismatch", "EXCLUDED"]
