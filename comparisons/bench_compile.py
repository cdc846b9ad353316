"""Benchmark: preparing a game's kernel (symbolic derivatives + compilation) as games grow.

For each domain and size the game is built, then ``kernel_of(game)`` is timed:
validation of the game's structure, Pyomo's symbolic derivatives of the
followers' objectives (gradients and their Jacobians) and of the leader's
objective and constraints, and their lowering to flat NumPy programs. Every
size runs in a fresh child process, so its peak memory (``ru_maxrss``) is its
own; "kernel MiB" is the growth of the resident set during ``kernel_of``.

Expression size is the number of distinct nodes of the Pyomo expression DAG
that is compiled (follower objectives, leader objective and constraint
bodies, named expressions entered once); "terms" counts the monomials of all
compiled programs (values and derivatives: the size of what is produced, which
grows faster than the source where Jacobians are dense, as in security games).
"prep s" is wall time, "cpu s" the process's CPU time over the same span (the
figure to compare on a shared, loaded machine). Growth columns compare each
size with the previous one: "time x" the ratio of preparation CPU times,
"nodes x" and "terms x" the ratios of the two sizes, and "exp n", "exp t" the
exponents log(time x) / log(size x) against each (1 is linear).

    python -m stackopt.comparisons.bench_compile [--domains nfg,ssg,cyber] [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

SIZES = {
    "nfg": (20, 50, 100, 200),
    "ssg": (20, 50, 100, 200),
    "cyber": (5, 10, 20, 50),
}
QUICK = {"nfg": (10, 20, 40), "ssg": (10, 20, 40), "cyber": (5, 10, 20)}
LABEL = {"nfg": "NFG, 2 players, m actions", "ssg": "security game, T targets, 5 defenders",
         "cyber": "cyber insurance, n customers"}


def build(domain: str, size: int):
    from stackopt.models import build_game

    if domain == "nfg":
        return build_game("nfg", players=2, actions=size)
    if domain == "ssg":
        return build_game("ssg", targets=size, defenders=5, coverable=size // 2)
    if domain == "cyber":
        return build_game("cyber", customers=size)
    raise ValueError(f"unknown domain {domain!r}; expected one of {sorted(SIZES)}")


def expression_size(game) -> int:
    """Distinct nodes of the compiled expressions' DAG (named expressions entered once)."""
    from pyomo.core.expr.numvalue import native_numeric_types

    s = game.structure()
    roots = [s.leader_objective] + [c.body for c in s.leader_constraints]
    roots += [f.objective for f in s.followers]
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.__class__ in native_numeric_types or id(node) in seen:
            continue
        seen.add(id(node))
        if not node.is_expression_type():
            continue
        stack.extend([node.expr] if node.is_named_expression_type() else node.args)
    return len(seen)


def compiled_terms(kernel) -> int:
    """Monomials of every compiled program the kernel holds."""
    return sum(int(getattr(v, "n_terms", 0) or getattr(getattr(v, "program", None), "n_terms", 0))
               for v in vars(kernel).values()
               if hasattr(v, "n_terms") or hasattr(v, "program"))


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(domain: str, size: int) -> dict:
    """One size, in this process: build, then time ``kernel_of``."""
    from stackopt.kernel import kernel_of

    t0 = time.perf_counter()
    game = build(domain, size)
    t_build = time.perf_counter() - t0
    nodes = expression_size(game)
    rss0 = _rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    kernel = kernel_of(game)
    t_prep, c_prep = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"domain": domain, "size": size, "build_s": t_build, "prep_s": t_prep, "cpu_s": c_prep,
            "nodes": nodes, "terms": compiled_terms(kernel), "peak_mib": peak,
            "kernel_mib": max(0.0, peak - rss0), "n_x": kernel.n_x, "n_p": kernel.n_p}


def _child(domain: str, size: int) -> dict:
    cmd = [sys.executable, "-m", "stackopt.comparisons.bench_compile", "--one", domain, str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"domain": domain, "size": size, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    head = (f"{'size':>6s}{'n_x':>7s}{'n_p':>8s}{'nodes':>10s}{'terms':>10s}{'build s':>9s}"
            f"{'prep s':>9s}{'cpu s':>8s}{'peak MiB':>10s}{'kernel MiB':>11s}"
            f"{'time x':>8s}{'nodes x':>8s}{'terms x':>8s}{'exp n':>7s}{'exp t':>7s}")
    lines = [head]
    prev = None
    for r in rows:
        if "error" in r:
            lines.append(f"{r['size']:>6d}  failed: {r['error']}")
            continue
        growth = ""
        if prev is not None:
            tx = r["cpu_s"] / prev["cpu_s"]
            nx, mx = r["nodes"] / prev["nodes"], r["terms"] / prev["terms"]
            growth = (f"{tx:8.2f}{nx:8.2f}{mx:8.2f}"
                      f"{math.log(tx) / math.log(nx):7.2f}{math.log(tx) / math.log(mx):7.2f}")
        lines.append(f"{r['size']:>6d}{r['n_x']:>7d}{r['n_p']:>8d}{r['nodes']:>10d}{r['terms']:>10d}"
                     f"{r['build_s']:9.2f}{r['prep_s']:9.2f}{r['cpu_s']:8.2f}{r['peak_mib']:10.0f}"
                     f"{r['kernel_mib']:11.0f}{growth}")
        prev = r
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default="nfg,ssg,cyber", help="comma-separated: nfg, ssg, cyber")
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    ap.add_argument("--sizes", default=None, help="comma-separated sizes for every domain given")
    ap.add_argument("--one", nargs=2, metavar=("DOMAIN", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return 0
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    for d in domains:
        if d not in SIZES:
            raise ValueError(f"unknown domain {d!r}; expected one of {sorted(SIZES)}")
    for d in domains:
        sizes = (tuple(int(s) for s in args.sizes.split(",")) if args.sizes
                 else (QUICK if args.quick else SIZES)[d])
        rows = []
        print(f"\n{LABEL[d]}", flush=True)
        for s in sizes:
            rows.append(_child(d, s))
            print(table(rows).splitlines()[-1] if len(rows) > 1 else table(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
