"""Benchmark: time to answer of ``stackopt.solve`` as a user sees it, on a quiet and on a loaded machine.

``bench_scaling`` times the oracle and one gradient step inside a process it
pins to one BLAS thread. This benchmark times what a user calls,
``stackopt.solve``, in a process left as the machine sets it up (BLAS at its
default thread count; the library's own thread policy, :mod:`stackopt.core.blas`,
is what applies), each part twice: *quiet* (nothing started by the benchmark;
the machine may be shared) and *loaded* (a second process spinning on the
other core, as on a shared machine or beside another Dask worker). The
machine's load average is printed with each pass.

Games (``--games``; NFG with 2 players and 100 actions first), columns:

* ``prep s``: preparing the game (``kernel_of``: symbolic derivatives, compiled
  programs, the convexity proofs, the linear rows);
* ``1-step s``: ``solve(game, "gradient", steps=1)`` of the prepared game (its first
  solve: the initial strategy's scoring included), and ``+prep s`` the same on a
  freshly built game (its preparation included);
* ``default s``: ``solve(game)`` with every default, to its answer, with its
  status and steps;
* ``user ms/step``: the cost per step on the user's path, ``(solve(steps=201) -
  solve(steps=1)) / 200`` on the prepared game (fresh draws, confirmations and
  scoring included as the method takes them);
* ``warm ms``: ``bench_scaling``'s warm step (warm equilibrium, adjoint gradient,
  projected sign step; median of ``--warm-steps``) in the same pass, and
  ``user/warm`` the ratio.

Game rows give beside each wall time the process's CPU seconds in brackets: on a
machine shared with other work the wall time is what a user waits, the CPU time
what the same run takes on a core of its own.

Library (``--library``): every known-optimum problem of ``stackopt.models.library``
with every method (``--methods``), defaults, a fresh game each (its preparation
included): seconds of each ``solve`` and the relative error against the
published optimum; per method the median and the largest time.

Paper cells (``--paper``): one cell of each paper config (``paper-nfg`` budget 2,
``paper-ssg`` budget 1, ``paper-cyber`` risk aversion 0.5; seed 1) with
``gradient`` and ``initial`` as the harness runs a cell: build the game, solve
with defaults; seconds and the scored objective.

Command (``--cli``): ``stackopt solve nfg --players 3 --actions 10 --budget 2 --seed 1
--steps 5000`` as a whole process, as a user types it (``--cli-runs`` runs; median CPU and
wall seconds of the child process), and the same process's start-up alone (importing the
command line and reading the game registry).

Paper run (``--cells SPEC``): the CPU seconds of sampled cells of the paper configs' main
experiments, ``gradient`` and ``initial``, each as the harness runs it (the instance built and prepared once for
both methods, solved with the cell's seed; the worker's imports are paid once per worker
and left out),
and the estimate of the whole run at the paper's instance counts on two workers: the mean
CPU seconds of a grid point's cells times the config's cells, over two. ``SPEC`` is
``config:seeds[@v1/v2...]`` joined by commas, e.g.
``paper-nfg:1-2,paper-cyber:1-2,paper-ssg:1@0.0/1.0`` (the values of the config's axis to
sample; every value when omitted).

    python -m stackopt.comparisons.bench_solve [--passes quiet,loaded] [--games nfg2-100,nfg3-10]
        [--library] [--paper] [--cli] [--cells SPEC] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

GAMES = {
    "nfg2-100": ("nfg", dict(seed=1, players=2, actions=100, budget=2.0)),
    "nfg2-50": ("nfg", dict(seed=1, players=2, actions=50, budget=2.0)),
    "nfg3-10": ("nfg", dict(seed=1, players=3, actions=10, budget=2.0)),
    "ssg-20": ("ssg", dict(seed=1, targets=20, defenders=5)),
    "cyber-10": ("cyber", dict(seed=1, customers=10, risk_aversion=0.5)),
}

PAPER = {
    "paper-nfg": ("nfg", dict(seed=1, players=3, actions=10, lam=1.0, budget=2.0)),
    "paper-ssg": ("ssg", dict(seed=1, targets=100, defenders=5, coverable=50, resources=10.0,
                              rationality=5.0, budget_kind="reimbursement", budget=1.0)),
    "paper-cyber": ("cyber", dict(seed=1, customers=10, risk_aversion=0.5)),
}

LIBRARY_METHODS = ("gradient", "implicit-ipopt", "slsqp", "trust-region", "mpec-ipopt", "mpec-scip",
                   "initial")


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _timed_cpu(fn):
    """``(wall seconds, this process's CPU seconds, result)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def _build(name, params):
    from stackopt.models import build_game
    return build_game(name, **params)


def _warm_step(game, steps: int) -> tuple[float, float]:
    """``bench_scaling``'s warm step on the prepared ``game``, BLAS on one thread: median wall
    and CPU seconds."""
    import numpy as np

    import stackopt
    from stackopt.comparisons.bench_scaling import _Stepper
    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle

    k = kernel_of(game)
    with stackopt.blas_threads(1):
        oracle = EquilibriumOracle(k)
        eq = oracle.solve(k.p0, rng=np.random.default_rng([0, 0]))
        if not eq.converged:
            return math.nan, math.nan
        lr = float(game.method_options.get("gradient", {}).get("lr", 1e-2))
        stepper = _Stepper(game, k, oracle, lr)
        p, eq, lin = stepper.step(k.p0.copy(), eq)  # the first step linearises the cold equilibrium
        walls, cpus = [], []
        for _ in range(steps):
            t, c, (p, eq, lin) = _timed_cpu(lambda p=p, eq=eq, lin=lin: stepper.step(p, eq, lin))
            walls.append(t)
            cpus.append(c)
    return float(np.median(walls)), float(np.median(cpus))


def game_row(key: str, args) -> dict:
    from stackopt import solve
    from stackopt.kernel import kernel_of

    name, params = GAMES[key]
    game = _build(name, params)
    prep, prep_cpu, _ = _timed_cpu(lambda: kernel_of(game))
    one, one_cpu, _ = _timed_cpu(lambda: solve(game, "gradient", seed=0, steps=1))
    fresh, _ = _timed(lambda: solve(_build(name, params), "gradient", seed=0, steps=1))
    many, many_cpu, _ = _timed_cpu(lambda: solve(game, "gradient", seed=0, steps=201))
    again, again_cpu, _ = _timed_cpu(lambda: solve(game, "gradient", seed=0, steps=1))
    default, default_cpu, rd = _timed_cpu(lambda: solve(game, "gradient", seed=0))
    warm, warm_cpu = _warm_step(game, args.warm_steps)
    return dict(game=key, prep=prep, prep_cpu=prep_cpu, one=one, one_cpu=one_cpu, one_fresh=fresh,
                default=default, default_cpu=default_cpu, default_status=rd.status.value,
                default_steps=len(rd.history), default_objective=rd.leader_objective,
                user_step=(many - again) / 200, user_step_cpu=(many_cpu - again_cpu) / 200,
                warm=warm, warm_cpu=warm_cpu)


def library_rows(methods) -> list[dict]:
    from stackopt import solve
    from stackopt.models.library import KNOWN_OPTIMA, PROBLEMS

    out = []
    for problem in PROBLEMS:
        ref = KNOWN_OPTIMA[problem].value
        for method in methods:
            t, r = _timed(lambda problem=problem, method=method:
                          solve(_build("library", dict(problem=problem)), method, seed=0))
            rel = abs(r.leader_objective - ref) / max(abs(ref), 1e-12)
            out.append(dict(problem=problem, method=method, seconds=t, status=r.status.value,
                            objective=r.leader_objective, rel_error=rel))
    return out


def paper_rows() -> list[dict]:
    from stackopt import solve

    out = []
    for key, (name, params) in PAPER.items():
        for method in ("gradient", "initial"):
            t, r = _timed(lambda name=name, params=params, method=method:
                          solve(_build(name, params), method, seed=0))
            out.append(dict(cell=key, method=method, seconds=t, status=r.status.value,
                            objective=r.leader_objective, initial=r.initial_objective,
                            steps=len(r.history)))
    return out


CLI_ARGS = ("solve", "nfg", "--players", "3", "--actions", "10", "--budget", "2", "--seed", "1",
            "--steps", "5000")
PAPER_WORKERS = 2


def _child_run(code: str, args=()) -> tuple[float, float, int]:
    """``(wall s, CPU s, exit code)`` of ``python -c code args`` as a whole process."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def cli_row(runs: int) -> dict:
    """The NFG(3,10) command as a whole process, and its start-up alone (medians)."""
    command = "import sys; from stackopt.cli import main; sys.exit(main(sys.argv[1:]))"
    startup = ("import stackopt.cli; from stackopt.models import game_spec; game_spec('nfg'); "
               "import stackopt.api, stackopt.kernel")
    full = [_child_run(command, CLI_ARGS) for _ in range(runs)]
    start = [_child_run(startup) for _ in range(runs)]
    return dict(command="stackopt " + " ".join(CLI_ARGS), runs=runs,
                wall=statistics.median(r[0] for r in full), cpu=statistics.median(r[1] for r in full),
                exit=max(r[2] for r in full),
                startup_wall=statistics.median(r[0] for r in start),
                startup_cpu=statistics.median(r[1] for r in start))


def _cell_specs(spec: str):
    """``[(config, seeds, axis values or None)]`` from ``--cells``."""
    out = []
    for part in [p for p in spec.split(",") if p]:
        name, _, rest = part.partition(":")
        seeds, _, values = rest.partition("@")
        if not name or not seeds:
            raise ValueError(f"--cells: expected config:seeds[@v1/v2], got {part!r}")
        out.append((name, seeds, [float(v) for v in values.split("/")] if values else None))
    return out


def paper_cell_rows(spec: str) -> list[dict]:
    """CPU seconds of sampled paper cells (``gradient`` and ``initial``), as the harness runs them."""
    from stackopt import solve
    from stackopt.comparisons.config import load_config
    from stackopt.comparisons.worker import Instances

    out = []
    instances = Instances()  # an instance's methods solve one built game, as in a cell process
    for name, seeds, values in _cell_specs(spec):
        main = load_config(name).experiments[0]
        cfg = load_config(name, seeds=seeds, experiments=[main.name], methods=["gradient", "initial"])
        exp = cfg.experiments[0]
        for cell in exp.cells(cfg.plugins):
            point = dict(cell.params)
            if values is not None and exp.axis and point.get(exp.axis) not in values:
                continue
            t, c, r = _timed_cpu(lambda cell=cell: solve(instances.game_for(cell)[0], cell.method,
                                                         cell.seed, progress=False))
            instances.finished({"status": r.status.value})
            out.append(dict(config=name, experiment=exp.name, axis=exp.axis,
                            value=point.get(exp.axis), seed=cell.seed, method=cell.method,
                            seconds=t, cpu=c, status=r.status.value, objective=r.leader_objective,
                            steps=len(r.history), cells_in_paper=len(main.cells()) // len(main.methods),
                            seeds_in_paper=len(main.seeds)))
            print(f"  {name} {exp.axis}={point.get(exp.axis)} seed {cell.seed} {cell.method}: "
                  f"{c:.2f} s CPU ({t:.2f} s wall) {r.status.value} {r.leader_objective:.6f}", flush=True)
    return out


def paper_estimate(rows: list[dict]) -> dict:
    """Per config, the mean CPU seconds of a grid point's gradient + initial cells, and the
    paper run's CPU hours and wall hours on :data:`PAPER_WORKERS` workers."""
    est = {}
    for name in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == name]
        per = {}
        for r in mine:
            per.setdefault((r["value"], r["seed"]), 0.0)
            per[(r["value"], r["seed"])] += r["cpu"]
        mean = statistics.mean(per.values())
        points = mine[0]["cells_in_paper"]  # (grid point, seed) pairs at the paper's counts
        est[name] = dict(sampled=len(per), mean_cpu=mean, instances=points, cpu_h=mean * points / 3600)
    total = sum(e["cpu_h"] for e in est.values())
    return dict(configs=est, cpu_h=total, wall_h=total / PAPER_WORKERS)


