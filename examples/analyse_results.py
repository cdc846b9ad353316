"""Read a results database into pandas, tabulate it, and plot convergence curves.

``stackopt.comparisons.load`` gives one row per cell (pandas: ``pip install
"stackopt[analysis]"``); ``stackopt.plot_history`` draws a cell's stored history
(objective, violation, stationarity per step). Run it on any results database:

    stackopt compare examples/compare_my_game.toml --db commons.sqlite
    python examples/analyse_results.py commons.sqlite --out commons-plots
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window

import stackopt  # noqa: E402
from stackopt.comparisons import load  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", help="results database written by stackopt compare")
    ap.add_argument("--out", default="plots", help="folder for the figures (default plots)")
    args = ap.parse_args(argv)
    frame = load(args.db)
    print(f"{len(frame)} cells, methods {sorted(frame.method.unique())}")
    axis = [c for c in frame.columns if c in set().union(*frame.params)]  # the grid parameters
    table = frame.pivot_table(index=axis or "game", columns="method", values="leader_objective",
                              aggfunc="mean")
    print("mean leader objective:")
    print(table.round(4).to_string())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for method, rows in frame[frame.history.map(bool)].groupby("method"):
        row = rows.iloc[0]  # the first cell of each method that recorded steps
        title = f"{method}, {row.game} {row.params} seed {row.seed}: {row.status}"
        path = out / f"convergence-{method}.png"
        stackopt.plot_history(row.history, path, title=title)
        written.append(path)
    print("convergence figures: " + ", ".join(str(p) for p in written))
    return 0 if written else 1


if __name__ == "__main__":
    raise SystemExit(main())
