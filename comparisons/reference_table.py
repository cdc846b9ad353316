"""Per-seed table: stackopt's methods beside the reference experiments' recorded results.

::

    stackopt compare reference --db reference.sqlite
    python -m stackopt.comparisons.reference_table reference.sqlite

For every stored cell whose game was built from a reference instance (a
``reference_seed`` parameter), one line per experiment and reference seed: the
reference gradient method's recorded objective and violation
(``models/data/reference_results.csv``) beside each stackopt method's scored
objective and violation, and both initial objectives (the leader's initial
strategy at the reference's recorded equilibrium and as stackopt scores it). Violations are
measured as the reference measured them: the budget overrun for NFG and security games (stackopt's
``constraint_violation``, the game having one budget row), and for cyber
insurance the sum over customers of the individual-rationality violations,
recomputed from the stored strategy and equilibrium (stackopt's own
``constraint_violation`` is the largest one). Where the stored parameter
(budget, risk aversion) is not the one the reference recorded, the reference
columns are left empty.

A scored objective drawn from several equilibria shows its 95 % interval's
half-width (``-2.5954 ±0.0108``); one of a provably unique equilibrium is exact
and shows none. Under each table, per method: the mean objective and on how
many seeds it is better than the reference's (its whole interval beyond the
reference's value) with a violation of at most ``--feasibility`` (default
1e-6), and the largest shortfall.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field

from .store import Store

VIOLATION = {"nfg": "budget overrun", "ssg": "budget overrun", "cyber": "summed IR violation"}
NOTE = {"ssg": "the reference reimbursed every defender-target pair and started its oracle from "
               "zero coverage, so its initial objective is at another equilibrium than stackopt's"}


@dataclass
class Line:
    """One reference instance in one experiment: the recorded row and every method's cell."""

    seed: int  # the reference seed
    run_seed: int  # the seed the methods and the scoring oracle ran with
    recorded: object | None  # models.reference.Recorded, or None
    initial: float = math.nan  # stackopt's scored objective of the leader's initial strategy
    cells: dict[str, dict] = field(default_factory=dict)  # method -> objective, violation, status


@dataclass
class Table:
    experiment: str
    game: str
    params: dict
    maximize: bool = True
    lines: dict[tuple, Line] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return sorted({m for ln in self.lines.values() for m in ln.cells})


def _float(v) -> float:
    return math.nan if v is None else float(v)


def _violation(row: dict, params: dict) -> float:
    if row["game"] != "cyber" or not row.get("leader_values") or not row.get("follower_values"):
        return _float(row.get("constraint_violation"))
    import numpy as np

    from stackopt.models import build_game
    from stackopt.models.cyber import ir_gaps

    game = build_game("cyber", row["seed"], **params)
    gaps = ir_gaps(game, row["leader_values"], row["follower_values"])
    return float(np.maximum(gaps, 0.0).sum())


def collect(rows: list[dict]) -> list[Table]:
    """Group the stored rows of reference instances into one :class:`Table` per experiment."""
    from stackopt.models import game_spec
    from stackopt.models.reference import PARAMETER, recorded

    tables: dict[str, Table] = {}
    for row in rows:
        params = json.loads(row["params"])
        if params.get("reference_seed") is None:
            continue
        ref_seed = int(params["reference_seed"])
        rest = {k: v for k, v in params.items() if k != "reference_seed"}
        t = tables.setdefault(row["experiment"], Table(row["experiment"], row["game"], rest))
        if row.get("sense"):
            t.maximize = row["sense"] == "maximize"
        key = (ref_seed, row["seed"])
        if key not in t.lines:
            rec = recorded(row["game"], ref_seed)
            name = PARAMETER.get(row["game"])
            value = params.get(name, game_spec(row["game"]).params[name].default) if name else None
            if rec is not None and (value is None or float(value) != rec.parameter):
                rec = None  # the reference recorded another budget / risk aversion
            t.lines[key] = Line(ref_seed, row["seed"], rec)
        if math.isnan(t.lines[key].initial):
            t.lines[key].initial = _float(row.get("initial_objective"))
        low, high = _float(row.get("objective_low")), _float(row.get("objective_high"))
        t.lines[key].cells[row["method"]] = dict(
            objective=_float(row.get("leader_objective")), violation=_violation(row, params),
            status=row["status"], half=(high - low) / 2 if high >= low else 0.0)
    if not tables:
        raise ValueError("the database holds no cells of reference instances (a reference_seed "
                         "parameter); run `stackopt compare reference --db DB` first")
    return [tables[k] for k in sorted(tables)]


def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or math.isnan(v) else format(v, spec)


