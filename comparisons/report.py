"""Tables and figures from a results store: ``stackopt report results.sqlite --out DIR``.

For every experiment and grid point, each method's mean objective with its
95 % interval (from the scoring's draws of the followers' equilibrium: see
:mod:`.tables`), and the mean and standard error of the leader objective,
constraint violation, equilibrium residual and time,
as markdown (``report.md``) and CSV (``summary.csv``, plus ``cells.csv`` with
every row); the paper's Figure 3 (objective against the swept parameter, one
line per method, error bars) and Figure 4 (violation), and a runtime plot, as
PNG and SVG.

Where a cell certified a bound (status ``optimal`` with a ``bound``, as
``mpec-scip`` does), every method's optimality gap to that bound on the same
instance is tabulated. Rows of one instance (game, parameters, seed) must all
carry the same data fingerprint; otherwise the report refuses to compare them.
The summary tables come from :mod:`.tables`; this module writes them out.

The report decides: answers whose violation exceeds the feasibility tolerance
are marked infeasible (in the tables and the figures) and never named best;
every objective table names the best feasible method per grid point, or a
tie where the intervals of the best methods overlap; cells
stopped at their time limit are results, marked, not failures; the report
explains its units and symbols itself (:func:`legend`). A database holding
several configs' runs reports each experiment as ``config/experiment``.
Where an experiment's config gives published means (``[experiments.NAME.reported]``,
:class:`~.config.Reported`: the paper configs give the reference experiments'), its
objective and violation tables show them in rows of their own, marked *reported*, with
their source: they were not run here.

With ``docs``, :func:`results_page` writes ``results.md`` into that folder: per
config, the commands that made its cells, its tables with the best feasible
method, and its figures (``{config}-{experiment}-{kind}.png`` beside it; the
README's figures, :data:`README_FIGURES`, are among them).
"""
from __future__ import annotations

import csv
import json
import math
import time
from collections import defaultdict
from pathlib import Path

import tomllib

from .config import Reported, parse_reported
from .figures import draw, equilibria_reached, figures, numeric_axis
from .runner import FAILED
from .store import Store
from .tables import (
    EXCLUDED,
    FEASIBILITY_TOL,
    TIE,
    ExperimentTable,
    FingerprintMismatch,
    Group,
    build_tables,
    check_fingerprints,
)

METRICS = (("objective", "leader_objective"), ("violation", "constraint_violation"),
           ("residual", "equilibrium_residual"), ("time", "time_s"))


def _stored_experiments(store: Store):
    """``(config name, experiment name, experiment table)`` of every run's stored config (a
    config text that does not parse gives none)."""
    for run in store.runs():
        try:
            raw = tomllib.loads(run.get("config_text") or "")
        except tomllib.TOMLDecodeError:
            continue
        for name, exp in (raw.get("experiments") or {}).items():
            if isinstance(exp, dict):
                yield run.get("config_name"), name, exp


def _axis_hints(store: Store) -> dict[str, str]:
    """Each experiment's axis from its config, by experiment and by ``config/experiment``."""
    hints: dict[str, str] = {}
    for config, name, exp in _stored_experiments(store):
        if isinstance(exp.get("axis"), str):
            hints[name] = hints[f"{config}/{name}"] = exp["axis"]
    return hints


def _reported(store: Store) -> dict[str, Reported]:
    """Each experiment's published means from its config (``[experiments.NAME.reported]``),
    by experiment and by ``config/experiment``; a table that does not parse shows none."""
    out: dict[str, Reported] = {}
    for config, name, exp in _stored_experiments(store):
        try:
            rep = parse_reported(exp, name)
        except ValueError:
            continue
        if rep is not None:
            out[name] = out[f"{config}/{name}"] = rep
    return out


def _with_reported(tables: list[ExperimentTable], reported: dict[str, Reported],
                   config: str = "") -> list[ExperimentTable]:
    """``tables``, each with its experiment's published means where its config gives them."""
    for t in tables:
        t.reported = reported.get(f"{config}/{t.name}" if config else t.name)
    return tables


