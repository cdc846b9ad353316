"""The SCIP process: read a job, solve its .nl file with SCIP, write the result as JSON.

Run as a script by :mod:`stackopt.methods.mpec.solvers.scip` (never imported by the
parent, and it imports nothing of stackopt, so it starts in a fraction of a
second)::

    python .../stackopt/methods/mpec/solvers/scip_process.py job.json result.json

``job.json``: ``{"nl": path of the .nl file (its .col file beside it names
the columns), "columns": number of columns, "time_limit": seconds from the
process's start, "params": {SCIP parameter: value}, "memory_limit_mb": MiB
of address space or null}``. ``result.json``: ``{"status": SCIP's status
name, "x": values in column order or null, "objective", "bound", "gap",
"solving_time", "nodes", "address_space_limit"}`` (non-finite numbers as
null), or ``{"error": message, "address_space_limit"}``. The address space
is limited (``RLIMIT_AS``) before SCIP is loaded, so an allocation beyond it
fails inside SCIP (a ``MemoryError`` here) instead of growing without bound.
SCIP's time limit is what is left of ``time_limit`` once the model is read.
The result file is written whole (to a temporary name, then renamed). The
process exits when its parent does.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time

SCIP_INFINITY = 1e20


def _finite(val):
    val = float(val)
    return val if math.isfinite(val) and abs(val) < SCIP_INFINITY else None


def limit_memory(megabytes) -> int | None:
    """Cap this process's address space at ``megabytes`` MiB (None: leave it); returns the
    limit in force in bytes (None where unlimited or the platform has no such limit)."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return None
    if megabytes is not None:
        cap = int(float(megabytes) * 2 ** 20)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def solve(job: dict, started: float) -> dict:
    import pyscipopt

    model = pyscipopt.Model()
    model.hideOutput()
    model.setParam("display/verblevel", 0)
    model.readProblem(job["nl"])
    model.setParam("limits/time", max(float(job["time_limit"]) - (time.monotonic() - started), 0.0))
    for key, val in job.get("params", {}).items():
        model.setParam(key, val)
    with open(os.path.splitext(job["nl"])[0] + ".col") as fh:
        names = fh.read().splitlines()
    column = {name: j for j, name in enumerate(names[: job["columns"]])}
    model.optimize()
    out = {"status": model.getStatus(), "x": None, "objective": None, "gap": None,
           "bound": _finite(model.getDualbound()), "solving_time": model.getSolvingTime(),
           "nodes": model.getNTotalNodes()}
    if model.getNSols() > 0:
        sol = model.getBestSol()
        x = [None] * job["columns"]
        for var in model.getVars():
            j = column.get(var.name)
            if j is not None:
                x[j] = float(model.getSolVal(sol, var))
        out.update(x=x, objective=_finite(model.getSolObjVal(sol)), gap=_finite(model.getGap()))
    return out


def _exit_with_parent(parent: int) -> None:
    """Exit as soon as the parent is gone (SCIP's own time limit is the other guard)."""
    while True:
        if os.getppid() != parent:
            os._exit(4)
        time.sleep(0.5)


def main(argv) -> int:
    started = time.monotonic()
    job_path, result_path = argv
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    with open(job_path) as fh:
        job = json.load(fh)
    cap = limit_memory(job.get("memory_limit_mb"))
    try:
        out = solve(job, started)
    except Exception as exc:  # reported to the parent, which gives a status
        out = {"error": f"{type(exc).__name__}: {exc}"}
    out["address_space_limit"] = cap
    tmp = result_path + ".part"
    with open(tmp, "w") as fh:
        json.dump(out, fh)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this folder holds stackopt's modules, not top-level ones
    sys.exit(main(sys.argv[1:]))