def _print_cli(row):
    print(f"command: {row['command']} ({row['runs']} runs, median): {row['wall']:.2f} s wall, "
          f"{row['cpu']:.2f} s CPU (exit {row['exit']}); start-up alone {row['startup_wall']:.2f} s "
          f"wall, {row['startup_cpu']:.2f} s CPU")


def _print_estimate(est):
    for name, e in est["configs"].items():
        print(f"{name:>12s}: {e['sampled']} sampled (grid point, seed) pairs, mean {e['mean_cpu']:.2f} s CPU "
              f"(gradient + initial) x {e['instances']} = {e['cpu_h']:.2f} CPU h")
    print(f"paper run, gradient + initial: {est['cpu_h']:.2f} CPU h = {est['wall_h']:.2f} h on "
          f"{PAPER_WORKERS} free cores ({60 * est['wall_h']:.0f} min)")


def _print_games(rows):
    print("(wall seconds as the user waits; in brackets this process's CPU seconds, what a quiet "
          "core would take)")
    print(f"{'game':>10s}{'prep s':>13s}{'1-step s':>13s}{'+prep s':>9s}{'default s':>15s}"
          f"{'status':>16s}{'steps':>6s}{'user ms/step':>16s}{'warm ms':>14s}{'user/warm':>11s}")
    for r in rows:
        print(f"{r['game']:>10s}{r['prep']:7.2f} ({r['prep_cpu']:4.2f}){r['one']:7.2f} ({r['one_cpu']:4.2f})"
              f"{r['one_fresh']:9.2f}{r['default']:8.2f} ({r['default_cpu']:5.2f})"
              f"{r['default_status']:>16s}{r['default_steps']:6d}"
              f"{1e3 * r['user_step']:8.2f} ({1e3 * r['user_step_cpu']:5.2f})"
              f"{1e3 * r['warm']:7.2f} ({1e3 * r['warm_cpu']:4.2f})"
              f"{r['user_step'] / r['warm']:6.1f} ({r['user_step_cpu'] / r['warm_cpu']:3.1f})")