def _by_config(rows: list[dict], runs: list[dict]) -> list[dict]:
    """``rows``, each experiment named ``config/experiment`` where they come from several
    configs (two configs may name an experiment alike: ``nfg`` of quick and of paper-nfg)."""
    config_of = {r["id"]: r.get("config_name") or "" for r in runs}
    names = {config_of.get(r.get("run_id"), "") for r in rows}
    if len(names) <= 1:
        return rows
    return [dict(r, experiment=f"{config_of.get(r.get('run_id'), '') or '?'}/{r['experiment']}")
            for r in rows]


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
                   + ["gap_mean", "gap_se", "gap_instances"]
                   + ["time_limited", "infeasible", "best_feasible"]
                   + ["objective_low", "objective_high", "draws_min", "draws_max"])
        for t in tables:
            best = {p: t.best(p) for p in t.points}
            for g in t.groups:
                pj = g.pkey
                stats = [g.stat(col) for _, col in METRICS]
                gap = g.gap_stat()
                w.writerow([t.name, t.game, pj, t.axis or "", g.params.get(t.axis, "") if t.axis else "",
                            g.method, len(g.rows), sum(g.statuses.get(s, 0) for s in FAILED),
                            " ".join(f"{k}:{v}" for k, v in g.statuses.items()),
                            t.initial.get(pj, "")]
                           + [x for s in stats for x in s[:2]]
                           + list(g.stat("improvement")[:2]) + [gap[0], gap[1], gap[2]]
                           + [g.time_limited, g.infeasible(t.tol), int(g.method in best[pj])]
                           + list(g.interval() or ("", "")) + list(g.draws() or ("", "")))
    cells = out / "cells.csv"
    cols = ["id", "experiment", "game", "params", "seed", "method", "options", "status",
            "leader_objective", "initial_objective", "constraint_violation",
            "equilibrium_residual", "wall_time_s", "cell_time_s", "claimed_objective", "bound",
            "gap", "draws", "objective_stderr", "objective_low", "objective_high",
            "worst_violation", "optimistic_claim", "claim_gap", "fingerprint", "worker", "message"]
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


def markdown(tables: list[ExperimentTable], store_path: str, runs: list[dict],
             tol: float = FEASIBILITY_TOL) -> str:
    """The text of report.md: what was run and how to read it, then one section per experiment."""
    lines = _preamble(store_path, runs) + legend(tol)
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
    return lines


def legend(tol: float = FEASIBILITY_TOL) -> list[str]:
    """How to read the tables and figures: every unit and symbol they use."""
    t = f"{tol:g}"
    return [
        "**How to read it.** A cell's objective is the leader's objective in expectation over the "
        "equilibria the followers reach: the mean over the scoring's draws of their equilibrium "
        "from seeded fresh starts (the same starts for every method on an instance), drawn until "
        "its standard error is small, or once where the equilibrium is provably unique. The "
        "objective tables show the mean over the seeds of a grid point and its 95 % interval "
        "[low, high] given those instances (the cells' intervals combined; *exact*: every cell's "
        "equilibrium is unique, one draw). Every other number is a mean over the seeds ± its "
        "standard error (standard deviation over the seeds / sqrt(n); one seed has none). "
        "Instances differ a lot, so those standard errors mostly measure that spread; the gain "
        "figure pairs every cell with the initial strategy on the same instance, which shows the "
        "methods' differences.", "",
        "* *objective*: the leader's objective in the game's own units and sense (each table says "
        "maximised or minimised), at the followers' equilibrium the common scoring oracle reaches "
        "from seeded fresh starts, whatever the method believed.",
        f"* *violation*: the largest positive part of the leader's constraints there, in their own "
        f"units (0: feasible). An answer whose violation exceeds {t} is **infeasible**.",
        "* *residual*: the largest KKT residual of any follower at the scored equilibrium.",
        "* *time (s)*: the method's wall clock in seconds, preparing the game included, scoring "
        "excluded. It depends on the machine and its load; the answers do not, except in cells "
        "marked †.",
        "* *(n/N)* after a mean: over n of the grid point's N cells; the others failed (status "
        "error or solver_error) or were killed at the harness's guard, and have no answer.",
        f"* *✗k/N*: k of the N answers are infeasible (violation above {t}); such a method is "
        "never named best at that grid point.",
        "* *†*: some of the cells stopped at their time limit (status time_limit): results, "
        "scored like any other, not failures, but their answers may depend on the machine's speed.",
        f"* *best feasible*: at each grid point, the method with the best mean objective among "
        f"those whose every cell returned a scored answer with violation at most {t}, named only "
        f"where its interval separates from the others'; *tie: a = b*: the intervals of a and b "
        f"overlap (or their means are within a relative {TIE:g}), so the draws do not tell them "
        f"apart; - where none qualifies.",
        "* *gap to certified bound* (where a global solver certified a bound on an instance: status "
        "optimal): the bound minus the method's objective when maximising, the objective minus "
        "the bound when minimising, in the objective's units, averaged over the instances that "
        "have one. 0: the certified optimum was reached; below 0: the answer scores beyond the "
        "bound (infeasible, or within the solvers' tolerances). *(n=k)*: over k instances.",
        "* *statuses*: optimal (a global solver closed its gap), converged (the method's stopping "
        "rule held and scoring found an equilibrium at its answer), max_iterations (its step, "
        "iteration or node budget ran out), time_limit, not_converged, infeasible, "
        "equilibrium_not_found, solver_error, error. Cells with error or solver_error are counted "
        "but left out of the means.",
        "* In the objective and gain figures the bars are the 95 % intervals (the standard "
        "errors over the seeds where a database stored no intervals); in the others, ± s.e. "
        "A hollow mean labelled n=k is over fewer seeds than the others; a red "
        "cross marks an infeasible mean, a square one with cells stopped at their time limit; a "
        "triangle at the axis edge is a mean beyond the axis (value shown).", ""]


