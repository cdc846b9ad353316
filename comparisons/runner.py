"""Running a sweep: every cell of a config, in a local process pool or on a Dask cluster.

Cells run in child processes (:mod:`.worker`) fed by a pool (:mod:`.pools`);
only the parent process of the sweep writes to the store, one transaction per
finished cell. Every cell has a hard wall-clock guard (``time_limit`` plus
the config's ``kill_grace``): a cell that overruns it is killed and stored
with status ``time_limit``; a cell whose process dies is stored with status
``error``. The sweep always goes on.

Several sweeps may run on one database at once: each claims a cell in the
database just before it starts it (``Store.claim_next``) and renews the
leases of the cells it holds from a background thread every ``lease / 3``
seconds. A cell claimed by another live sweep is left to it; the sweep waits
until such cells are stored, or takes them over once their lease expires
(the other sweep was killed). So every cell is computed once, and each
sweep's summary counts the cells it stored itself.

Progress: a tqdm bar on a terminal; otherwise (CI logs, ``nohup``) one plain
line per finished cell on stderr.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .config import Cell, Config
from .pools import DaskPool, ListSource, LocalPool
from .store import Store, StoreError
from .worker import fingerprint, machine_info, package_versions, run_cell

# A cell *failed* where its method gave no answer (an error). A cell that stopped at its
# time limit is a result with that status, not a failure (its answer is scored like any
# other; only a cell killed at the harness's guard has none). --retry-failed runs both
# again, e.g. after a larger --time-limit.
FAILED = ("error", "solver_error")
TIME_LIMITED = ("time_limit",)
RETRIED = FAILED + TIME_LIMITED
DEFAULT_LEASE_S = 30.0


# --------------------------------------------------------------------------- claims
class ClaimSource:
    """Hands out the cells of a sweep, claiming each in the store as it goes (see module doc)."""

    def __init__(self, store: Store, cells: list[Cell], *, claimant: str, run_id: int,
                 lease: float, on_stored_elsewhere=None):
        self.store, self.claimant, self.run_id, self.lease = store, claimant, run_id, lease
        self.by_key = {c.key: c for c in cells}
        self.remaining = [c.key for c in cells]
        self.on_stored_elsewhere = on_stored_elsewhere
        self.taken_over: list[tuple[tuple, str]] = []

    def take(self, rank=None) -> Cell | None:
        """Claim and return the next cell (``rank``: a function of a cell, smallest first,
        ties in the config's order; see :mod:`.pools`), or None when none is free now."""
        if not self.remaining:
            return None
        candidates = self.remaining if rank is None else \
            sorted(self.remaining, key=lambda k: rank(self.by_key[k]))
        claim = self.store.claim_next(candidates, claimant=self.claimant,
                                      run_id=self.run_id, lease=self.lease)
        gone = set(claim.stored)
        if claim.key is not None:
            gone.add(claim.key)
        if gone:
            self.remaining = [k for k in self.remaining if k not in gone]
        for key in claim.stored:
            if self.on_stored_elsewhere is not None:
                self.on_stored_elsewhere(self.by_key[key])
        if claim.taken_from is not None:
            self.taken_over.append((claim.key, claim.taken_from))
        return self.by_key[claim.key] if claim.key is not None else None

    @property
    def exhausted(self) -> bool:
        return not self.remaining

    def __len__(self) -> int:
        return len(self.remaining)


class LeaseKeeper(threading.Thread):
    """Renews ``claimant``'s leases every ``lease / 3`` s, on its own connection."""

    def __init__(self, path, claimant: str, lease: float):
        super().__init__(name="stackopt-lease", daemon=True)
        self.path, self.claimant, self.lease = path, claimant, lease
        self.halt = threading.Event()
        self.renewals = 0

    def run(self) -> None:
        try:
            store = Store.open(self.path, create=False)
        except StoreError as exc:
            print(f"warning: cannot renew claims: {exc}", file=sys.stderr)
            return
        with store:
            while not self.halt.wait(self.lease / 3):
                try:
                    store.renew(self.claimant, self.lease)
                    self.renewals += 1
                except StoreError as exc:  # locked for a long time: try again next tick
                    print(f"warning: claims not renewed: {exc}", file=sys.stderr)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=BUSY_JOIN_S)


