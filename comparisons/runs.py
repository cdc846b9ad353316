"""Runs: one row of the ``runs`` table per sweep that wrote to a results database.

A sweep records its config (name and full text), command line, scheduler,
package versions and machine when it starts, and its finishing time when it
ends; every cell it stores names the run by ``run_id``.
"""
from __future__ import annotations

import json
import time

from .storefile import translated


class RunsMixin:
    """The run operations of :class:`~.store.Store` (which provides ``conn``,
    ``_transaction`` and ``_dicts``)."""

    @translated
    def start_run(self, *, config_name: str, config_text: str, argv: list[str],
                  scheduler: str, versions: dict, machine: dict) -> int:
        with self._transaction():
            cur = self.conn.execute(
                "INSERT INTO runs (started_at, config_name, config_text, argv, scheduler, versions,"
                " machine) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), config_name, config_text, json.dumps(argv), scheduler,
                 json.dumps(versions), json.dumps(machine)))
        return int(cur.lastrowid)

    @translated
    def finish_run(self, run_id: int) -> None:
        with self._transaction():
            self.conn.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time(), run_id))

    @translated
    def runs(self) -> list[dict]:
        return self._dicts("SELECT * FROM runs ORDER BY id")
