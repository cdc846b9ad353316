"""Convergence curves of one solve: :func:`plot_history` draws ``result.history`` with matplotlib."""
from __future__ import annotations

from stackopt.core.progress import FIELDS

PANELS = (("objective", "leader objective", "linear"), ("violation", "constraint violation", "symlog"),
          ("stationarity", "stationarity", "log"))


def plot_history(result, path=None, *, title: str | None = None):
    """Plot the leader objective, the constraint violation and the stationarity measure against
    the step, one panel each (those the method recorded), and return the matplotlib ``Figure``.

    ``result`` is a :class:`~stackopt.core.Result` or its ``history`` (a list of records, as
    stored by the comparison harness); ``path`` also saves the figure there (PNG, SVG, PDF...).
    """
    history = getattr(result, "history", result)
    if not isinstance(history, (list, tuple)) or not history:
        raise ValueError("plot_history needs a Result with a non-empty history (or the list of "
                         f"its records); got {type(history).__name__} of length "
                         f"{len(history) if hasattr(history, '__len__') else 'unknown'}: the method "
                         "recorded no steps (`initial`, `mpec-scip` do not)")
    import matplotlib.pyplot as plt

    steps = [_step(r, i) for i, r in enumerate(history)]
    if any(b < a for a, b in zip(steps, steps[1:])):  # several runs (restarts): number the records
        steps = list(range(len(history)))
    panels = [(label, ylabel, scale, _series(history, keys)) for label, ylabel, scale in PANELS
              for keys in [dict(FIELDS)[label]]]
    panels = [p for p in panels if any(v is not None for v in p[3])]
    if not panels:
        raise ValueError("the history records no objective, violation or stationarity; its keys "
                         f"are {sorted(history[0])}")
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(6.4, 1.9 * len(panels) + 0.6),
                             squeeze=False)
    for ax, (_, ylabel, scale, values) in zip(axes[:, 0], panels):
        pts = [(s, v) for s, v in zip(steps, values) if v is not None]
        ax.plot([s for s, _ in pts], [v for _, v in pts], lw=1.2)
        if scale == "log" and all(v > 0 for _, v in pts):
            ax.set_yscale("log")
        elif scale == "symlog" and any(v > 0 for _, v in pts):  # a violation is 0 where feasible
            ax.set_yscale("symlog", linthresh=1e-8)
            ax.set_ylim(bottom=0)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title or hasattr(result, "method"):
        fig.suptitle(title or f"{result.method} on {result.game} (seed {result.seed}): "
                     f"{result.status.value}")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _step(record: dict, index: int) -> float:
    for key in ("step", "iteration"):
        if isinstance(record.get(key), (int, float)):
            return record[key]
    return index


def _series(history, keys) -> list:
    out = []
    for r in history:
        v = next((r[k] for k in keys if isinstance(r.get(k), (int, float))), None)
        out.append(None if v is None else float(v))
    return out
