"""Running a sweep: every cell of a config, in a local process pool or on a Dask cluster.

A cell is one method on one instance; an instance is a pure function of
(game, parameters, seed), rebuilt by the worker with
``stackopt.models.build_game`` and fingerprinted (sha256 of ``game.data``) so
the report can prove that every method saw the same numbers. Only the parent
process writes to the store, one transaction per finished cell.

Every cell has a hard wall-clock guard (``time_limit`` plus the config's
``kill_grace``): a cell that overruns it is killed and stored with status
``time_limit``; a worker that dies is replaced and its cell stored with status
``error``. The sweep always goes on.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait as mp_wait
from typing import Any, Iterator

from .config import Cell, Config, canonical_json, import_plugins
from .store import Store

FAILED = ("error", "solver_error", "time_limit")
PACKAGES = ("stackopt", "pyomo", "numpy", "scipy", "cyipopt", "pyscipopt")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


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
        game = build_game(cell.game, cell.seed, **dict(cell.params))
        row["fingerprint"] = fingerprint(game)
        row["sense"] = "maximize" if game.structure().leader_sense < 0 else "minimize"
        result = solve(game, cell.method, cell.seed, time_limit=cell.time_limit,
                       **dict(cell.options))
        d = result.to_dict()
        for k in ("leader_objective", "initial_objective", "constraint_violation",
                  "equilibrium_residual", "wall_time_s", "claimed_objective", "bound", "gap",
                  "message", "leader_values", "follower_values", "history"):
            row[k] = d.get(k)
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


def _killed_row(cell: Cell, started: float, status: str, why: str) -> dict[str, Any]:
    now = time.time()
    row = _base_row(cell)
    row.update(status=status, error=why, message=why, started_at=started, finished_at=now,
               cell_time_s=now - started)
    return row


# --------------------------------------------------------------------------- local pool
def _worker_main(conn) -> None:  # pragma: no cover - runs in the child
    try:  # die with the parent, even when the parent is SIGKILLed (Linux)
        import ctypes
        import signal
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
        if os.getppid() == 1:
            return
    except Exception:
        pass
    import stackopt.models  # imports before the first cell's clock starts

    stackopt.models.available_games()
    conn.send("ready")
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError):
            return
        if cell is None:
            return
        conn.send(run_cell(cell))


@dataclass
class _Slot:
    proc: Any
    conn: Any
    ready: bool = False
    cell: Cell | None = None
    started: float = 0.0
    deadline: float = 0.0


class LocalPool:
    """``n`` spawned worker processes, each fed one cell at a time through a pipe.

    A worker imports stackopt and the models before it takes its first cell.
    A cell that overruns its ``kill_after`` guard gets its worker killed
    (SIGKILL) and a fresh worker started in its place.
    """

    max_start_failures = 3

    def __init__(self, workers: int = 2):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.n = workers
        self.ctx = mp.get_context("spawn")
        self.slots: list[_Slot] = []
        self._start_failures = 0

    def describe(self) -> str:
        return f"local process pool, {self.n} workers"

    def _spawn(self) -> _Slot:
        parent, child = self.ctx.Pipe()
        saved = {v: os.environ.get(v) for v in _THREAD_VARS}
        for v in _THREAD_VARS:  # one BLAS thread per worker: workers are the parallelism
            os.environ.setdefault(v, "1")
        try:
            # not daemonic: methods may start processes of their own (SCIP and the
            # black-box baselines isolate their solvers); the worker dies with the
            # parent through PR_SET_PDEATHSIG and is killed on every exit path
            proc = self.ctx.Process(target=_worker_main, args=(child,), daemon=False,
                                    name="stackopt-cell")
            proc.start()
        finally:
            for v, val in saved.items():
                if val is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = val
        child.close()
        return _Slot(proc, parent)

    def _retire(self, slot: _Slot) -> None:
        if slot.proc.is_alive():
            slot.proc.kill()
        slot.proc.join(timeout=10)
        slot.conn.close()

    def run(self, cells: list[Cell]) -> Iterator[tuple[Cell, dict]]:
        pending = list(reversed(cells))
        try:
            self.slots = [self._spawn() for _ in range(min(self.n, len(cells)))]
            while pending or any(s.cell is not None for s in self.slots):
                for s in self.slots:
                    if s.ready and s.cell is None and pending:
                        cell = pending.pop()
                        s.cell, s.started = cell, time.time()
                        s.deadline = s.started + cell.kill_after
                        s.conn.send(cell)
                busy = [s for s in self.slots if s.cell is not None]
                timeout = min([s.deadline for s in busy], default=time.time() + 5.0) - time.time()
                ready = mp_wait([s.conn for s in self.slots if s.cell is not None or not s.ready],
                                timeout=min(max(0.0, timeout), 5.0))
                for i, s in enumerate(self.slots):
                    if s.cell is None and s.ready:
                        continue
                    cell = s.cell
                    if s.conn in ready:
                        try:
                            msg = s.conn.recv()
                        except (EOFError, OSError):
                            s.proc.join(timeout=5)
                            code = s.proc.exitcode
                            self._retire(s)
                            if cell is None:  # died while starting
                                self._start_failures += 1
                                if self._start_failures >= self.max_start_failures:
                                    raise RuntimeError(
                                        f"worker processes fail to start (exit code {code})") from None
                            self.slots[i] = self._spawn()
                            if cell is not None:
                                yield cell, _killed_row(cell, s.started, "error",
                                                        f"worker process died (exit code {code})")
                            continue
                        if msg == "ready":
                            s.ready = True
                            continue
                        s.cell = None
                        yield cell, msg
                    elif cell is not None and time.time() > s.deadline:
                        self._retire(s)
                        self.slots[i] = self._spawn()
                        yield cell, _killed_row(
                            cell, s.started, "time_limit",
                            f"killed after {cell.kill_after:g} s wall clock "
                            f"(time limit {cell.time_limit:g} s plus grace)")
        finally:
            for s in self.slots:
                try:
                    if s.cell is None and s.proc.is_alive():
                        s.conn.send(None)
                except OSError:
                    pass
            for s in self.slots:
                s.proc.join(timeout=2)
                self._retire(s)
            self.slots = []


# --------------------------------------------------------------------------- dask
def _is_daemon() -> bool:  # runs on each Dask worker
    return bool(mp.current_process().daemon)


def _executing_keys(dask_worker) -> list[str]:  # runs on each Dask worker
    return [str(ts.key) for ts in getattr(dask_worker.state, "executing", ())]


class DaskPool:
    """Cells as tasks on a ``distributed`` cluster at ``address`` (or a given Client).

    The guard: the client polls which task each worker is executing; a cell
    that overruns its ``kill_after`` is cancelled and its worker restarted
    through the nanny. A cell whose worker died (the scheduler reports
    ``KilledWorker``; it may have been a bystander queued on a worker that
    another cell killed or the guard restarted) is resubmitted up to
    ``resubmit`` times, then stored with status ``error``.
    """

    def __init__(self, address=None, *, client=None, poll: float = 1.0, resubmit: int = 2):
        from distributed import Client

        self.client = client if client is not None else Client(address, timeout="30s")
        self._own = client is None
        self.poll = poll
        self.resubmit = resubmit

    def describe(self) -> str:
        return f"dask cluster {self.client.scheduler.address}"

    def daemonic_workers(self) -> list[str]:
        """Workers that are daemonic processes (they cannot start processes of their own)."""
        try:
            flags = self.client.run(_is_daemon)
        except Exception:
            return []
        return sorted(addr for addr, daemon in flags.items() if daemon)

    def close(self) -> None:
        if self._own:
            self.client.close()

    def run(self, cells: list[Cell]) -> Iterator[tuple[Cell, dict]]:
        from distributed import wait

        futures: dict = {}
        attempts: dict[tuple, int] = {}
        pending: set = set()

        retry_queue: list[Cell] = []  # resubmitted one at a time: a killer cannot hit bystanders
        retrying: set = set()

        def submit(cell: Cell):
            n = attempts.get(cell.key, 0)
            attempts[cell.key] = n + 1
            key = "stackopt-cell-" + hashlib.sha1(canonical_json(cell.key).encode()).hexdigest()
            fut = self.client.submit(run_cell, cell, key=f"{key}-{n}", pure=False, retries=0)
            futures[fut] = cell
            pending.add(fut)
            return fut

        for cell in cells:
            submit(cell)
        first_seen: dict[str, float] = {}
        last_poll = 0.0
        while pending or retry_queue:
            if retry_queue and not retrying:
                retrying.add(submit(retry_queue.pop(0)))
            try:
                done, _ = wait(list(pending), timeout=self.poll, return_when="FIRST_COMPLETED")
            except Exception:  # distributed raises TimeoutError when nothing finished
                done = set()
            for fut in done:
                pending.discard(fut)
                retrying.discard(fut)
                cell = futures.pop(fut)
                try:
                    row = fut.result()
                except Exception as exc:
                    killed = type(exc).__name__ == "KilledWorker"
                    fut.release()
                    if killed and attempts[cell.key] <= self.resubmit:
                        retry_queue.append(cell)
                        continue
                    why = (f"worker process died {attempts[cell.key]} times (KilledWorker)"
                           if killed else f"dask task failed: {type(exc).__name__}: {exc}")
                    row = _killed_row(cell, first_seen.get(fut.key, time.time()), "error", why)
                fut.release()  # the row is ours now: nothing for the cluster to keep or recompute
                yield cell, row
            now = time.time()
            if pending and now - last_poll >= self.poll:
                last_poll = now
                try:
                    executing = self.client.run(_executing_keys)
                except Exception:
                    executing = {}
                by_key = {f.key: f for f in pending}
                for addr, keys in executing.items():
                    for k in keys:
                        if k not in by_key:
                            continue
                        first_seen.setdefault(k, now)
                        fut = by_key[k]
                        cell = futures[fut]
                        if now - first_seen[k] > cell.kill_after:
                            pending.discard(fut)
                            retrying.discard(fut)
                            futures.pop(fut)
                            fut.cancel()
                            try:  # a worker that is already going down may never answer
                                self.client.restart_workers([addr], timeout=30,
                                                            raise_for_error=False)
                            except Exception:
                                pass
                            yield cell, _killed_row(
                                cell, first_seen[k], "time_limit",
                                f"killed after {cell.kill_after:g} s wall clock on {addr} "
                                f"(time limit {cell.time_limit:g} s plus grace)")


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepSummary:
    total: int
    skipped: int
    ran: int = 0
    statuses: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0
    run_id: int | None = None

    @property
    def failed(self) -> int:
        return sum(self.statuses[s] for s in FAILED)

    def line(self) -> str:
        st = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (f"{self.total} cells: {self.skipped} already stored, {self.ran} run "
                f"({st or 'none'}) in {self.elapsed_s:.1f} s")


def plan(config: Config, store: Store) -> tuple[list[Cell], list[Cell]]:
    """All cells of the config, and those not yet stored."""
    cells = config.cells()
    done = store.done_keys()
    return cells, [c for c in cells if c.key not in done]


def run_sweep(config: Config, store: Store, *, workers: int = 2, scheduler: str | None = None,
              client=None, progress: bool = True, retry_failed: bool = False,
              argv: list[str] | None = None) -> SweepSummary:
    """Run every cell of ``config`` not yet in ``store``; store each as it finishes."""
    if scheduler is not None or client is not None:
        pool: Any = DaskPool(scheduler, client=client)
        daemonic = pool.daemonic_workers()
        if daemonic:
            print(f"warning: {len(daemonic)} Dask worker(s) run as daemonic processes, where "
                  "methods that start processes of their own (mpec-scip, slsqp, trust-region) "
                  "fail; start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False",
                  file=sys.stderr)
    else:
        pool = LocalPool(workers)
    cells = config.cells()
    if retry_failed:
        store.delete([c.key for c in cells], FAILED)
    cells, todo = plan(config, store)
    summary = SweepSummary(total=len(cells), skipped=len(cells) - len(todo))
    run_id = store.start_run(config_name=config.name, config_text=config.text,
                             argv=list(argv if argv is not None else sys.argv),
                             scheduler=pool.describe(), versions=package_versions(),
                             machine=machine_info())
    summary.run_id = run_id
    from tqdm import tqdm

    bar = tqdm(total=len(cells), initial=summary.skipped, disable=not progress, unit="cell",
               dynamic_ncols=True, desc=config.name)
    t0 = time.perf_counter()
    try:
        for cell, row in pool.run(todo):
            row["run_id"] = run_id
            store.insert(row)
            summary.ran += 1
            summary.statuses[row["status"]] += 1
            bar.set_postfix(done=summary.ran, failed=summary.failed, refresh=False)
            bar.update(1)
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - t0
        store.finish_run(run_id)
        if isinstance(pool, DaskPool):
            pool.close()
    return summary


def row_numbers(row: dict) -> dict:
    """The numbers of a row that must not depend on where it ran (for comparisons)."""
    keys = ("fingerprint", "status", "leader_objective", "constraint_violation",
            "equilibrium_residual", "leader_values")
    return {k: row.get(k) for k in keys}


__all__ = ["run_cell", "run_sweep", "plan", "fingerprint", "LocalPool", "DaskPool",
           "SweepSummary", "package_versions", "machine_info", "row_numbers"]
