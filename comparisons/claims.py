"""Claims: how concurrent sweeps on one results database share its cells.

A sweep claims a cell just before running it (one row of the ``claims`` table
naming the claimant, its host and process id, with a lease that the claimant
keeps renewing), and storing the cell deletes the claim in the same
transaction. A cell claimed by a live lease is left to its claimant; a claim
whose lease expired (its sweep was killed, or hangs), or whose claimant ran on
this host under a process id that no longer exists, is taken over.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .storefile import KEY_COLUMNS, KEY_SQL, KEY_WHERE, translated


def _pid_gone(pid) -> bool:
    """True if no process ``pid`` exists on this host (never True for our own pid)."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


@dataclass
class Claim:
    """What :meth:`Store.claim_next` found: the key it claimed (or None), the
    candidates already stored, and the claimant whose expired lease it took over."""

    key: tuple | None
    stored: list[tuple] = field(default_factory=list)
    taken_from: str | None = None


class ClaimsMixin:
    """The claim operations of :class:`~.store.Store` (which provides ``conn``,
    ``path``, ``_transaction``, ``_insert`` and ``_dicts``)."""

    @translated
    def claim_next(self, candidates: Iterable[tuple], *, claimant: str, run_id: int | None,
                   lease: float) -> Claim:
        """Claim the first of ``candidates`` that is neither stored nor claimed by a live lease.

        One transaction: the candidates found stored are listed in the answer
        (the caller drops them). A candidate is taken over when its claim's
        lease has expired, or at once when its claimant ran on this host
        under a process id that no longer exists (a sweep killed here).
        """
        out = Claim(None)
        host = socket.gethostname()
        with self._transaction():
            now = time.time()
            for key in candidates:
                if self.conn.execute(f"SELECT 1 FROM cells WHERE {KEY_WHERE}", key).fetchone():
                    out.stored.append(key)
                    continue
                held = self.conn.execute(
                    f"SELECT claimant, lease_until, host, pid FROM claims WHERE {KEY_WHERE}",
                    key).fetchone()
                if (held is not None and held[0] != claimant and held[1] > now
                        and not (held[2] == host and _pid_gone(held[3]))):
                    continue
                self.conn.execute(
                    f"INSERT OR REPLACE INTO claims ({KEY_SQL}, run_id, claimant, host, pid, "
                    "claimed_at, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*key, run_id, claimant, host, os.getpid(), now, now + lease))
                out.key = key
                out.taken_from = held[0] if held is not None and held[0] != claimant else None
                break
        return out

    @translated
    def store_claimed(self, row: dict[str, Any], *, claimant: str) -> bool:
        """Store a finished cell and drop the claimant's claim on it, in one transaction;
        False if the key was already stored (by a sweep that took over the claim)."""
        key = tuple(row[c] for c in KEY_COLUMNS)
        with self._transaction():
            inserted = self._insert(row)
            self.conn.execute(f"DELETE FROM claims WHERE {KEY_WHERE} AND claimant = ?",
                              (*key, claimant))
        return inserted

    @translated
    def renew(self, claimant: str, lease: float) -> int:
        """Extend every claim of ``claimant`` to ``lease`` seconds from now; how many it holds."""
        with self._transaction():
            cur = self.conn.execute("UPDATE claims SET lease_until = ? WHERE claimant = ?",
                                    (time.time() + lease, claimant))
        return cur.rowcount

    @translated
    def release(self, claimant: str) -> int:
        """Give back every claim of ``claimant`` (a sweep that stops early)."""
        with self._transaction():
            return self.conn.execute("DELETE FROM claims WHERE claimant = ?", (claimant,)).rowcount

    @translated
    def claims(self) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM claims ORDER BY claimed_at")