def _better(t: Table, cell: dict, rec, feasibility: float) -> bool:
    if rec is None or math.isnan(cell["objective"]) or not cell["violation"] <= feasibility:
        return False
    half = cell.get("half", 0.0)  # the interval's worse end must beat the reference
    if t.maximize:
        return cell["objective"] - half > rec.objective
    return cell["objective"] + half < rec.objective


def _objective(c: dict) -> str:
    """A scored objective, with its 95 % interval's half-width where it has one."""
    text = _fmt(c["objective"], ".4f")
    return text + (f" ±{c['half']:.4f}" if c.get("half", 0.0) > 0 and text != "-" else "")


def format_table(t: Table, feasibility: float = 1e-6) -> str:
    """A markdown table of one experiment, then one summary line per method."""
    methods = t.methods
    several = len({ln.run_seed for ln in t.lines.values()}) > 1
    setting = ", ".join(f"{k}={v}" for k, v in sorted(t.params.items()))
    out = [f"{t.experiment}: {t.game} {setting} (violation: {VIOLATION.get(t.game, 'constraint')})"]
    if t.game in NOTE:
        out.append(f"note: {NOTE[t.game]}")
    out.append("")
    head = ["seed", "ref. initial", "reference", "ref. viol.", "initial"]
    for m in methods:
        head += [m, "viol.", "status"]
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(t.lines):
        ln = t.lines[key]
        rec = ln.recorded
        cols = [f"{ln.seed}" + (f"/{ln.run_seed}" if several else ""),
                _fmt(rec.initial_objective if rec else None, ".4f"),
                _fmt(rec.objective if rec else None, ".4f"),
                _fmt(rec.violation if rec else None, ".2g"), _fmt(ln.initial, ".4f")]
        for m in methods:
            c = ln.cells.get(m)
            cols += ([_objective(c), _fmt(c["violation"], ".2g"), c["status"]]
                     if c else ["-", "-", "not run"])
        out.append("| " + " | ".join(cols) + " |")
    out.append("")
    recs = [ln.recorded for ln in t.lines.values() if ln.recorded]
    if recs:
        gain = sum(r.objective - r.initial_objective for r in recs) / len(recs)
        out.append(f"reference: mean {sum(r.objective for r in recs) / len(recs):.4f}, mean gain "
                   f"over its initial {gain:+.4f}, over {len(recs)} seeds")
    for m in methods:
        out.append(_summary(t, m, feasibility))
    return "\n".join(out)


def _summary(t: Table, m: str, feasibility: float) -> str:
    lines = [ln for ln in t.lines.values() if m in ln.cells]
    objs = [ln.cells[m]["objective"] for ln in lines if not math.isnan(ln.cells[m]["objective"])]
    text = f"{m}: mean {sum(objs) / len(objs):.4f}" if objs else f"{m}: no objective"
    gains = [ln.cells[m]["objective"] - ln.initial for ln in lines
             if not math.isnan(ln.cells[m]["objective"] - ln.initial)]
    if gains:  # over stackopt's scored initial objective of the same instance
        text += f", mean gain over the initial {sum(gains) / len(gains):+.4f}"
    compared = [ln for ln in lines if ln.recorded]
    if compared:
        wins = sum(_better(t, ln.cells[m], ln.recorded, feasibility) for ln in compared)
        sign = 1.0 if t.maximize else -1.0
        short = [(sign * (ln.recorded.objective - ln.cells[m]["objective"]), ln.seed)
                 for ln in compared if not math.isnan(ln.cells[m]["objective"])]
        text += (f"; better than the reference with violation <= {feasibility:g} on {wins} of "
                 f"{len(compared)} seeds")
        worst = max(short, default=None)
        if worst is not None and worst[0] > 0:
            text += f"; largest shortfall {worst[0]:.4f} (seed {worst[1]})"
    return text


def _feasibility(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m stackopt.comparisons.reference_table",
        description="Per-seed table of stackopt's methods beside the reference experiments' "
                    "recorded results, from a database written by `stackopt compare reference`.")
    ap.add_argument("db", help="results database")
    ap.add_argument("--experiment", default=None, metavar="NAME[,NAME]",
                    help="only these experiments")
    ap.add_argument("--feasibility", type=_feasibility, default=1e-6,
                    help="largest violation counted as feasible (default %(default)g)")
    args = ap.parse_args(argv)
    wanted = [e.strip() for e in args.experiment.split(",")] if args.experiment else None
    try:
        with Store.open(args.db, create=False) as store:
            tables = collect(store.rows(experiments=wanted))
    except ValueError as exc:
        print(f"reference_table: error: {exc}", file=sys.stderr)
        return 2
    print("\n\n".join(format_table(t, args.feasibility) for t in tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
