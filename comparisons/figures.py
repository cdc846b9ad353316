"""The report's figures: one line per method against the swept parameter.

Objective (the paper's Figure 3), gain over the initial strategy, violation
(Figure 4) and runtime, each as PNG and SVG. Six rules keep them honest:

* the objective's and the gain's bars are the means' 95 % intervals from the
  scoring's draws (:meth:`.tables.Group.interval`; the gain is paired with the
  same instance's initial strategy, common to every method, so its bar is the
  objective's), where every cell stored one; else ± the standard error over
  the seeds, and the axis label says which;

* a mean over fewer seeds than the figure's fullest point (failed or killed
  cells drop out of the means) is drawn hollow and labelled ``n=k``;
* on linear axes an outlier does not flatten the rest: an extreme mean whose
  gap to the others exceeds :data:`OUTLIER_GAP` times their spread is set
  aside, the axis covers the others, and the outlier is drawn at the axis edge
  as a triangle labelled with its value;
* a reference line (violation 1e-3) is drawn only where it lies inside the
  plotted range;
* a mean with an infeasible answer among its cells (violation above the
  table's tolerance) is crossed out in red: it is not a feasible result;
* a mean with cells stopped at their time limit is framed by a square: its
  answers may depend on the machine's speed.

Beside them, per experiment, the equilibria reached (:func:`draw_equilibria`,
paper Theorem 1 on a real game): every distinct equilibrium the scoring's draws
reached at each method's answer (the store's ``equilibria`` column), at its
leader objective, its marker's area proportional to its frequency among the
draws; each method's legend says how many equilibria over how many cells.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OUTLIER_GAP = 3.0  # an extreme value this many spreads of the rest away is set aside
OUTLIER_SHARE = 0.2  # at most this share of a figure's points (at least one) is set aside
VIOLATION_REFERENCE = 1e-3
REFERENCE_LABEL = "violation 1e-3"

INTERVAL_KINDS = ("objective", "improvement")  # bars: the 95 % intervals, where stored
# kind -> (column, y label, scale, title)
KINDS = {
    "objective": ("leader_objective", "leader objective (mean ± s.e.)", "linear", "Leader objective"),
    "improvement": ("improvement", "objective gain over the initial strategy\n"
                    "(paired per instance, mean ± s.e.)", "linear", "Gain over the initial strategy"),
    "violation": ("constraint_violation", "constraint violation (mean ± s.e.)", "symlog",
                  "Constraint violation"),
    "runtime": ("time_s", "method wall time, s (mean ± s.e.)", "log", "Runtime"),
}


def numeric_axis(t) -> bool:
    """Whether the table's axis is numeric at every point (else there is no figure)."""
    return t.axis is not None and all(
        isinstance(g.params.get(t.axis), (int, float)) and not isinstance(g.params.get(t.axis), bool)
        for g in t.groups)


def robust_range(values, gap: float = OUTLIER_GAP, share: float = OUTLIER_SHARE):
    """``(low, high)`` of ``values`` without their outliers, or None if there are none.

    Repeatedly, the extreme value (lowest or highest) whose gap to its neighbour
    exceeds ``gap`` times the range of the remaining values is set aside, at most
    ``share`` of the values (at least one), keeping at least three.
    """
    v = np.sort(np.asarray([x for x in values if math.isfinite(x)], dtype=float))
    lo, hi, dropped = 0, v.size - 1, 0
    while dropped < max(1, int(share * v.size)) and hi - lo + 1 > 3:
        ratios = {}
        rest = v[hi] - v[lo + 1]
        if rest > 0 and v[lo + 1] - v[lo] > gap * rest:
            ratios["low"] = (v[lo + 1] - v[lo]) / rest
        rest = v[hi - 1] - v[lo]
        if rest > 0 and v[hi] - v[hi - 1] > gap * rest:
            ratios["high"] = (v[hi] - v[hi - 1]) / rest
        if not ratios:
            break
        if max(ratios, key=ratios.get) == "low":
            lo += 1
        else:
            hi -= 1
        dropped += 1
    return (float(v[lo]), float(v[hi])) if dropped else None


def intervals_stored(t) -> bool:
    """Whether every group of the table with an answer has a stored 95 % interval."""
    return all(g.interval() is not None for g in t.groups if g.answers())


def _bar(g, col: str, intervals: bool) -> float:
    """A mean's bar: the half-width of its 95 % interval, or its standard error."""
    if intervals:
        low, high = g.interval()
        return (high - low) / 2
    return g.stat(col)[1]


