"""Every registered method on NFG(3 players, 10 actions, seed 1, budget 2) and on the
known-optimum library, in one run: wall time, leader objective, violation, status; then
every generalized Nash game of ``stackopt.models.gnep`` solved by ``stackopt.equilibrium``
against its published or closed-form equilibrium.

    python -m stackopt.comparisons.bench_methods                  # everything
    python -m stackopt.comparisons.bench_methods --skip-nfg --methods mpec-ipopt,slsqp
    python -m stackopt.comparisons.bench_methods --json results.json
    python -m stackopt.comparisons.bench_methods --skip-nfg --problems none   # the equilibria only

The leader objective is the one ``stackopt.solve`` reports: the method's final
leader strategy re-evaluated by the common equilibrium oracle. For library
problems the relative error is against the published optimum
(``stackopt.models.library.KNOWN_OPTIMA``); every method runs with its default
options (the library recommends none). Each method starts from the game's own
initial leader values. The status column says whether the method's own stopping
rule held (``converged``) or it ran out of steps (``max_iterations``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import stackopt
from stackopt.models import build_game
from stackopt.models.library import KNOWN_OPTIMA, PROBLEMS

NFG = dict(players=3, actions=10, budget=2.0)
NFG_SEED = 1


def _rows(instance, make_game, methods, time_limit, reference, seed):
    out = []
    for method in methods:
        game = make_game()
        t0 = time.perf_counter()
        try:
            res = stackopt.solve(game, method, seed=seed, time_limit=time_limit)
        except ValueError as exc:  # bad input for this method: report, go on
            out.append(dict(instance=instance, method=method, status="rejected", objective=math.nan,
                            reference=reference, violation=math.nan, wall_s=time.perf_counter() - t0,
                            total_s=time.perf_counter() - t0, bound=None, gap=None, message=str(exc)))
            continue
        total = time.perf_counter() - t0
        out.append(dict(instance=instance, method=method, status=res.status.value,
                        objective=res.leader_objective, reference=reference,
                        violation=res.constraint_violation, wall_s=res.wall_time_s, total_s=total,
                        bound=res.bound, gap=res.gap, message=res.message.splitlines()[0] if res.message else ""))
        _print_row(out[-1])
    return out


_HEADER = (f"{'instance':22s} {'method':13s} {'status':14s} {'leader obj.':>15s} {'reference':>13s} "
           f"{'rel. err':>9s} {'violation':>9s} {'bound':>13s} {'gap':>8s} {'method s':>9s} {'+score s':>9s}")


def _print_row(r):
    ref = r["reference"]
    rel = (abs(r["objective"] - ref) / max(abs(ref), 1e-12)
           if ref is not None and math.isfinite(r["objective"]) else math.nan)
    ref_s = f"{ref:13.6g}" if ref is not None else f"{'-':>13s}"
    rel_s = f"{rel:9.1e}" if math.isfinite(rel) else f"{'-':>9s}"
    bound_s = f"{r['bound']:13.8g}" if r.get("bound") is not None else f"{'-':>13s}"
    gap_s = f"{r['gap']:8.1e}" if r.get("gap") is not None else f"{'-':>8s}"
    print(f"{r['instance']:22s} {r['method']:13s} {r['status']:14s} {r['objective']:15.8g} {ref_s} "
          f"{rel_s} {r['violation']:9.1e} {bound_s} {gap_s} {r['wall_s']:9.2f} "
          f"{r['total_s'] - r['wall_s']:9.2f}",
          flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(stackopt.available_methods()),
                    help="comma-separated methods (default: every registered method)")
    ap.add_argument("--problems", default=",".join(PROBLEMS),
                    help="comma-separated library problems (default: all)")
    ap.add_argument("--nfg-time-limit", type=float, default=60.0, help="seconds per method on NFG")
    ap.add_argument("--library-time-limit", type=float, default=30.0,
                    help="seconds per method on each library problem")
    ap.add_argument("--skip-nfg", action="store_true", help="library problems only")
    ap.add_argument("--seed", type=int, default=0, help="method seed (the NFG instance seed is 1)")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    problems = [p for p in args.problems.split(",") if p and p != "none"]
    for p in problems:
        if p not in PROBLEMS:
            ap.error(f"unknown library problem {p!r}; expected one of {sorted(PROBLEMS)}")
    for m in methods:
        if m not in stackopt.available_methods():
            ap.error(f"unknown method {m!r}; expected one of {stackopt.available_methods()}")

    print(_HEADER)
    print("-" * len(_HEADER))
    rows = []
    t_start = time.perf_counter()
    if not args.skip_nfg:
        rows += _rows("nfg(3,10) s1 B=2", lambda: build_game("nfg", seed=NFG_SEED, **NFG), methods,
                      args.nfg_time_limit, None, args.seed)
    for p in problems:
        rows += _rows(p, lambda p=p: build_game("library", problem=p), methods,
                      args.library_time_limit, KNOWN_OPTIMA[p].value, args.seed)
    print("-" * len(_HEADER))
    print(f"total {time.perf_counter() - t_start:.1f} s; 'method s' is the method's wall time, "
          "'+score s' the re-evaluation by the common oracle")
    _print_summary(rows, methods)
    _print_equilibria()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1, default=str)
    return 0


def _print_summary(rows, methods):
    """Per method: library problems within tolerance of the published optimum, and total time."""
    tol = {"mpec-ipopt": 1e-4, "mpec-scip": 1e-4, "gradient": 1e-3, "implicit-ipopt": 1e-4,
           "slsqp": 1e-4, "trust-region": 1e-4}
    print()
    print(f"{'method':13s} {'library solved (rel. err <= tol, violation <= 1e-4)':52s} "
          f"{'library s':>10s}")
    for m in methods:
        lib = [r for r in rows if r["method"] == m and r["reference"] is not None]
        if not lib:
            continue
        t = tol.get(m, 1e-4)
        ok = [r for r in lib if math.isfinite(r["objective"])
              and abs(r["objective"] - r["reference"]) <= t * max(abs(r["reference"]), 1e-12)
              and r["violation"] <= 1e-4
              and r["status"] not in ("error", "solver_error", "infeasible", "rejected")
              and (m != "mpec-scip" or r["status"] == "optimal")]  # SCIP: certified only
        print(f"{m:13s} {f'{len(ok)}/{len(lib)} (tol {t:g})':52s} {sum(r['wall_s'] for r in lib):10.2f}")


def _print_equilibria():
    """Every generalized Nash game of ``stackopt.models.gnep``: ``stackopt.equilibrium`` at the
    leader's initial values against the known equilibrium (largest error over the followers'
    values; reproduced where it is at most 1e-6)."""
    from stackopt.models.gnep import KNOWN_EQUILIBRIA

    print()
    print(f"{'generalized Nash game':22s} {'status':10s} {'KKT residual':>12s} {'max error':>10s} "
          f"{'reproduced':>10s} {'s':>6s}  source")
    for name, known in KNOWN_EQUILIBRIA.items():
        t0 = time.perf_counter()
        r = stackopt.equilibrium(build_game("gnep", problem=name), seed=0)
        secs = time.perf_counter() - t0
        err = max(abs(r.follower_values[k] - v) for k, v in known.values.items())
        print(f"{name:22s} {r.status.value:10s} {r.residual:12.1e} {err:10.1e} "
              f"{'yes' if r.converged and err <= 1e-6 else 'NO':>10s} {secs:6.2f}  {known.source[:60]}...")


if __name__ == "__main__":
    sys.exit(main())
