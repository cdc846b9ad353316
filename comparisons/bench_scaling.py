"""Benchmark: how stackopt's costs grow with the game, beside the reference's published runtimes.

One table per domain (NFG with 2 players, m in {20, 50, 100, 200}, and 3
players, m in {10, 20}; security games with T in {20, 50, 100, 200} targets, 5
defenders, T // 2 coverable targets each; cyber insurance with n in {5, 10,
20, 50} customers). Columns:

* ``prep s``: preparing the game (``kernel_of``: Pyomo's symbolic derivatives
  and their compilation), once per game;
* ``cold ms``: one equilibrium from a seeded random start at the initial
  leader strategy (median of ``--cold`` draws);
* ``warm ms``: one gradient step as the gradient method takes it (warm
  equilibrium from the previous one, the adjoint gradient of the leader's
  objective and constraints, a sign step of the game's learning rate,
  projected on the leader's bounds), median of ``--steps`` steps
  (``--steps-large`` at the largest size of each domain);
* ``cold/warm``: the cold equilibrium in warm steps; ``dyn``: the followers'
  dynamics steps in it (gradient-play steps or best-response sweeps, median),
  which select the equilibrium and bound the cold start from below;
* ``peak MiB``: peak memory traced (``tracemalloc``) over one cold solve and
  three warm steps; ``rss MiB``: the process's peak resident size so far;
* ``ref s/step``: the reference implementation's mean time per gradient step
  (forward + backward) from its published runtime CSVs, and ``ref/warm``.

A last table counts the oracle's solves (cold starts and warm solves) that
each method and the scoring of its answer performed (``Result.oracle_solves``),
at the smallest size of each domain, every method with its defaults and a
time limit of ``--work-limit`` seconds.

Reference numbers: github guaguakai/equilibrium_gradient at commit 68a09ee,
files ``{qre,ssg,cyber}/exp/runtime/{A,N}<size>_constrained_diffmulti.csv``,
columns ``forward`` and ``backward`` (seconds over 100 gradient steps; the
files' own ``process.py`` divides their means by 100, as here). The NFG files
are for 2 players (``qre``), SSG for 5 defenders; only sizes the files cover
get a ratio.

BLAS runs on one thread unless ``--blas-threads`` says otherwise: on two
shared cores multi-threaded LAPACK factorised a 250 x 250 matrix 17-40 times
slower than one thread did. The benchmark restarts itself with
``OPENBLAS_NUM_THREADS`` (and the OpenMP/MKL equivalents) set, and stops
starting new sizes once ``--budget`` minutes are spent (those rows say so).

    python -m stackopt.comparisons.bench_scaling [--steps 7] [--cold 3] [--budget 15] [--work-limit 20]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# mean seconds per step (forward + backward) from the runtime CSVs named in the docstring
REFERENCE = {
    "nfg2": {20: 0.4443, 40: 0.6238, 60: 1.069, 80: 1.491, 100: 2.429, 120: 3.383, 140: 5.806,
             160: 9.045, 180: 13.93, 200: 19.40},
    "ssg": {20: 1.397, 40: 2.113, 60: 3.901, 80: 6.592, 100: 10.02, 120: 16.46, 140: 24.76,
            160: 35.04, 180: 52.08, 200: 71.46},
    "cyber": {2: 0.1702, 4: 0.4222, 6: 0.7329, 8: 1.147, 10: 1.650, 12: 18.16, 14: 49.59,
              16: 159.9, 18: 322.9, 20: 394.6},
}

DOMAINS = [
    ("NFG, 2 players (m actions each)", "nfg2", [20, 50, 100, 200]),
    ("NFG, 3 players (m actions each)", "nfg3", [10, 20]),
    ("Security game, 5 defenders (T targets, T // 2 coverable each)", "ssg", [20, 50, 100, 200]),
    ("Cyber insurance (n customers)", "cyber", [5, 10, 20, 50]),
]


def _build(domain: str, size: int):
    from stackopt.models import build_game
    if domain == "nfg2":
        return build_game("nfg", seed=0, players=2, actions=size, budget=1.0)
    if domain == "nfg3":
        return build_game("nfg", seed=0, players=3, actions=size, budget=1.0)
    if domain == "ssg":
        return build_game("ssg", seed=0, targets=size, defenders=5, coverable=size // 2)
    return build_game("cyber", seed=1, customers=size, risk_aversion=0.5)


def _data_size(domain: str, size: int) -> int:
    """Entries of the game's data: payoff tensors, targets x defenders, the n x n interconnection."""
    return {"nfg2": 2 * size ** 2, "nfg3": 3 * size ** 3, "ssg": 5 * size}.get(domain, size * size)