def _section(t: ExperimentTable) -> list[str]:
    """One experiment: its wide tables, the per-method table and its figures."""
    lines = [f"## {t.name} (game `{t.game}`)", ""]
    if t.fixed:
        lines += [f"Fixed parameters: {t.fixed_text()}.", ""]
    lines += _wide_tables(t)
    lines += _detail_table(t)
    if numeric_axis(t):
        lines += [" ".join(f"![{k}]({_file_stem(t.name)}-{k}.png)"
                           for k in ("objective", "improvement", "violation", "runtime")), ""]
    if equilibria_reached(t):
        lines += ["The equilibria the scoring's draws reached at each method's answers, at their "
                  "leader objective (area: share of the draws):", "",
                  f"![equilibria]({_file_stem(t.name)}-equilibria.png)", ""]
    return lines


def _file_stem(name: str) -> str:
    return name.replace("/", "-")


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
        sense = ("each grid point in its own sense: ↑ maximised, ↓ minimised" if t.mixed
                 else "maximised" if t.maximize else "minimised")
        for title, col in ((f"Leader objective ({sense})", "leader_objective"),
                           ("Constraint violation", "constraint_violation")):
            lines += [f"**{title}**" + (f" ({other})" if other else ""), ""]
            labels = [_label(h, t.axis) + ((" ↑" if t.maximizes(p) else " ↓") if t.mixed
                                           and col == "leader_objective" else "")
                      for h, p in zip(heads, pts)]
            lines.append("| " + " | ".join([f"{ax}"] + labels) + " |")
            lines.append("|" + "---|" * (len(heads) + 1))
            if col == "leader_objective" and t.initial and "initial" not in t.methods:
                lines.append("| *initial strategy* | " + " | ".join(
                    _g(t.initial[p], 4) if p in t.initial else "-" for p in pts) + " |")
            for m in t.methods:
                cells = [_wide_cell(by_point[p].get(m), col, t.tol) for p in pts]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines += _reported_rows(t, col, heads)
            if col == "leader_objective":
                lines.append("| **best feasible** | " + " | ".join(
                    _winner(t.best(p)) for p in pts) + " |")
            lines.append("")
    if t.reported is not None:
        lines += [f"*reported*: {t.reported.source} (not run here: the publication's own "
                  "instances and measurements).", ""]
    return lines


def _reported_rows(t: ExperimentTable, col: str, heads: list[dict]) -> list[str]:
    """The published means of the table's column, a row per label (``-`` where none)."""
    if t.reported is None:
        return []
    lines = []
    for label, cols in t.reported.values.items():
        if col not in cols:
            continue
        vals = [t.reported.value(label, col, h) for h in heads]
        if all(math.isnan(v) for v in vals):
            continue
        lines.append(f"| *reported: {label}* | " + " | ".join(
            "-" if math.isnan(v) else _g(v, 4) for v in vals) + " |")
    return lines


