"""The ``compare`` and ``report`` subcommands of the ``stackopt`` command line.

``stackopt/cli.py`` calls :func:`register` with its argparse subparsers::

    stackopt compare [CONFIG] --db results.sqlite --workers 2 [--scheduler tcp://HOST:PORT]
    stackopt report results.sqlite --out DIR [--docs docs]
    stackopt compare-dbs A.sqlite B.sqlite

CONFIG is a built-in config name (``quick``, the default; ``paper-nfg``,
``paper-ssg``, ``paper-cyber``, ``reference``) or a path to a TOML file.
"""
from __future__ import annotations

import argparse
import functools
import re
import sys

from stackopt.core.options import positive_number


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return x


def _tolerance(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}") from None
    if not 0 <= x < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return x


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> str:
    """A seed list, checked here so that its error names --seeds; the config parses it."""
    from .config import parse_seeds

    try:
        parse_seeds(text, where="the seed list")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _flagged(message: str, args) -> str:
    """Name the flag whose value an override error is about (--experiment, --methods)."""
    for flag, what, given in (("--experiment", "experiment", args.experiment),
                              ("--methods", "method", args.methods)):
        m = re.search(rf"unknown {what} '([^']*)'", message)
        if m and given and m.group(1) in given:
            return f"argument {flag}: {message}"
    return message