def _series(t, col: str, intervals: bool = False) -> dict[str, tuple]:
    """label -> (x, mean, bar, n, infeasible, time-limited) arrays sorted by x, for every
    method (and other setting); the bar is the 95 % interval's half-width with
    ``intervals``, else the standard error; the last two flag means with an infeasible
    answer, or with cells stopped at their time limit, among their cells."""
    groups = defaultdict(list)
    for g in t.groups:
        groups[(g.method, t.others(g.params))].append(g)
    out = {}
    for (method, other), gs in sorted(groups.items()):
        pts = sorted((g.params.get(t.axis), g.stat(col)[0], _bar(g, col, intervals), g.stat(col)[2])
                     + (float(g.infeasible(t.tol) > 0), float(g.time_limited > 0))
                     for g in gs if g.stat(col)[2] > 0)
        if pts:
            x, m, s, n, bad, limited = (np.array(c, dtype=float) for c in zip(*pts))
            out[method if not other else f"{method} ({other})"] = (
                x, m, np.nan_to_num(s), n, bad.astype(bool), limited.astype(bool))
    return out


def _reported_series(t, col: str) -> dict[str, tuple]:
    """label -> (x, value) of the experiment's published means of ``col`` (its config's
    ``reported`` table), at the axis values the table shows."""
    rep = getattr(t, "reported", None)
    if rep is None or rep.axis != t.axis or not numeric_axis(t):
        return {}
    shown = {g.params.get(t.axis) for g in t.groups}
    out = {}
    for label, cols in rep.values.items():
        pts = [(a, v) for a, v in zip(rep.at, cols.get(col, ())) if a in shown and np.isfinite(v)]
        if pts:
            out[label] = tuple(np.array(c, dtype=float) for c in zip(*pts))
    return out


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(t, kind: str):
    """The matplotlib figure of one kind for one experiment table."""
    from matplotlib.lines import Line2D

    plt = _pyplot()

    col, ylabel, scale, title = KINDS[kind]
    intervals = kind in INTERVAL_KINDS and intervals_stored(t)
    if intervals:
        ylabel = ylabel.replace("mean ± s.e.", "mean, 95 % interval")
    series = _series(t, col, intervals)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    n_full = max((int(s[3].max()) for s in series.values()), default=0)
    tol = getattr(t, "tol", None)
    initial = []
    if kind == "objective" and t.initial and "initial" not in t.methods:
        initial = sorted((json.loads(p).get(t.axis), v) for p, v in t.initial.items())
    extra = []  # legend entries for the marks below
    for k, (label, (x, m, s, n, bad, limited)) in enumerate(series.items()):
        span = (x.max() - x.min()) if x.size > 1 else 1.0
        off = (k - (len(series) - 1) / 2) * 0.012 * span  # keeps overlapping error bars readable
        line = ax.errorbar(x + off, m, yerr=s, marker="o", ms=4, capsize=3, lw=1.4, label=label)
        if bad.any():
            ax.plot(x[bad] + off, m[bad], "x", ms=9, mew=2.2, color="red", zorder=5)
            extra.append(Line2D([], [], marker="x", ls="", ms=8, mew=2, color="red",
                                label="infeasible answer among its cells"
                                + (f" (violation > {tol:g})" if tol is not None else "")))
        if limited.any():
            ax.plot(x[limited] + off, m[limited], "s", ms=10, mfc="none", mec="black", mew=1.2,
                    zorder=4)
            extra.append(Line2D([], [], marker="s", ls="", ms=8, mfc="none", mec="black",
                                label="cells stopped at their time limit"))
        few = n < n_full
        if few.any():
            color = line[0].get_color()
            ax.plot(x[few] + off, m[few], "o", ms=6, mfc="white", mec=color, zorder=3)
            for xi, yi, ni in zip(x[few] + off, m[few], n[few]):
                ax.annotate(f"n={int(ni)}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=color)
            extra.append(Line2D([], [], marker="o", ls="", mfc="white", mec="grey",
                                label=f"mean over fewer than {n_full} seeds (n shown)"))
    if initial:
        ax.plot([p[0] for p in initial], [p[1] for p in initial], "k--", lw=1,
                label="initial leader strategy")
    published = _reported_series(t, col)
    for label, (x, y) in published.items():
        ax.plot(x, y, ls=":", marker="D", ms=4, lw=1, color="dimgrey", label=f"reported: {label}")
    if scale == "linear":
        values = ([v for (_, m, *_rest) in series.values() for v in m] + [p[1] for p in initial]
                  + [v for _, y in published.values() for v in y])
        if _clip_outliers(ax, series, values):
            extra.append(Line2D([], [], marker="^", ls="", color="grey",
                                label="beyond the axis (value shown)"))
    elif scale == "symlog":
        ax.set_yscale("symlog", linthresh=1e-5, linscale=0.5)
        ax.set_ylim(bottom=0)
        ax.autoscale_view()
        ax.set_ylim(ax.get_ylim())  # freeze: the reference line must not stretch the axis
        low, high = ax.get_ylim()
        if low <= VIOLATION_REFERENCE <= high:
            ax.axhline(VIOLATION_REFERENCE, color="grey", ls=":", lw=1, label=REFERENCE_LABEL)
    else:
        ax.set_yscale("log")
    ax.set_xlabel(t.axis)
    ax.set_ylabel(ylabel)
    name = t.name if t.name == t.game else f"{t.name} ({t.game})"
    fixed = t.fixed_text()
    ax.set_title(f"{title}: {name}" + (f"\n{fixed}" if fixed else ""), fontsize=10)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = {h.get_label(): h for h in extra}
    ax.legend(handles + list(unique.values()), labels + list(unique), fontsize=8)
    fig.tight_layout()
    return fig


def _clip_outliers(ax, series, values) -> bool:
    """Limit the y axis to the values without outliers; mark each outlier at the edge."""
    kept = robust_range(values)
    if kept is None:
        return False
    low, high = kept
    lows, highs = [low], [high]
    for _, m, s, *_rest in series.values():  # error bars of the kept means, up to one range more
        inside = (m >= low) & (m <= high)
        lows += list(m[inside] - s[inside])
        highs += list(m[inside] + s[inside])
    spread = max(high - low, 1e-12)
    low, high = max(min(lows), low - spread), min(max(highs), high + spread)
    pad = 0.08 * (high - low)
    low, high = low - pad, high + pad
    ax.set_ylim(low, high)
    for (x, m, *_rest), line in zip(series.values(), ax.containers):
        color = line[0].get_color()
        for xi, yi in zip(x, m):
            if yi > high or yi < low:
                edge = high if yi > high else low
                ax.plot([xi], [edge], "^" if yi > high else "v", color=color, ms=8, clip_on=False,
                        zorder=4)
                ax.annotate(f"{yi:.4g}", (xi, edge), textcoords="offset points",
                            xytext=(6, -10 if yi > high else 4), fontsize=7, color=color)
    return True


@dataclass
class Reached:
    """The equilibria the scoring's draws reached at one method's answers in one experiment:
    per equilibrium its grid point's position (the index of the point), the leader's
    objective there, its frequency among its cell's draws and its count of draws."""

    label: str
    x: list = field(default_factory=list)
    objective: list = field(default_factory=list)
    frequency: list = field(default_factory=list)
    count: list = field(default_factory=list)
    cells: int = 0  # cells with equilibria stored

    @property
    def equilibria(self) -> int:
        return len(self.x)


def equilibria_reached(t) -> dict[str, Reached]:
    """Per method (and other setting) of ``t``, the equilibria its answers reached (see
    :class:`Reached`); methods whose cells stored none are left out."""
    position = {p: i for i, p in enumerate(t.points)}
    out: dict[str, Reached] = {}
    for g in sorted(t.groups, key=lambda g: (g.method, t.others(g.params))):
        other = t.others(g.params)
        label = g.method if not other else f"{g.method} ({other})"
        for r in g.answers():
            groups = r.get("equilibria") or []  # decoded by the store
            if not groups:
                continue
            seen = out.setdefault(label, Reached(label))
            seen.cells += 1
            for e in groups:
                seen.x.append(position.get(g.pkey, 0))
                seen.objective.append(float(e["objective"]))
                seen.frequency.append(float(e["frequency"]))
                seen.count.append(int(e["count"]))
    return out


def draw_equilibria(t):
    """The figure of the equilibria reached at each method's answers (see the module
    docstring), or None where no cell stored any."""
    reached = equilibria_reached(t)
    if not reached:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    width = 0.6 / max(len(reached), 1)
    for k, seen in enumerate(reached.values()):
        off = (k - (len(reached) - 1) / 2) * width
        ax.scatter(np.array(seen.x, dtype=float) + off, seen.objective,
                   s=12 + 160 * np.array(seen.frequency), alpha=0.55, edgecolors="black",
                   linewidths=0.4, label=f"{seen.label}: {seen.equilibria} equilibria in "
                                         f"{seen.cells} cells")
    ax.set_xticks(range(len(t.points)))
    labels = [json.loads(p).get(t.axis, "") if t.axis else "" for p in t.points]
    ax.set_xticklabels([f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in labels],
                       fontsize=8)
    ax.set_xlabel(t.axis or "grid point")
    ax.set_ylabel("leader objective at the equilibrium\n(area: its share of the draws)")
    name = t.name if t.name == t.game else f"{t.name} ({t.game})"
    fixed = t.fixed_text()
    ax.set_title(f"Equilibria reached: {name}" + (f"\n{fixed}" if fixed else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def figures(tables, out: Path) -> list[Path]:
    """Every figure of every table with a numeric axis, as PNG and SVG in ``out``; and every
    table's equilibria reached (:func:`draw_equilibria`) where its cells stored them."""
    plt = _pyplot()
    written = []

    def save(fig, t, kind):
        for ext in ("png", "svg"):
            path = Path(out) / f"{t.name.replace('/', '-')}-{kind}.{ext}"  # config/experiment
            fig.savefig(path, dpi=130 if ext == "png" else None)
            written.append(path)
        plt.close(fig)

    for t in tables:
        if numeric_axis(t):  # categories (problem names...): the tables say it better
            for kind in KINDS:
                save(draw(t, kind), t, kind)
        fig = draw_equilibria(t)
        if fig is not None:
            save(fig, t, "equilibria")
    return written
