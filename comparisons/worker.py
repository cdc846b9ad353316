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

A child keeps the instance it built last (:class:`Instances`): the next cell of
the same instance (another method on the same game, parameters and seed) solves
the same game object, so the game is built and prepared (``kernel_of``: Pyomo's
symbolic derivatives compiled) once per instance, not once per method, and the
scoring's evaluation of the initial strategy is reused. Cells that differ only in
a game's mutable parameters (the security game's budget, see
:func:`stackopt.models.vary`) solve the same game too, given their own values:
a sweep over a budget prepares each seed's game once. Each method still starts
from the model as built: the variables' values and fixed flags and the mutable
Params' values saved after the build are written back before every reuse, and a
model whose structure or bounds a method changed, or a cell that ended in an
error or at its time limit, is built afresh for the next cell. The pool hands a
child the cells of the instance it holds first (:mod:`.pools`).

A child loads stackopt's compiled loops (:mod:`stackopt.expr.loops`) before its first
cell and prepares every game with them (:meth:`stackopt.kernel.GameKernel.compile_loops`):
the same values to the last bit as the NumPy passes a one-off solve of a small game uses,
in less time per solve, the load paid once per child instead of once per solve.
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

from .config import Cell, canonical_json, import_plugins

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


def instance_key(cell: Cell) -> tuple:
    """What a cell's game is built from (``build_game``'s arguments and the plugins that
    register its game) but its mutable parameters (:func:`stackopt.models.vary`): cells with
    the same key solve the same built and prepared game, with their own mutable values."""
    return _instance_key(cell, _split_params(cell)[0])


def _instance_key(cell: Cell, fixed: dict) -> tuple:
    return (cell.game_ref or cell.game, canonical_json(fixed), cell.seed, cell.plugins)


def _split_params(cell: Cell) -> tuple[dict, dict]:
    """The cell's parameters that shape its game's model, and its mutable ones."""
    from stackopt.models import mutable_params

    try:  # a game that does not load has none: its cell reports why when it builds it
        import_plugins(cell.plugins)
        mutable = mutable_params(cell.game_ref or cell.game)
    except (ImportError, ValueError):
        mutable = frozenset()
    params = dict(cell.params)
    return ({k: v for k, v in params.items() if k not in mutable},
            {k: v for k, v in params.items() if k in mutable})


class ModelState:
    """A Pyomo model's values (variables' values and fixed flags, mutable Params' values) and
    its structure (its components and their active flags, the objectives' and constraints'
    expressions, the variables' bounds), as read when the instance was built."""

    def __init__(self, model):
        import pyomo.core as pyo

        self.model = model
        self.variables = list(model.component_data_objects(pyo.Var, descend_into=True))
        self.params = [p for p in model.component_data_objects(pyo.Param, descend_into=True)
                       if p.parent_component().mutable]
        self.values = [(v.value, v.fixed) for v in self.variables]
        self.param_values = [p.value for p in self.params]
        self.structure = self._structure()

    def _structure(self) -> tuple:
        import pyomo.core as pyo

        model = self.model
        components = list(model.component_objects(descend_into=True))
        data = [c for kind in (pyo.Objective, pyo.Constraint, pyo.Block)
                for c in model.component_data_objects(kind, descend_into=True)]
        return (tuple((id(c), getattr(c, "active", None)) for c in components),
                tuple((id(c), c.active, id(getattr(c, "expr", None))) for c in data),
                tuple((id(v), v.lb, v.ub) for v in self.variables))

    def restore(self) -> bool:
        """Write the saved values back; False where the structure or a bound changed since
        (then only a fresh build gives the model as built)."""
        for p, val in zip(self.params, self.param_values):
            if p.value != val:
                p.set_value(val)
        for v, (val, fixed) in zip(self.variables, self.values):
            if v.value != val:
                v.set_value(val, skip_validation=True)
            if v.fixed != fixed:
                v.fixed = fixed
        return self._structure() == self.structure


def _compiled_loops(game) -> None:
    """The game prepared with its programs as compiled loops (a cell process solves many
    games and has loaded the loops before its first cell, see :func:`serve`); a game that
    cannot be prepared is left to the solve, which reports why."""
    from stackopt.kernel import kernel_of

    try:
        kernel_of(game).compile_loops()
    except Exception:
        pass


class Instances:
    """The instance a cell process built last, kept for the next cell of the same instance
    (see the module doc). ``game_for(cell)`` returns the game and its fingerprint;
    ``finished(row)`` keeps it for the next cell unless the row's status says the method
    may have left it in any state (an error, the time limit)."""

    def __init__(self):
        self.key: tuple | None = None
        self.mutable: dict = {}  # the game's mutable parameters' values now
        self.game = None
        self.fingerprint = ""
        self.state: ModelState | None = None
        self.built = 0  # games built, for the tests and the logs

    def game_for(self, cell: Cell):
        from stackopt.models import build_game, vary

        fixed, mutable = _split_params(cell)
        key = _instance_key(cell, fixed)
        name = cell.game_ref or cell.game
        if self.key == key and self.state is not None and self.state.restore():
            vary(self.game, name, **mutable)  # restore() wrote the built values back
            if mutable != self.mutable:
                self.mutable, self.fingerprint = mutable, fingerprint(self.game)
            return self.game, self.fingerprint
        self.drop()
        game = build_game(name, cell.seed, **dict(cell.params))
        self.built += 1
        _compiled_loops(game)
        self.key, self.game, self.fingerprint = key, game, fingerprint(game)
        self.mutable = mutable
        self.state = ModelState(game.model)
        return self.game, self.fingerprint

    def finished(self, row: dict[str, Any]) -> None:
        if row.get("status") in ("error", "solver_error", "time_limit"):
            self.drop()

    def drop(self) -> None:
        self.key, self.game, self.fingerprint, self.state = None, None, "", None


def run_cell(cell: Cell, instances: Instances | None = None) -> dict[str, Any]:
    """Build the instance (or take it from ``instances``, which keeps it for the next cell),
    solve it, and return the store row; never raises."""
    from stackopt import solve

    start = time.time()
    t0 = time.perf_counter()
    row = _base_row(cell)
    row.update(started_at=start, **_provenance())
    instances = instances if instances is not None else Instances()
    try:
        import_plugins(cell.plugins)
        game, row["fingerprint"] = instances.game_for(cell)
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
    instances.finished(row)
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
        from stackopt.expr import warm

        stackopt.models.available_games()
        warm()  # the compiled loops every game's programs use here (_compiled_loops), loaded once
        conn.send("ready")
        instances = Instances()
        while True:
            cell = conn.recv()
            if cell is None:
                return
            conn.send(run_cell(cell, instances))
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


__all__ = ["run_cell", "run_cell_guarded", "CellProcess", "Instances", "ModelState",
           "instance_key", "fingerprint", "package_versions", "machine_info"]