def _print_library(rows, methods):
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    print(f"{'problem':>22s}" + "".join(f"{m:>15s}" for m in methods))
    for p in problems:
        cells = {r["method"]: r for r in rows if r["problem"] == p}
        print(f"{p:>22s}" + "".join(
            f"{cells[m]['seconds']:8.2f} s{('' if cells[m]['rel_error'] <= 1e-3 else ' *'):>5s}"
            if m in cells else f"{'-':>15s}" for m in methods))
    print(f"{'median s':>22s}" + "".join(
        f"{statistics.median(r['seconds'] for r in rows if r['method'] == m):15.2f}" for m in methods))
    print(f"{'largest s':>22s}" + "".join(
        f"{max(r['seconds'] for r in rows if r['method'] == m):15.2f}" for m in methods))
    print("(* relative error above 1e-3 against the published optimum)")


def _print_paper(rows):
    print(f"{'cell':>12s}{'method':>10s}{'seconds':>9s}{'status':>16s}{'steps':>6s}{'objective':>14s}{'initial':>12s}")
    for r in rows:
        print(f"{r['cell']:>12s}{r['method']:>10s}{r['seconds']:9.2f}{r['status']:>16s}{r['steps']:6d}"
              f"{r['objective']:14.6f}{r['initial']:12.6f}")