class _Stepper:
    """The gradient method's step: warm equilibrium, adjoint gradient, sign step of ``lr``."""

    def __init__(self, game, kernel, oracle, lr: float):
        import numpy as np
        self.np, self.k, self.oracle, self.lr = np, kernel, oracle, lr
        self.weights = np.concatenate([[float(kernel.leader_sense)], np.ones(kernel.n_c)])

    def step(self, p, eq):
        from stackopt.oracle import leader_gradients
        k, np = self.k, self.np
        e = self.oracle.solve(p, warm=eq, fallback=False)
        if not e.converged:
            e = self.oracle.solve(p, x0=eq.x, rng=0)
        g = leader_gradients(k, e, self.weights, k.leader_all(e.x, p))[2]
        return k.project_leader(p - self.lr * np.sign(g)), e


def _row(domain: str, size: int, args) -> dict:
    import numpy as np

    from stackopt.kernel import kernel_of
    from stackopt.oracle import EquilibriumOracle
    game = _build(domain, size)
    t0 = time.perf_counter()
    k = kernel_of(game)
    prep = time.perf_counter() - t0
    oracle = EquilibriumOracle(k)
    colds, dyn, eq, n_ok = [], [], None, 0
    for s in range(args.cold):
        t0 = time.perf_counter()
        e = oracle.solve(k.p0, rng=np.random.default_rng([0, s]))
        colds.append(time.perf_counter() - t0)
        dyn.append(e.relaxation_iterations)
        n_ok += e.converged
        eq = e if eq is None and e.converged else eq
    lr = float(game.method_options.get("gradient", {}).get("lr", 1e-2))
    stepper = _Stepper(game, k, oracle, lr)
    n_steps = args.steps
    p, warm = k.p0.copy(), []
    if eq is not None:
        p, eq = stepper.step(p, eq)  # the first step linearises the cold equilibrium
        for _ in range(n_steps):
            t0 = time.perf_counter()
            p, eq = stepper.step(p, eq)
            warm.append(time.perf_counter() - t0)
    tracemalloc.start()
    e = oracle.solve(k.p0, rng=np.random.default_rng([1, 0]))
    q = k.p0.copy()
    for _ in range(3 if e.converged else 0):
        q, e = stepper.step(q, e)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    cold, step = float(np.median(colds)), (float(np.median(warm)) if warm else float("nan"))
    ref = REFERENCE.get(domain if domain != "nfg3" else "", {}).get(size)
    return dict(size=size, n_cold=len(colds), prep=prep, cold=cold, dyn=float(np.median(dyn)), warm=step,
                steps=len(warm), peak=peak / 2 ** 20,
                rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, ref=ref,
                cold_ok=n_ok, counters=oracle.counters.as_dict())


def len_cold(r) -> int:
    return r["n_cold"]


def _print_table(title, domain, rows):
    print(f"\n{title}")
    print(f"{'size':>6s}{'prep s':>9s}{'cold ms':>10s}{'conv':>6s}{'warm ms':>10s}{'steps':>7s}"
          f"{'cold/warm':>11s}{'dyn':>6s}{'peak MiB':>10s}{'rss MiB':>9s}{'ref s/step':>12s}{'ref/warm':>10s}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['size']:>6d}  skipped: {r['skipped']}")
            continue
        ref = f"{r['ref']:12.3f}" if r["ref"] else f"{'-':>12s}"
        ratio = f"{r['ref'] / r['warm']:10.0f}" if r["ref"] else f"{'-':>10s}"
        print(f"{r['size']:>6d}{r['prep']:9.2f}{1e3 * r['cold']:10.1f}{r['cold_ok']:>4d}/{len_cold(r)}"
              f"{1e3 * r['warm']:10.2f}{r['steps']:7d}"
              f"{r['cold'] / r['warm']:11.1f}{r['dyn']:6.0f}{r['peak']:10.1f}{r['rss']:9.0f}{ref}{ratio}")
    done = [r for r in rows if "skipped" not in r]
    if len(done) >= 2:
        a, b = done[0], done[-1]
        print(f"growth {a['size']} -> {b['size']}: warm step x{b['warm'] / a['warm']:.1f}, cold x"
              f"{b['cold'] / a['cold']:.1f}, game data "
              f"x{_data_size(domain, b['size']) / _data_size(domain, a['size']):.0f}")


