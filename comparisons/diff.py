"""Two results databases, cell by cell: did two sweeps store the same answers?

    stackopt compare-dbs A.sqlite B.sqlite [--rtol X] [--common] [--all]
    python -m stackopt.comparisons.diff A.sqlite B.sqlite

Cells are matched by their key (experiment, game, parameters, seed, method,
options); for every cell in both, the numbers that must not depend on where or
when it ran are compared (:func:`~.runner.row_numbers`: status, leader
objective, constraint violation, equilibrium residual, leader values and the
instance's data fingerprint), exactly by default (``--rtol`` allows a relative
difference). Times, workers and messages are not compared. Exit status 0 where
every common cell is identical and both databases hold the same cells (with
``--common``: whatever else either holds), 1 otherwise, 2 for a database that
cannot be read.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field

from .runner import row_numbers
from .store import Store, StoreError

COMPARED = ("status", "leader_objective", "constraint_violation", "equilibrium_residual",
            "leader_values", "fingerprint")


@dataclass
class CellDiff:
    """One cell stored in both databases with different numbers."""

    key: tuple
    fields: dict[str, tuple]  # name -> (value in A, value in B)
    statuses: tuple  # (status in A, status in B)

    def label(self) -> str:
        experiment, _game, params, seed, method, options = self.key
        point = " ".join(f"{k}={v}" for k, v in json.loads(params).items())
        opts = "" if options == "{}" else f" {options}"
        return f"{experiment} {point} seed {seed} {method}{opts}".replace("  ", " ")


@dataclass
class DbDiff:
    """The outcome of :func:`compare_dbs`."""

    cells_a: int
    cells_b: int
    identical: int = 0
    differ: list[CellDiff] = field(default_factory=list)
    only_a: list[tuple] = field(default_factory=list)
    only_b: list[tuple] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return not (self.differ or self.only_a or self.only_b)

    @property
    def same_common(self) -> bool:
        """Every cell stored in both is identical."""
        return not self.differ

    def lines(self, *, every: bool = False, limit: int = 20) -> list[str]:
        """A summary, then each differing cell (the first ``limit`` unless ``every``)."""
        common = self.identical + len(self.differ)
        out = [f"{common} cells in both: {self.identical} identical, {len(self.differ)} differ "
               f"(compared: {', '.join(COMPARED)}); only in A: {len(self.only_a)}, only in B: "
               f"{len(self.only_b)}"]
        if self.differ:
            limited = [d for d in self.differ if "time_limit" in d.statuses]
            out.append(f"of the {len(self.differ)} that differ, {len(limited)} stopped at the time "
                       "limit in A or B")
        shown = self.differ if every else self.differ[:limit]
        for d in shown:
            parts = "; ".join(f"{name} {_show(a)} vs {_show(b)}" for name, (a, b) in d.fields.items())
            out.append(f"  {d.label()}: {parts}")
        if len(shown) < len(self.differ):
            out.append(f"  ... {len(self.differ) - len(shown)} more (--all shows every one)")
        return out


def _show(v) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    return str(v)


def _equal(a, b, rtol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], rtol) for k in a)
    return a == b


def _rows(path: str) -> dict[tuple, dict]:
    with Store.open(path, readonly=True) as store:
        rows = store.rows()
    keys = ("experiment", "game", "params", "seed", "method", "options")
    return {tuple(r[k] for k in keys): r for r in rows}


def compare_dbs(a: str, b: str, *, rtol: float = 0.0) -> DbDiff:
    """Compare the cells of results databases ``a`` and ``b`` (see the module docstring)."""
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 <= rtol < 1:
        raise ValueError(f"rtol must be a number in [0, 1), got {rtol!r}")
    rows_a, rows_b = _rows(a), _rows(b)
    out = DbDiff(len(rows_a), len(rows_b))
    for key in sorted(set(rows_a) | set(rows_b), key=str):
        if key not in rows_b:
            out.only_a.append(key)
        elif key not in rows_a:
            out.only_b.append(key)
        else:
            na, nb = row_numbers(rows_a[key]), row_numbers(rows_b[key])
            fields = {k: (na[k], nb[k]) for k in COMPARED if not _equal(na[k], nb[k], rtol)}
            if fields:
                out.differ.append(CellDiff(key, fields, (na["status"], nb["status"])))
            else:
                out.identical += 1
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="a results database written by `stackopt compare`")
    p.add_argument("b", metavar="B", help="another one")
    p.add_argument("--rtol", type=float, default=0.0, metavar="X",
                   help="relative difference of numbers still counted as equal (default 0: "
                        "identical)")
    p.add_argument("--common", action="store_true",
                   help="exit status 0 where the cells stored in both are identical, whatever "
                        "else either holds (e.g. one database also holds other configs)")
    p.add_argument("--all", action="store_true", help="list every differing cell (default: 20)")


def command(args) -> int:
    try:
        diff = compare_dbs(args.a, args.b, rtol=args.rtol)
    except (ValueError, StoreError) as exc:
        print(f"stackopt compare-dbs: error: {exc}", file=sys.stderr)
        return 2
    print(f"A: {args.a} ({diff.cells_a} cells), B: {args.b} ({diff.cells_b} cells)")
    for line in diff.lines(every=args.all):
        print(line)
    return 0 if (diff.same_common if args.common else diff.same) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stackopt.comparisons.diff", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return command(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
