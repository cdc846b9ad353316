"""A comparison sweep on a Dask cluster: here a local one, the same code for a remote one.

Runs the head-to-head config of the commons game (``compare_my_game.toml``) on a
``distributed.LocalCluster`` and stores every cell in a results database. On a
real cluster, start ``dask scheduler`` and ``dask worker tcp://HOST:PORT`` on
each machine and run ``stackopt compare CONFIG --scheduler tcp://HOST:PORT``, or
pass that address as ``scheduler=`` below. Run it:

    python examples/dask_sweep.py --db dask.sqlite
"""
import argparse
import sys
from pathlib import Path

from distributed import LocalCluster

from stackopt.comparisons.config import load_config
from stackopt.comparisons.runner import run_sweep
from stackopt.comparisons.store import Store

CONFIG = Path(__file__).with_name("compare_my_game.toml")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="dask.sqlite", help="results database (default dask.sqlite)")
    ap.add_argument("--seeds", default=None, help='seeds, e.g. "1-2" (default: the config\'s)')
    ap.add_argument("--methods", default=None, help="methods, e.g. gradient,initial (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="worker threads (one cell each)")
    args = ap.parse_args(argv)
    config = load_config(str(CONFIG), seeds=args.seeds,
                         methods=args.methods.split(",") if args.methods else None)
    # processes=True: each Dask worker is a process of its own; every cell runs in a child of it
    with LocalCluster(n_workers=1, threads_per_worker=args.threads, processes=True,
                      dashboard_address=None) as cluster, Store.open(args.db) as store:
        summary = run_sweep(config, store, scheduler=cluster.scheduler_address, progress=False,
                            argv=sys.argv)
    print(summary.line())
    print(f"results in {args.db}; next: python examples/analyse_results.py {args.db}")
    return 0 if summary.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