def _winner(best: list[str]) -> str:
    """The best feasible method, ``tie: a = b`` where the draws do not tell them apart."""
    if not best:
        return "-"
    return best[0] if len(best) == 1 else "tie: " + " = ".join(best)


def _interval_text(g: Group, digits: int = 4) -> str | None:
    """``mean [low, high]``; ``mean (exact)`` where every cell drew the one equilibrium of a
    game whose equilibrium is provably unique; None without stored intervals."""
    mean, interval = g.stat("leader_objective")[0], g.interval()
    if interval is None or not math.isfinite(mean):
        return None
    low, high = interval
    if high - low <= 0 and g.draws() == (1, 1):
        return f"{_g(mean, digits)} (exact)"
    return f"{_g(mean, digits)} [{_g(low, digits)}, {_g(high, digits)}]"


def _wide_cell(g: Group | None, col: str, tol: float = FEASIBILITY_TOL) -> str:
    """A method's mean objective and interval (else mean ± se) at one grid point, or how its
    cells failed; marked where some answers are infeasible (✗k/N) or some cells stopped at
    their time limit (†)."""
    if g is None:
        return "-"
    mean, se, n = g.stat(col)
    text = ((col == "leader_objective" and _interval_text(g))
            or _fmt(mean, se, digits=4 if col == "leader_objective" else 2))
    if n == 0:  # every cell failed: say how
        text = " ".join(f"{k} ×{v}" for k, v in g.statuses.items())
    elif n < len(g.rows):  # some cells failed: say over how many
        text += f" ({n}/{len(g.rows)})"
    bad = g.infeasible(tol)
    if bad:
        text += f" ✗{bad}/{len(g.rows)}"
    if g.time_limited:
        text += " †"
    return text


def _detail_table(t: ExperimentTable) -> list[str]:
    """Every metric (and the gap to a certified bound) per method and grid point."""
    lines = ["**Per method and grid point**", ""]
    head = [t.axis or "grid point", "method", "cells", "statuses", "objective", "violation",
            "residual", "time (s)", "objective, 95 % interval", "draws"]
    if t.has_bounds:
        head.append("gap to certified bound")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for g in t.groups:
        row = [_label(g.params, t.axis), g.method, str(len(g.rows)),
               " ".join(f"{k} {v}" for k, v in g.statuses.items())]
        row += [_fmt(*g.stat(col)[:2], digits=4 if name == "objective" else 2)
                for name, col in METRICS]
        row.append(_interval_text(g) or "-")
        draws = g.draws()
        row.append("-" if draws is None else str(draws[0]) if draws[0] == draws[1]
                   else f"{draws[0]}-{draws[1]}")
        bad = g.infeasible(t.tol)
        if bad:
            row[4] += f" ✗{bad}/{len(g.rows)}"
        if t.has_bounds:
            gm, gs, gn = g.gap_stat()
            row.append(f"{_fmt(gm, gs, 3)} (n={gn})" if gn else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return lines


# The figures the README shows: file name -> (config, experiment, figure kind). The main job
# (`stackopt compare`, config quick) makes them; `stackopt report ... --docs docs` writes them
# with the results page, whose figures are named {config}-{experiment}-{kind}.png alike.
README_FIGURES = {
    "quick-ssg-objective.png": ("quick", "ssg", "objective"),
}
MAIN_CONFIG = "quick"  # the main job: first on the results page
RESULTS_PAGE = "results.md"
DOCS_KINDS = ("objective", "improvement", "violation")  # the figures of the results page
# flags of `stackopt compare` that do not change what is stored (dropped from the page's commands)
_NEUTRAL_FLAGS = {"--workers": 1, "--scheduler": 1, "--no-progress": 0, "--db": 1}


def make_report(db: str, out: str, *, experiments: list[str] | None = None,
                docs: str | None = None, tol: float = FEASIBILITY_TOL) -> list[Path]:
    """Write report.md, summary.csv, cells.csv and the figures to ``out``; return the paths.

    ``tol``: the largest scored violation of a feasible answer. With ``docs``, also write
    the results page (:func:`results_page`) and its figures, the README's among them,
    into that folder; a ValueError names any README figure the database cannot make.
    """
    with Store.open(db, create=False) as store:
        rows = store.rows(experiments=experiments)
        runs = store.runs()
        hints = _axis_hints(store)
        reported = _reported(store)
    if not rows:
        raise ValueError(f"results database {db!r} has no cells"
                         + (f" for experiments {experiments}" if experiments else ""))
    tables = _with_reported(build_tables(_by_config(rows, runs), hints, tol), reported)
    outdir = Path(out)
    if docs is not None:
        _check_readme_figures(rows, runs, hints, tol, db)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = write_csv(tables, rows, outdir)
    paths += figures(tables, outdir)
    md = outdir / "report.md"
    md.write_text(markdown(tables, db, runs, tol))
    if docs is not None:
        paths += results_page(rows, runs, hints, Path(docs), db, tol, reported)
    return [md] + paths


def _config_rows(rows: list[dict], runs: list[dict]) -> dict[str, list[dict]]:
    """The rows by the config of the run that stored them; the main job first."""
    config_of = {r["id"]: r.get("config_name") or "" for r in runs}
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[config_of.get(r.get("run_id"), "")].append(r)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != MAIN_CONFIG, kv[0] == "", kv[0])))


