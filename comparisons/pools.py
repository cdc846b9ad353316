"""Where cells run: a local pool of cell processes, or a Dask ``distributed`` cluster.

Both pools take their cells from a *source* (an object with ``take(rank=None)``,
which returns the next cell or None when there is none to hand out right now,
``exhausted`` and ``len()``), or from a plain list, and yield ``(cell, row)``
as cells finish. The sweep's source claims each cell in the results database
as it hands it out, so a pool never asks for more cells than it can start.
``rank`` (a function of a cell; smallest first, ties in the source's order)
is how the local pool asks for the cells of the instance a child holds: a
child that ran a cell of an instance takes that instance's other methods next,
and an idle child takes an instance no other child is running, so each
instance is built and prepared once (:class:`~.worker.Instances`).

Both enforce a hard wall-clock guard per cell (``cell.kill_after``): the cell's
process is killed and the cell comes back with status ``time_limit``; a cell
whose process dies comes back with status ``error``. Either way the pool goes
on with a fresh process.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait as mp_wait
from typing import Any

from .config import Cell, canonical_json
from .worker import CellProcess, _killed_row, instance_key, run_cell_guarded

POLL_S = 1.0  # how often an idle pool asks its source again


class ListSource:
    """A fixed list of cells, handed out in order."""

    def __init__(self, cells: list[Cell]):
        self._cells = list(reversed(cells))

    def take(self, rank=None) -> Cell | None:
        if not self._cells:
            return None
        if rank is None:
            return self._cells.pop()
        best = min(range(len(self._cells)), key=lambda i: (rank(self._cells[i]), -i))
        return self._cells.pop(best)

    @property
    def exhausted(self) -> bool:
        return not self._cells

    def __len__(self) -> int:
        return len(self._cells)


def _source(cells) -> Any:
    return ListSource(cells) if isinstance(cells, (list, tuple)) else cells


def _guard_row(cell: Cell, started: float, where: str = "") -> dict[str, Any]:
    return _killed_row(cell, started, "time_limit",
                       f"killed after {cell.kill_after:g} s wall clock{where} "
                       f"(time limit {cell.time_limit:g} s plus grace)")


# --------------------------------------------------------------------------- local pool
@dataclass
class _Slot:
    child: CellProcess
    cell: Cell | None = None
    started: float = 0.0
    deadline: float = 0.0
    instance: tuple | None = None  # the instance of the last cell its child ran


class Affinity:
    """The order in which an idle child takes cells: first those of the instance it holds
    (``held``), then those of instances no other child is running, then the rest."""

    def __init__(self):
        self._keys: dict[int, tuple] = {}  # id(cell) -> (cell, its instance key), computed once

    def instance(self, cell: Cell) -> tuple:
        hit = self._keys.get(id(cell))
        if hit is None or hit[0] is not cell:  # the cell is held: its id is its own
            hit = self._keys[id(cell)] = (cell, instance_key(cell))
        return hit[1]

    def rank(self, held: tuple | None, running: set):
        def rank(cell: Cell) -> int:
            key = self.instance(cell)
            return 0 if key == held else 2 if key in running else 1
        return rank


class LocalPool:
    """``n`` :class:`CellProcess` children on this machine, each fed one cell at a time.

    A child imports stackopt and the models before it takes its first cell.
    A cell that overruns its ``kill_after`` guard gets its child killed
    (SIGKILL) and a fresh child started in its place.
    """

    max_start_failures = 3

    def __init__(self, workers: int = 2):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.n = workers
        self.slots: list[_Slot] = []
        self._start_failures = 0
        self.affinity = Affinity()

    def describe(self) -> str:
        return f"local process pool, {self.n} workers"

    def run(self, cells) -> Iterator[tuple[Cell, dict]]:
        source = _source(cells)
        try:
            self.slots = [_Slot(CellProcess()) for _ in range(min(self.n, len(source)))]
            while True:
                self._dispatch(source)
                busy = [s for s in self.slots if s.cell is not None]
                if not busy and source.exhausted:
                    return
                waiting = [s.child.conn for s in self.slots if s.cell is not None
                           or not s.child.ready]
                timeout = min([s.deadline for s in busy], default=time.time() + POLL_S)
                ready = mp_wait(waiting, timeout=min(max(0.0, timeout - time.time()), POLL_S))
                for i, s in enumerate(self.slots):
                    if s.cell is None and s.child.ready:
                        continue
                    yield from self._collect(i, s, s.child.conn in ready)
        finally:
            for s in self.slots:
                if s.cell is None:
                    s.child.stop()
                else:
                    s.child.kill()
            self.slots = []

    def _dispatch(self, source) -> None:
        for s in self.slots:
            if s.child.ready and s.cell is None:
                running = {self.affinity.instance(o.cell) for o in self.slots if o.cell is not None}
                cell = source.take(rank=self.affinity.rank(s.instance, running))
                if cell is None:
                    return
                s.cell, s.started = cell, time.time()
                s.deadline = s.started + cell.kill_after
                s.child.conn.send(cell)

    def _collect(self, i: int, s: _Slot, readable: bool) -> Iterator[tuple[Cell, dict]]:
        cell = s.cell
        if readable:
            try:
                msg = s.child.conn.recv()
            except (EOFError, OSError):
                s.child.kill()
                code = s.child.exitcode
                if cell is None:  # died while starting
                    self._start_failures += 1
                    if self._start_failures >= self.max_start_failures:
                        raise RuntimeError(
                            f"worker processes fail to start (exit code {code})") from None
                self.slots[i] = _Slot(CellProcess())
                if cell is not None:
                    yield cell, _killed_row(cell, s.started, "error",
                                            f"worker process died (exit code {code})")
                return
            if msg == "ready":
                s.child.ready = True
                return
            s.cell, s.instance = None, self.affinity.instance(cell)
            yield cell, msg
        elif cell is not None and time.time() > s.deadline:
            s.child.kill()
            self.slots[i] = _Slot(CellProcess())
            yield cell, _guard_row(cell, s.started)


# --------------------------------------------------------------------------- dask
def _executing_keys(dask_worker) -> list[str]:  # runs on each Dask worker
    return [str(ts.key) for ts in getattr(dask_worker.state, "executing", ())]


class DaskPool:
    """Cells as tasks on a ``distributed`` cluster at ``address`` (or a given Client).

    Each task runs its cell in a :class:`CellProcess` child of the Dask worker
    (one per worker thread, kept for the next cell) and enforces the cell's
    ``kill_after`` guard there, so default (daemonic) ``dask worker``
    processes run every method, and a stuck or dying cell costs a child, not
    the worker. As a backstop the client polls which task each worker is
    executing: a task still running ``backstop`` seconds past its cell's
    ``kill_after`` is cancelled and its worker restarted through the nanny.
    A cell whose worker died (``KilledWorker``) is resubmitted up to
    ``resubmit`` times, one at a time, then stored with status ``error``.
    At most two cells per worker thread are out at a time (one running, one
    queued), so the cells left are there for other sweeps to claim; an
    adaptive cluster therefore does not grow on this queue.
    """

    def __init__(self, address=None, *, client=None, poll: float = 1.0, resubmit: int = 2,
                 backstop: float = 120.0):
        from distributed import Client

        self.client = client if client is not None else Client(address, timeout="30s")
        self._own = client is None
        self.poll = poll
        self.resubmit = resubmit
        self.backstop = backstop

    def describe(self) -> str:
        return f"dask cluster {self.client.scheduler.address}"

    def close(self) -> None:
        if self._own:
            self.client.close()

    def _window(self) -> int:
        try:
            return max(1, 2 * sum(self.client.nthreads().values()))
        except Exception:
            return 1

    def run(self, cells) -> Iterator[tuple[Cell, dict]]:
        run = _DaskRun(self, _source(cells))
        while True:
            run.fill()
            if not run.pending and not run.retry_queue:
                if run.source.exhausted:
                    return
                time.sleep(self.poll)  # the rest is claimed by other sweeps for now
                continue
            yield from run.collect()
            yield from run.guard()


class _DaskRun:
    """The state of one :meth:`DaskPool.run`."""

    def __init__(self, pool: DaskPool, source):
        self.pool, self.client, self.source = pool, pool.client, source
        self.futures: dict = {}
        self.attempts: dict[tuple, int] = {}
        self.pending: set = set()
        self.retry_queue: list[Cell] = []  # resubmitted one at a time: no bystanders
        self.retrying: set = set()
        self.first_seen: dict[str, float] = {}
        self.last_poll = 0.0

    def submit(self, cell: Cell):
        n = self.attempts.get(cell.key, 0)
        self.attempts[cell.key] = n + 1
        key = "stackopt-cell-" + hashlib.sha1(canonical_json(cell.key).encode()).hexdigest()
        fut = self.client.submit(run_cell_guarded, cell, key=f"{key}-{n}", pure=False, retries=0)
        self.futures[fut] = cell
        self.pending.add(fut)
        return fut

    def fill(self) -> None:
        if self.retry_queue and not self.retrying:
            self.retrying.add(self.submit(self.retry_queue.pop(0)))
        window = self.pool._window()
        while len(self.pending) + len(self.retry_queue) < window:
            cell = self.source.take()
            if cell is None:
                return
            self.submit(cell)

    def collect(self) -> Iterator[tuple[Cell, dict]]:
        from distributed import wait

        try:
            done, _ = wait(list(self.pending), timeout=self.pool.poll,
                           return_when="FIRST_COMPLETED")
        except Exception:  # distributed raises TimeoutError when nothing finished
            done = set()
        for fut in done:
            self.pending.discard(fut)
            self.retrying.discard(fut)
            cell = self.futures.pop(fut)
            try:
                row = fut.result()
            except Exception as exc:
                killed = type(exc).__name__ == "KilledWorker"
                fut.release()
                if killed and self.attempts[cell.key] <= self.pool.resubmit:
                    self.retry_queue.append(cell)
                    continue
                why = (f"worker process died {self.attempts[cell.key]} times (KilledWorker)"
                       if killed else f"dask task failed: {type(exc).__name__}: {exc}")
                row = _killed_row(cell, self.first_seen.get(fut.key, time.time()), "error", why)
            fut.release()  # the row is ours now: nothing for the cluster to keep or recompute
            yield cell, row

    def guard(self) -> Iterator[tuple[Cell, dict]]:
        now = time.time()
        if not self.pending or now - self.last_poll < self.pool.poll:
            return
        self.last_poll = now
        try:
            executing = self.client.run(_executing_keys)
        except Exception:
            executing = {}
        by_key = {f.key: f for f in self.pending}
        for addr, keys in executing.items():
            for k in (k for k in keys if k in by_key):
                self.first_seen.setdefault(k, now)
                fut = by_key[k]
                cell = self.futures[fut]
                if now - self.first_seen[k] <= cell.kill_after + self.pool.backstop:
                    continue
                self.pending.discard(fut)
                self.retrying.discard(fut)
                self.futures.pop(fut)
                fut.cancel()
                try:  # a worker that is already going down may never answer
                    self.client.restart_workers([addr], timeout=30, raise_for_error=False)
                except Exception:
                    pass
                yield cell, _guard_row(cell, self.first_seen[k], f" on {addr}")
