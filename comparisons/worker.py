"""One cell, and the child processes that run cells.

A cell is one method on one instance; an instance is a pure function of
(game, parameters, seed), rebuilt by the worker with
``stackopt.models.build_game`` and fingerprinted (sha256 of ``game.data``) so
the report can prove that every method saw the same numbers.

Cells run in :class:`CellProcess` children: plain ``subprocess`` children (not
``multiprocessing`` ones), so they can be started from anywhere, including a
daemonic Dask worker, and are themselves ordinary processes whose methods may
start processes of their own (SCIP, the black-box baselines' isolated
optimisers). A child imports stackopt and the models once, then runs one cell
at a time sent through a socket; it dies with the thread that started it
(``PR_SET_PDEATHSIG`` on Linux) or when its socket closes.
"""
from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from .config import Cell, import_plugins

PACKAGES = ("stackopt", "pyomo", "numpy", "scipy", "cyipopt", "pyscipopt")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
START_TIMEOUT_S = 300.0  # a child that has not imported stackopt by then is broken


# --------------------------------------------------------------------------- provenance
def fingerprint(game) -> str:
    """sha256 over ``game.data``: sorted keys, each value's dtype, shape and bytes."""
    import numpy as np

    h = hashlib.sha256()
    for key in sorted(game.data):
        arr = np.ascontiguousarray(np.asarray(game.data[key]))
        h.update(key.encode())
        h.update(str(arr.dtype).encode())
        h.update(repr(arr.shape).encode())
        if arr.dtype == object:
            h.update(repr(arr.tolist()).encode())
        else:
            h.update(arr.tobytes())
    return h.hexdigest()


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in PACKAGES:
        names = (pkg, "cyipopt-wheels") if pkg == "cyipopt" else (pkg,)
        out[pkg] = None
        for n in names:
            try:
                out[pkg] = version(n)
                break
            except PackageNotFoundError:
                continue
    return out


def machine_info() -> dict[str, Any]:
    return {"platform": platform.platform(), "machine": platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "host": socket.gethostname()}


_PROVENANCE: dict[str, Any] = {}


def _provenance() -> dict[str, Any]:
    if not _PROVENANCE:
        _PROVENANCE.update(machine=machine_info(), versions=package_versions(),
                           worker=f"{socket.gethostname()}:{os.getpid()}")
    return _PROVENANCE


# --------------------------------------------------------------------------- one cell
def _base_row(cell: Cell) -> dict[str, Any]:
    return dict(experiment=cell.experiment, game=cell.game, params=cell.params_json,
                seed=cell.seed, method=cell.method, options=cell.options_json,
                time_limit=cell.time_limit)