def _config_tables(crows: list[dict], config: str, hints: dict[str, str], tol: float,
                   reported: dict[str, Reported] | None = None):
    own = {r["experiment"]: hints.get(f"{config}/{r['experiment']}", hints.get(r["experiment"]))
           for r in crows}
    tables = build_tables([dict(r) for r in crows], {k: v for k, v in own.items() if v}, tol)
    return _with_reported(tables, reported or {}, config)


def _check_readme_figures(rows, runs, hints, tol, db) -> None:
    """Raise a ValueError naming each README figure the database cannot make."""
    by_config = _config_rows(rows, runs)
    missing = []
    for name, (config, experiment, _kind) in README_FIGURES.items():
        mine = [r for r in by_config.get(config, []) if r["experiment"] == experiment]
        if not mine or not any(numeric_axis(t) for t in _config_tables(mine, config, hints, tol)):
            missing.append(f"{name} (experiment {experiment!r} of config {config!r})")
    if missing:
        raise ValueError(f"{db} cannot make the README's figures {', '.join(missing)}: run "
                         "the main job first (`stackopt compare`, config quick)")


def results_page(rows: list[dict], runs: list[dict], hints: dict[str, str], docs: Path,
                 db: str = "results.sqlite", tol: float = FEASIBILITY_TOL,
                 reported: dict[str, Reported] | None = None) -> list[Path]:
    """Write ``docs/results.md`` and its figures; return the paths written.

    One section per config whose runs stored cells (the main job, config quick,
    first): the commands that made them (``stackopt compare ...``, flags that do not
    change what is stored left out), its runs' dates, machine and versions, the
    statuses, then per experiment the objective table with the best feasible method
    per grid point, the violation table, the per-method details and the figures
    ``{config}-{experiment}-{kind}.png`` (:data:`DOCS_KINDS`); for the reference
    experiments' own instances, the per-seed tables of :mod:`.reference_table`.
    """
    import matplotlib.pyplot as plt

    _check_readme_figures(rows, runs, hints, tol, db)
    docs.mkdir(parents=True, exist_ok=True)
    name = Path(db).name
    lines = ["# Results", "",
             f"Every table and figure on this page is written by `stackopt report {name} --out "
             f"report --docs docs` from the results database `{name}`, which the commands named "
             "in each section filled; nothing here is copied by hand. Rerun them to reproduce it "
             "(the stored answers do not depend on the machine's load: every cell stops on "
             "deterministic budgets, and a cell that reached its time limit would be marked †). "
             "`stackopt compare-dbs A.sqlite B.sqlite` compares two such databases cell by cell.",
             ""] + legend(tol)
    written: list[Path] = []
    for config, crows in _config_rows(rows, runs).items():
        lines += _config_header(config, crows, runs, name)
        for t in _config_tables(crows, config, hints, tol, reported):
            names = {}
            if numeric_axis(t):
                for kind in DOCS_KINDS:
                    path = docs / f"{_file_stem(config or 'unknown')}-{_file_stem(t.name)}-{kind}.png"
                    fig = draw(t, kind)
                    fig.savefig(path, dpi=100)
                    plt.close(fig)
                    written.append(path)
                    names[kind] = path.name
            lines += _page_section(t, names)
        lines += _reference_tables(crows, tol)
    page = docs / RESULTS_PAGE
    page.write_text("\n".join(lines).rstrip("\n") + "\n")
    return [page] + written