def run_pass(label: str, args) -> dict:
    print(f"\n=== {label}: load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
          f"{os.cpu_count()} cores, BLAS threads by the environment: "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}", flush=True)
    out: dict = {"pass": label}
    if args.games:
        out["games"] = [game_row(g, args) for g in args.games]
        _print_games(out["games"])
    if args.library:
        out["library"] = library_rows(args.methods)
        _print_library(out["library"], args.methods)
    if args.paper:
        out["paper"] = paper_rows()
        _print_paper(out["paper"])
    if args.cli:
        out["cli"] = cli_row(args.cli_runs)
        _print_cli(out["cli"])
    if args.cells:
        out["cells"] = paper_cell_rows(args.cells)
        out["estimate"] = paper_estimate(out["cells"])
        _print_estimate(out["estimate"])
    sys.stdout.flush()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", default="quiet,loaded", help="quiet, loaded or both (comma-separated)")
    ap.add_argument("--games", default="nfg2-100,nfg3-10", help=f"comma-separated, of {', '.join(GAMES)} "
                    "('' for none)")
    ap.add_argument("--library", action="store_true", help="the known-optimum library, every method")
    ap.add_argument("--paper", action="store_true", help="one cell of each paper config")
    ap.add_argument("--cli", action="store_true", help="the NFG(3,10) 5000-step command as a whole process")
    ap.add_argument("--cli-runs", type=int, default=3, help="runs of the command (median)")
    ap.add_argument("--cells", default="", help="paper cells to sample, config:seeds[@v1/v2] joined by "
                    "commas (e.g. paper-nfg:1-2,paper-ssg:1@0.0/1.0), and the paper run's estimate")
    ap.add_argument("--methods", default=",".join(LIBRARY_METHODS), help="methods of the library table")
    ap.add_argument("--warm-steps", type=int, default=20, help="warm steps timed for the warm-step column")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    args.games = [g for g in args.games.split(",") if g]
    for g in args.games:
        if g not in GAMES:
            ap.error(f"unknown game {g!r}; expected one of {', '.join(GAMES)}")
    args.methods = [m for m in args.methods.split(",") if m]
    try:
        _cell_specs(args.cells)
    except ValueError as exc:
        ap.error(str(exc))
    if args.cli_runs < 1:
        ap.error(f"--cli-runs must be at least 1, got {args.cli_runs}")
    passes = [p for p in args.passes.split(",") if p]
    for p in passes:
        if p not in ("quiet", "loaded"):
            ap.error(f"unknown pass {p!r}; expected quiet or loaded")
    import stackopt.models  # imports before the clocks start

    stackopt.models.available_games()
    results = []
    for label in passes:
        spinner = None
        if label == "loaded":  # a second process keeps the other core busy
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            results.append(run_pass(label, args))
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
