"""Results as a pandas ``DataFrame``: :func:`load` reads a results database, one row per cell.

pandas is an optional dependency: ``pip install "stackopt[analysis]"``.
"""
from __future__ import annotations

import json

from .store import Store

FIRST = ("experiment", "game", "seed", "method", "status", "leader_objective", "initial_objective",
         "constraint_violation", "equilibrium_residual", "wall_time_s")


def load(db, *, experiments: list[str] | None = None):
    """The cells of results database ``db`` as a ``pandas.DataFrame``, one row per cell.

    Columns: the cell's key and scores first (``experiment``, ``game``, ``seed``, ``method``,
    ``status``, ``leader_objective``, ...), one column per grid parameter (named after it, or
    ``param_NAME`` where a column already has the name), ``params`` and ``options`` as dicts,
    ``history``, ``leader_values`` and ``follower_values`` as stored (lists and dicts), then
    the provenance. The database is opened read-only; ``experiments`` keeps only those.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError('stackopt.comparisons.load needs pandas, an optional dependency: '
                          'pip install "stackopt[analysis]" (or pip install pandas)') from None
    with Store.open(db, readonly=True) as store:
        rows = store.rows(experiments=experiments)
    columns = [c for c in FIRST if not rows or c in rows[0]]
    for row in rows:
        row["params"] = json.loads(row["params"])
        row["options"] = json.loads(row["options"])
    names = list(dict.fromkeys(k for row in rows for k in row["params"]))
    taken = set(rows[0]) if rows else set(FIRST)
    as_column = {k: (f"param_{k}" if k in taken else k) for k in names}
    for row in rows:
        for k, v in row["params"].items():
            row[as_column[k]] = v
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(FIRST))
    order = columns + list(as_column.values())
    return frame[order + [c for c in frame.columns if c not in order]]