def _page_section(t: ExperimentTable, names: dict[str, str]) -> list[str]:
    """An experiment on the results page: wide tables, figures, details folded away."""
    lines = [f"### {t.name} (game `{t.game}`)", ""]
    if t.fixed:
        lines += [f"Fixed parameters: {t.fixed_text()}.", ""]
    lines += _wide_tables(t)
    if names:
        lines += [" ".join(f"![{t.name}: {k}]({f})" for k, f in names.items()), ""]
    lines += ["<details><summary>Every metric per method and grid point</summary>", ""]
    lines += _detail_table(t)
    lines += ["</details>", ""]
    return lines


def _command(argv: list[str], db: str) -> str:
    """A run's command line as a user would type it: ``stackopt compare ...`` with the flags
    that change what is stored, and ``--db`` naming the database by its file name."""
    args = list(argv[1:]) if argv else []
    if args and args[0] == "compare":
        args = args[1:]
    kept, i = [], 0
    while i < len(args):
        flag = args[i].split("=", 1)[0]
        if flag in _NEUTRAL_FLAGS:
            i += 1 + (_NEUTRAL_FLAGS[flag] if "=" not in args[i] else 0)
            continue
        kept.append(args[i])
        i += 1
    text = " ".join(["stackopt", "compare"] + kept)
    return text + ("" if db == "results.sqlite" else f" --db {db}")


def _config_header(config: str, crows: list[dict], runs: list[dict], db: str) -> list[str]:
    mine = {r.get("run_id") for r in crows}
    cruns = [r for r in runs if r["id"] in mine]
    title = (f"## The main job: config `{config}`" if config == MAIN_CONFIG
             else f"## Config `{config}`" if config else "## Cells of unknown runs")
    lines = [title, ""]
    description = ""
    if cruns:
        try:
            description = str(tomllib.loads(cruns[-1].get("config_text") or "").get("description", ""))
        except tomllib.TOMLDecodeError:
            pass
    if description:
        lines += [f"*{description}*", ""]
    commands = list(dict.fromkeys(_command(json.loads(r.get("argv") or "[]"), db) for r in cruns))
    if commands:
        lines += ["Made by " + ", then ".join(f"`{c}`" for c in commands) + ".", ""]
    statuses: dict[str, int] = defaultdict(int)
    for r in crows:
        statuses[r["status"]] += 1
    cell_time = sum(float(r.get("cell_time_s") or 0.0) for r in crows)
    lines += [f"{len(crows)} cells: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
              + f"; {cell_time:.0f} s of cell wall clock in all."]
    if cruns:
        last = cruns[-1]
        machine = json.loads(last.get("machine") or "{}")
        versions = json.loads(last.get("versions") or "{}")
        when = sorted({time.strftime("%Y-%m-%d", time.gmtime(r["started_at"])) for r in cruns})
        lines += [f"Run on {', '.join(when)} ({len(cruns)} run{'s' if len(cruns) > 1 else ''}), "
                  f"{machine.get('platform')}, {machine.get('cpu_count')} CPUs; "
                  + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + "."]
    return lines + [""]


def _reference_tables(crows: list[dict], tol: float) -> list[str]:
    """The per-seed tables beside the reference's recorded results, for cells built from the
    reference experiments' own instances."""
    ref = [r for r in crows if "reference_seed" in json.loads(r["params"])]
    if not ref:
        return []
    from .reference_table import collect, format_table

    lines = ["### Beside the reference's recorded results, per seed", ""]
    for t in collect(ref):
        lines += [format_table(t, feasibility=tol), ""]
    return lines


__all__ = ["make_report", "results_page", "legend", "README_FIGURES", "markdown", "write_csv",
           "METRICS", "FEASIBILITY_TOL",
           "build_tables", "check_fingerprints", "ExperimentTable", "Group",
           "FingerprintMismatch", "EXCLUDED"]