BUSY_JOIN_S = 65.0  # a renewal may wait for the store's busy timeout (60 s)


# --------------------------------------------------------------------------- progress
def _cell_label(cell: Cell) -> str:
    params = " ".join(f"{k}={v}" for k, v in cell.params)
    return " ".join(p for p in (cell.experiment, params, f"seed {cell.seed}", cell.method) if p)


class Progress:
    """A tqdm bar (``"bar"``), one plain line per finished cell (``"lines"``), or nothing."""

    def __init__(self, mode, *, total: int, done: int, name: str, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        if mode is True or mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        if mode not in (False, None, "bar", "lines"):
            raise ValueError(f"progress must be True, False, 'auto', 'bar' or 'lines', got {mode!r}")
        self.mode, self.total, self.done = mode or None, total, done
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="cell", dynamic_ncols=True, desc=name,
                            file=self.stream)

    def cell(self, cell: Cell, row: dict | None, *, stored: bool, summary: SweepSummary) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix(done=summary.ran, failed=summary.failed,
                                 time_limit=summary.time_limited, refresh=False)
            self.bar.update(1)
        elif self.mode == "lines":
            width = len(str(self.total))
            if row is None:
                what = "stored by another sweep"
            else:
                t = row.get("cell_time_s")
                what = f"{row['status']} in {t:.2f} s" if t is not None else row["status"]
                if not stored:
                    what += " (another sweep stored it first; not stored again)"
            print(f"[{self.done:>{width}}/{self.total}] {_cell_label(cell)}: {what}",
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- the sweep
@dataclass
class SweepSummary:
    """What one sweep did. ``ran`` counts the cells it stored itself (their statuses in
    ``statuses``); ``computed`` also counts those another sweep stored first."""

    total: int
    skipped: int  # stored before this sweep started
    skipped_failed: int = 0  # of those, with a failed status
    skipped_limited: int = 0  # of those, stopped at their time limit
    retried: int = 0  # failed and time-limited cells deleted by retry_failed, to run again
    ran: int = 0
    computed: int = 0
    by_others: int = 0  # stored by other sweeps while this one ran
    taken_over: int = 0  # claims of other sweeps whose lease had expired
    statuses: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0
    run_id: int | None = None

    @property
    def failed(self) -> int:
        return sum(self.statuses[s] for s in FAILED)

    @property
    def time_limited(self) -> int:
        return sum(self.statuses[s] for s in TIME_LIMITED)

    def line(self) -> str:
        st = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        stored = f"{self.skipped} already stored"
        if self.skipped_failed or self.skipped_limited:
            stored += f" ({retry_note(self.skipped_failed, self.skipped_limited)})"
        elif self.retried:
            stored += (f" ({self.retried} failed or time-limited cells cleared by "
                       "--retry-failed)")
        ran = f"{self.ran} run ({st or 'none'})"
        extra = []
        if self.by_others:
            extra.append(f"{self.by_others} stored by another sweep")
        if self.computed > self.ran:
            extra.append(f"{self.computed - self.ran} computed but stored first by another sweep")
        if self.taken_over:
            extra.append(f"{self.taken_over} taken over from expired claims")
        text = ", ".join([f"{self.total} cells: {stored}", ran, *extra])
        text += f" in {self.elapsed_s:.1f} s"
        if self.failed or self.time_limited:
            text += f"; {retry_note(self.failed, self.time_limited)}"
        return text


def retry_note(failed: int, limited: int) -> str:
    """What the failed (error, solver_error) and time-limited cells are, and how to rerun them."""
    parts = []
    if failed:
        parts.append(f"{failed} failed (error or solver_error)")
    if limited:
        parts.append(f"{limited} stopped at the time limit (results with that status, not "
                     "failures)")
    what = "them" if failed + limited > 1 else "it"
    return " and ".join(parts) + f": --retry-failed runs {what} again"


def plan(config: Config, store: Store) -> tuple[list[Cell], list[Cell]]:
    """All cells of the config, and those not yet stored."""
    cells = config.cells()
    done = store.done_keys()
    return cells, [c for c in cells if c.key not in done]


def count_failed(cells: list[Cell], stored: dict[tuple, str], statuses=FAILED) -> int:
    """How many of ``cells`` are stored with one of ``statuses`` (``stored``: key -> status;
    by default the failed ones)."""
    return sum(1 for c in cells if stored.get(c.key) in statuses)


def run_sweep(config: Config, store: Store, *, workers: int = 2, scheduler: str | None = None,
              client=None, progress: Any = True, retry_failed: bool = False,
              argv: list[str] | None = None, lease: float = DEFAULT_LEASE_S) -> SweepSummary:
    """Run every cell of ``config`` not yet in ``store``; store each as it finishes.

    ``progress``: True or ``"auto"`` (a bar on a terminal, else one line per
    cell on stderr), ``"bar"``, ``"lines"`` or False. ``lease``: seconds a
    claim lasts unless renewed (renewed every ``lease / 3`` s); a sweep killed
    while running cells gives them to other sweeps this long after it died.
    """
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0 < lease < 1e9:
        raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
    pool: Any = (DaskPool(scheduler, client=client) if scheduler is not None or client is not None
                 else LocalPool(workers))
    cells = config.cells()
    retried = store.delete([c.key for c in cells], RETRIED) if retry_failed else 0
    stored = store.stored()
    summary = SweepSummary(total=len(cells), skipped=sum(c.key in stored for c in cells),
                           skipped_failed=count_failed(cells, stored),
                           skipped_limited=count_failed(cells, stored, TIME_LIMITED),
                           retried=retried)
    summary.run_id = run_id = store.start_run(
        config_name=config.name, config_text=config.text,
        argv=list(argv if argv is not None else sys.argv), scheduler=pool.describe(),
        versions=package_versions(), machine=machine_info())
    claimant = f"run {run_id} {socket.gethostname()}:{os.getpid()}"
    bar = Progress(progress, total=len(cells), done=summary.skipped, name=config.name)

    def stored_elsewhere(cell: Cell) -> None:
        summary.by_others += 1
        bar.cell(cell, None, stored=False, summary=summary)

    source = ClaimSource(store, [c for c in cells if c.key not in stored], claimant=claimant,
                         run_id=run_id, lease=lease, on_stored_elsewhere=stored_elsewhere)
    keeper = LeaseKeeper(store.path, claimant, lease)
    keeper.start()
    t0 = time.perf_counter()
    try:
        for cell, row in pool.run(source):
            row["run_id"] = run_id
            summary.computed += 1
            mine = store.store_claimed(row, claimant=claimant)
            if mine:
                summary.ran += 1
                summary.statuses[row["status"]] += 1
            bar.cell(cell, row, stored=mine, summary=summary)
    finally:
        keeper.stop()
        bar.close()
        summary.elapsed_s = time.perf_counter() - t0
        summary.taken_over = len(source.taken_over)
        try:
            store.release(claimant)
            store.finish_run(run_id)
        finally:
            if isinstance(pool, DaskPool):
                pool.close()
    return summary


def row_numbers(row: dict) -> dict:
    """The numbers of a row that must not depend on where it ran (for comparisons)."""
    keys = ("fingerprint", "status", "leader_objective", "constraint_violation",
            "equilibrium_residual", "leader_values")
    return {k: row.get(k) for k in keys}


__all__ = ["run_cell", "run_sweep", "plan", "count_failed", "fingerprint", "LocalPool",
           "DaskPool", "ListSource", "ClaimSource", "LeaseKeeper", "Progress", "SweepSummary",
           "package_versions", "machine_info", "row_numbers", "retry_note", "FAILED", "TIME_LIMITED",
           "RETRIED", "DEFAULT_LEASE_S"]
