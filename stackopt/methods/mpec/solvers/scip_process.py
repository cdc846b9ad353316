"""The SCIP process: read a job, solve its .nl file with SCIP, write the result as JSON.

Run as a script by :mod:`stackopt.methods.mpec.solvers.scip` (never imported by the
parent, and it imports nothing of stackopt, so it starts in a fraction of a
second)::

    python .../stackopt/methods/mpec/solvers/scip_process.py job.json result.json

``job.json``: ``{"nl": path of the .nl file (its .col file beside it names
the columns), "columns": number of columns, "time_limit": seconds,
"params": {SCIP parameter: value}}``. ``result.json``: ``{"status": SCIP's
status name, "x": values in column order or null, "objective", "bound",
"gap", "solving_time", "nodes"}`` (non-finite numbers as null), or ``{"error": message}``. The result
file is written whole (to a temporary name, then renamed). The process exits
when its parent does.
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


def solve(job: dict) -> dict:
    import pyscipopt

    model = pyscipopt.Model()
    model.hideOutput()
    model.setParam("display/verblevel", 0)
    model.readProblem(job["nl"])
    model.setParam("limits/time", float(job["time_limit"]))
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
    job_path, result_path = argv
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    with open(job_path) as fh:
        job = json.load(fh)
    try:
        out = solve(job)
    except Exception as exc:  # reported to the parent, which gives a status
        out = {"error": f"{type(exc).__name__}: {exc}"}
    tmp = result_path + ".part"
    with open(tmp, "w") as fh:
        json.dump(out, fh)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this folder holds stackopt's modules, not top-level ones
    sys.exit(main(sys.argv[1:]))