def register(subparsers) -> None:
    """Add ``compare`` and ``report`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "compare", allow_abbrev=False,
        help="run every method of a config on identical instances into SQLite",
        description="Run a comparison sweep. Cells already in the database are skipped, so "
                    "rerunning the same command resumes an interrupted sweep.")
    from .config import builtin_configs

    p.add_argument("config", nargs="?", default="quick",
                   help=f"built-in config name ({', '.join(builtin_configs())}) or a TOML path "
                        "(default: quick)")
    p.add_argument("--db", default="results.sqlite", help="results database (default: %(default)s)")
    p.add_argument("--workers", type=_positive_int, default=2,
                   help="local worker processes (default: %(default)s)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run cells on this Dask distributed scheduler instead of local processes")
    p.add_argument("--seeds", type=_seeds, default=None, metavar="SPEC",
                   help='replace every experiment\'s seeds, e.g. "1-5" or "1,3,7-9"')
    p.add_argument("--experiment", type=_csv, default=None, metavar="NAME[,NAME]",
                   help="run only these experiments of the config")
    p.add_argument("--methods", type=_csv, default=None, metavar="NAME[,NAME]",
                   help="run only these methods")
    p.add_argument("--time-limit", type=_positive_float, default=None, metavar="SECONDS",
                   help="replace every experiment's per-cell time limit")
    p.add_argument("--precision", type=positive_number, default=None, metavar="X",
                   help="replace every experiment's scoring precision: a first stage of draws "
                        "of the followers' equilibrium fixes how many are made, for a standard "
                        "error of the mean objective of at most X times its scale (default 2e-3)")
    p.add_argument("--max-draws", type=_positive_int, default=None, metavar="N",
                   help="replace every experiment's largest number of scoring draws (default 100)")
    p.add_argument("--retry-failed", action="store_true",
                   help="rerun stored cells that failed (status error or solver_error) or stopped "
                        "at their time limit (status time_limit: a result, not a failure, but "
                        "one a larger --time-limit may change)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the cell counts only")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (on a terminal) or per-cell lines (otherwise)")
    p.set_defaults(func=compare_command)

    r = subparsers.add_parser(
        "report", allow_abbrev=False, help="tables and figures from a results database",
        description="Write report.md, summary.csv, cells.csv and the figures (PNG and SVG: leader "
                    "objective, gain over the initial strategy, constraint violation, runtime, and "
                    "the equilibria reached at each method's answers with their frequencies) of "
                    "every experiment in the database. The "
                    "tables name the best feasible method per grid point; infeasible answers "
                    "and cells stopped at their time limit are marked; report.md explains its "
                    "units and symbols.")
    r.add_argument("db", help="results database written by `stackopt compare`")
    r.add_argument("--out", default="report", help="output directory (default: %(default)s)")
    r.add_argument("--experiment", type=_csv, default=None, metavar="NAME[,NAME]",
                   help="report only these experiments")
    r.add_argument("--docs", default=None, metavar="DIR",
                   help="also write the results page DIR/results.md (per config: the commands "
                        "that made its cells, tables naming the best feasible method, figures) "
                        "and the README's figures into DIR, e.g. docs; needs the main job "
                        "(config quick) in the database")
    r.add_argument("--feasibility", type=_tolerance, default=None, metavar="X",
                   help="largest scored violation of a feasible answer (default 1e-6): answers "
                        "above it are marked infeasible and never named best")
    r.set_defaults(func=report_command)

    from . import diff

    d = subparsers.add_parser(
        "compare-dbs", allow_abbrev=False,
        help="compare two results databases cell by cell (same stored answers?)",
        description="Match the cells of two results databases and compare what must not depend "
                    "on where or when they ran: status, leader objective, violation, equilibrium "
                    "residual, leader values and the instance's data fingerprint. Exit status 0 "
                    "where they are identical, 1 where they differ.")
    diff.add_arguments(d)
    d.set_defaults(func=diff.command)


def compare_command(args) -> int:
    from .config import load_config
    from .runner import TIME_LIMITED, count_failed, retry_note, run_sweep
    from .store import Store

    store = None
    try:
        config = load_config(args.config, seeds=args.seeds, experiments=args.experiment,
                             methods=args.methods, time_limit=args.time_limit,
                             precision=args.precision, max_draws=args.max_draws)
        stored = Store.peek(args.db)  # reads only: a dry run writes nothing
        cells = config.cells()
    except ValueError as exc:
        print(f"stackopt compare: error: {_flagged(str(exc), args)}", file=sys.stderr)
        return 2
    try:
        for e in config.experiments:
            n = len(e.cells())
            print(f"{config.name}/{e.name}: game {e.game}, {len(e.grid_points())} grid points x "
                  f"{len(e.seeds)} seeds x {len(e.methods)} methods ({', '.join(e.methods)}) = "
                  f"{n} cells, time limit {e.time_limit:g} s"
                  + "".join(f", {m} {t:g} s" for m, t in e.method_time_limits.items()),
                  file=sys.stderr)
        failed, limited = count_failed(cells, stored), count_failed(cells, stored, TIME_LIMITED)
        print(f"{len(cells)} cells, {sum(c.key in stored for c in cells)} already in {args.db}"
              + (f" ({retry_note(failed, limited)})" if failed or limited else ""),
              file=sys.stderr)
        if args.dry_run:
            return 0
        store = Store.open(args.db)
        summary = run_sweep(config, store, workers=args.workers, scheduler=args.scheduler,
                            progress=not args.no_progress, retry_failed=args.retry_failed,
                            argv=list(sys.argv))
    except ValueError as exc:  # a bad config or option, or a database we cannot use
        print(f"stackopt compare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stackopt compare: interrupted; finished cells are stored, rerun to resume",
              file=sys.stderr)
        return 130
    finally:
        if store is not None:
            store.close()
    print(summary.line())
    print(f"results in {args.db}; next: stackopt report {args.db} --out report")
    return 0


def report_command(args) -> int:
    from .report import make_report

    try:
        kw = {} if args.feasibility is None else {"tol": args.feasibility}
        paths = make_report(args.db, args.out, experiments=args.experiment, docs=args.docs, **kw)
    except ValueError as exc:
        print(f"stackopt report: error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m stackopt.comparisons.cli``), same subcommands."""
    parser = argparse.ArgumentParser(prog="stackopt", allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True,
                                parser_class=functools.partial(argparse.ArgumentParser,
                                                               allow_abbrev=False))
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