WORK_METHODS = ("gradient", "implicit-ipopt", "slsqp", "mpec-ipopt")


def _print_work(args) -> None:
    """Each method's oracle solves (cold starts, warm solves) and the scoring's, at the
    smallest size of each domain, every method with its defaults and ``--work-limit`` s."""
    from stackopt import solve
    print(f"\nOracle solves per method at the smallest sizes (defaults, time limit {args.work_limit:g} s): "
          "cold starts / warm solves")
    print(f"{'game':>10s}{'method':>16s}{'status':>16s}{'time s':>8s}{'method':>14s}{'scoring':>10s}")
    for _, domain, sizes in DOMAINS:
        if domain not in args.domains or domain == "nfg3":
            continue
        for method in WORK_METHODS:
            r = solve(_build(domain, sizes[0]), method, seed=0, time_limit=args.work_limit)
            m, s = r.oracle_solves["method"], r.oracle_solves["scoring"]
            print(f"{f'{domain} {sizes[0]}':>10s}{method:>16s}{r.status.value:>16s}{r.wall_time_s:8.1f}"
                  f"{m['cold_starts']:>7d} / {m['warm_solves']:<5d}{s['cold_starts']:>5d} / {s['warm_solves']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=7, help="warm steps timed per size")
    ap.add_argument("--steps-large", type=int, default=3, help="warm steps timed at each domain's largest size")
    ap.add_argument("--cold", type=int, default=3, help="cold equilibria timed per size")
    ap.add_argument("--budget", type=float, default=15.0, help="minutes after which no new size starts")
    ap.add_argument("--blas-threads", type=int, default=1, help="BLAS threads (0: leave as the environment says)")
    ap.add_argument("--work-limit", type=float, default=20.0, help="seconds per method of the oracle-solves "
                    "table (0: no table)")
    ap.add_argument("--domains", nargs="*", default=[d for _, d, _ in DOMAINS], help="subset of nfg2 nfg3 ssg cyber")
    args = ap.parse_args(argv)
    if args.blas_threads and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.blas_threads):
        env = dict(os.environ, **{v: str(args.blas_threads) for v in _THREAD_VARS})
        os.execve(sys.executable, [sys.executable, "-m", "stackopt.comparisons.bench_scaling"]
                  + (sys.argv[1:] if argv is None else list(argv)), env)
    start = time.perf_counter()
    print(f"stackopt scaling benchmark: {args.steps} warm steps ({args.steps_large} at the largest size "
          f"of a domain), {args.cold} cold equilibria per size; BLAS threads: "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; budget {args.budget:g} min")
    for title, domain, sizes in DOMAINS:
        if domain not in args.domains:
            continue
        rows = []
        for size in sizes:
            spent = (time.perf_counter() - start) / 60
            done = [r for r in rows if "skipped" not in r]
            # preparation grows about linearly with the expressions: predict it from the last size
            guess = (done[-1]["prep"] * _data_size(domain, size) / _data_size(domain, done[-1]["size"]) / 60
                     if done else 0.0)
            if spent + guess > args.budget:
                rows.append(dict(size=size, skipped=f"budget of {args.budget:g} min: {spent:.1f} min spent, "
                                                    f"preparation alone predicted ~{guess:.0f} min"))
                continue
            largest = size == sizes[-1]
            steps = args.steps
            args.steps = args.steps_large if largest else steps
            try:
                rows.append(_row(domain, size, args))
            finally:
                args.steps = steps
        _print_table(title, domain, rows)
    if args.work_limit > 0:
        _print_work(args)
    print(f"\ntotal {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