def run_cell(cell: Cell) -> dict[str, Any]:
    """Build the instance, solve it, and return the store row; never raises."""
    from stackopt import solve
    from stackopt.models import build_game

    start = time.time()
    t0 = time.perf_counter()
    row = _base_row(cell)
    row.update(started_at=start, **_provenance())
    try:
        import_plugins(cell.plugins)
        game = build_game(cell.game_ref or cell.game, cell.seed, **dict(cell.params))
        row["fingerprint"] = fingerprint(game)
        row["sense"] = "maximize" if game.structure().leader_sense < 0 else "minimize"
        result = solve(game, cell.method, cell.seed, time_limit=cell.time_limit, progress=False,
                       **dict(cell.scoring), **dict(cell.options))
        d = result.to_dict()
        for k in ("leader_objective", "initial_objective", "constraint_violation",
                  "equilibrium_residual", "wall_time_s", "claimed_objective", "bound", "gap",
                  "message", "leader_values", "follower_values", "history"):
            row[k] = d.get(k)
        row.update(draw_columns(result))
        row["status"] = result.status.value
        row["singular_kkt"] = int(bool(result.singular_kkt))
        row["resolved_options"] = d.get("options")
        if row["status"] in ("error", "solver_error"):
            row["error"] = result.message
    except Exception as exc:  # a broken cell must not stop the sweep
        row["status"] = "error"
        row["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        row["message"] = f"{type(exc).__name__}: {exc}"
    row["finished_at"] = time.time()
    row["cell_time_s"] = time.perf_counter() - t0
    return row


def draw_columns(result) -> dict[str, Any]:
    """The store's columns of what the scoring's draws showed (``storefile.DRAW_COLUMNS``)."""
    low, high = result.objective_interval or (None, None)
    return dict(draws=result.draws, objective_stderr=result.objective_stderr, objective_low=low,
                objective_high=high, worst_violation=result.worst_violation,
                pessimistic=result.pessimistic, optimistic=result.optimistic,
                equilibria=result.equilibria, optimistic_claim=int(bool(result.optimistic_claim)),
                claim_gap=result.claim_gap)


def _killed_row(cell: Cell, started: float, status: str, why: str) -> dict[str, Any]:
    now = time.time()
    row = _base_row(cell)
    row.update(status=status, error=why, message=why, started_at=started, finished_at=now,
               cell_time_s=now - started)
    return row


# --------------------------------------------------------------------------- the child
_BOOT = ("import sys; from multiprocessing.connection import Connection; c = Connection({fd}); "
         "sys.path[:] = c.recv(); from stackopt.comparisons.worker import serve; serve(c)")


def serve(conn: Connection) -> None:  # pragma: no cover - runs in the child
    """The child's main loop, after ``_BOOT`` gave it the parent's ``sys.path`` (as
    multiprocessing's spawn does): "ready" once stackopt is imported, then one row
    per cell received, until None or a closed socket."""
    try:  # die with the parent, even when the parent is SIGKILLed (Linux)
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass
    try:
        if os.getppid() == 1:
            return
        import stackopt.models  # imports before the first cell's clock starts

        stackopt.models.available_games()
        conn.send("ready")
        while True:
            cell = conn.recv()
            if cell is None:
                return
            conn.send(run_cell(cell))
    except (EOFError, OSError, KeyboardInterrupt):
        return


class CellProcess:
    """A child process that runs cells one at a time (see :func:`serve`).

    ``conn`` works with ``multiprocessing.connection.wait``. The child gets
    one BLAS thread unless the environment says otherwise: the workers are
    the parallelism.
    """

    def __init__(self):
        mine, theirs = socket.socketpair()
        env = dict(os.environ)
        for v in _THREAD_VARS:
            env.setdefault(v, "1")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT.format(fd=theirs.fileno())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send(list(sys.path))
        self.ready = False

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the child and reap it; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - unkillable (D state)
            pass
        self.conn.close()

    def stop(self) -> None:
        """Ask an idle child to exit, then make sure it has."""
        try:
            self.conn.send(None)
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


_LOCAL = threading.local()


def run_cell_guarded(cell: Cell) -> dict[str, Any]:
    """Run one cell in this thread's :class:`CellProcess` under the ``kill_after`` guard.

    What a Dask task calls: the guard is enforced where the cell runs, so a
    stuck or dying cell costs its child only, never the Dask worker. Raises
    RuntimeError only if no child can be started.
    """
    child = getattr(_LOCAL, "child", None)
    if child is None or not child.alive():
        child = _LOCAL.child = CellProcess()
    try:
        if not child.ready:
            if not child.conn.poll(START_TIMEOUT_S) or child.conn.recv() != "ready":
                raise EOFError
            child.ready = True
    except (EOFError, OSError):
        code = child.exitcode
        child.kill()
        _LOCAL.child = None
        raise RuntimeError(f"the cell process failed to start (exit code {code})") from None
    started = time.time()
    try:
        child.conn.send(cell)
        if child.conn.poll(cell.kill_after):
            return child.conn.recv()
    except (EOFError, OSError):
        child.kill()
        _LOCAL.child = None
        return _killed_row(cell, started, "error",
                           f"worker process died (exit code {child.exitcode})")
    child.kill()
    _LOCAL.child = None
    return _killed_row(cell, started, "time_limit",
                       f"killed after {cell.kill_after:g} s wall clock on {socket.gethostname()} "
                       f"(time limit {cell.time_limit:g} s plus grace)")


__all__ = ["run_cell", "run_cell_guarded", "CellProcess", "fingerprint", "package_versions",
           "machine_info"]
