"""The report: tables, figures, gaps to certified bounds, and refusal of mismatched instances."""
import argparse
import csv
import json
import math
import os
import re
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_harness_toys as toys  # noqa: E402

from stackopt.comparisons import cli  # noqa: E402
from stackopt.comparisons.config import parse_config  # noqa: E402
from stackopt.comparisons.report import FingerprintMismatch, make_report  # noqa: E402
from stackopt.comparisons.runner import run_cell  # noqa: E402
from stackopt.comparisons.store import Store  # noqa: E402

CONFIG = """
plugins = ["test_harness_toys"]
seeds = [1, 2, 3]
time_limit = 30
[experiments.toy]
game = "harness_toy"
axis = "budget"
[experiments.toy.grid]
budget = [0.5, 1.5]
size = 2
[experiments.toy.methods.test-sleep]
[experiments.toy.methods.test-random]
scale = 2.0
[experiments.toy.methods.test-exact]
[experiments.toy.methods.test-crash]
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """A store filled in-process (no workers): 2 budgets x 3 seeds x 4 methods."""
    config = parse_config(CONFIG, name="toyreport")
    path = tmp_path_factory.mktemp("store") / "results.sqlite"
    with Store.open(path) as store:
        run = store.start_run(config_name=config.name, config_text=config.text, argv=[],
                              scheduler="in-process", versions={}, machine={})
        for cell in config.cells():
            row = run_cell(cell)
            row["run_id"] = run
            assert store.insert(row)
            assert not store.insert(row)  # the unique key refuses a second copy
    return path


def _summary(out):
    with open(out / "summary.csv") as fh:
        return {(r["axis_value"], r["method"]): r for r in csv.DictReader(fh)}


def test_report_writes_tables_and_figures(db, tmp_path):
    out = tmp_path / "report"
    paths = make_report(str(db), str(out))
    names = {p.name for p in paths}
    for kind in ("objective", "violation", "runtime"):
        for ext in ("png", "svg"):
            assert f"toy-{kind}.{ext}" in names
            assert (out / f"toy-{kind}.{ext}").stat().st_size > 1000
    assert (out / "toy-objective.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"report.md", "summary.csv", "cells.csv"} <= names

    summary = _summary(out)
    assert len(summary) == 8
    # the mean and standard error agree with the closed form of the toy game
    objs = []
    for seed in (1, 2, 3):
        data = toys.toy_data(seed, 2)
        p = np.random.default_rng(seed).uniform(0.0, 2.0, 1)[0]
        objs.append(toys.toy_value(data, 1.5, p)[0])
    row = summary[("1.5", "test-random")]
    assert float(row["objective_mean"]) == pytest.approx(np.mean(objs), abs=1e-4)  # oracle tolerance
    assert float(row["objective_se"]) == pytest.approx(np.std(objs, ddof=1) / math.sqrt(3), abs=1e-4)
    assert row["cells"] == "3" and row["failed"] == "0"
    crash = summary[("0.5", "test-crash")]
    assert crash["failed"] == "3" and crash["objective_mean"] in ("", "nan")
    # gaps to the bound certified by test-exact (status optimal): zero for itself,
    # non-negative for the feasible initial strategy
    assert float(summary[("1.5", "test-exact")]["gap_mean"]) == pytest.approx(0.0, abs=1e-4)
    sleep = summary[("1.5", "test-sleep")]
    assert int(sleep["gap_instances"]) == 3 and float(sleep["gap_mean"]) > 0

    md = (out / "report.md").read_text()
    assert "## toy (game `harness_toy`)" in md
    assert "| budget | 0.5 | 1.5 |" in md
    assert "gap to certified bound" in md
    assert "![objective](toy-objective.png)" in md
    with open(out / "cells.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 24


def test_report_refuses_rows_of_one_instance_with_different_data(db, tmp_path):
    src = sqlite3.connect(db)
    db = tmp_path / "copy.sqlite"
    con = sqlite3.connect(db)
    src.backup(con)
    src.close()
    con.execute("UPDATE cells SET fingerprint = ? WHERE method = 'test-random' AND seed = 2 "
                "AND params = ?", ("0" * 64, json.dumps({"budget": 1.5, "size": 2},
                                                         separators=(",", ":"), sort_keys=True)))
    assert con.total_changes == 1
    con.commit()
    con.close()
    with pytest.raises(FingerprintMismatch,
                       match=r"refusing to compare: game 'harness_toy' .*budget.:1.5.* seed 2 .*"
                             r"000000000000: toy/test-random"):
        make_report(str(db), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "report.md").exists()


def test_report_errors(db, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        make_report(str(tmp_path / "nothing.sqlite"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match=r"has no cells for experiments \['other'\]"):
        make_report(str(db), str(tmp_path / "out"), experiments=["other"])


def _parser():
    parser = argparse.ArgumentParser(prog="stackopt")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.register(sub)
    return parser


def test_cli_wiring(db, tmp_path, capsys):
    parser = _parser()
    args = parser.parse_args(["compare"])
    assert args.config == "quick" and args.db == "results.sqlite" and args.workers == 2
    assert args.scheduler is None and args.func is cli.compare_command
    args = parser.parse_args(["compare", "paper-nfg", "--seeds", "1-5", "--workers", "1",
                              "--scheduler", "tcp://127.0.0.1:8786", "--methods", "gradient,initial"])
    assert args.seeds == "1-5" and args.methods == ["gradient", "initial"]
    with pytest.raises(SystemExit):
        parser.parse_args(["compare", "--workers", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err

    out = tmp_path / "rep"
    args = parser.parse_args(["report", str(db), "--out", str(out)])
    assert args.func(args) == 0 and (out / "report.md").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiments.x]\ngame = "chess"\nseeds = [1]\n')
    args = parser.parse_args(["compare", str(bad), "--db", str(tmp_path / "new.sqlite")])
    assert args.func(args) == 2
    assert "unknown game 'chess'" in capsys.readouterr().err
    assert not (tmp_path / "new.sqlite").exists()  # nothing started
    notours = tmp_path / "notes.sqlite"
    notours.write_text("not a database")
    args = parser.parse_args(["report", str(notours)])
    assert args.func(args) == 2
    assert "not a stackopt results database" in capsys.readouterr().err
    cfg = tmp_path / "ok.toml"
    cfg.write_text(CONFIG)
    args = parser.parse_args(["compare", str(cfg), "--db", str(notours)])
    assert args.func(args) == 2
    assert "not a stackopt results database" in capsys.readouterr().err
    args = parser.parse_args(["compare", str(cfg), "--db", str(db), "--dry-run"])
    assert args.func(args) == 0
    assert "24 cells, 24 already in" in capsys.readouterr().err


def test_stackopt_command_line_reaches_the_harness(db, tmp_path, capsys):
    from stackopt.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('[experiments.x]\ngame = "nfg"\nseeds = [1]\n[experiments.x.methods.nope]\n')
    assert main(["compare", str(bad), "--db", str(tmp_path / "new.sqlite")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["report", str(db), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "toy-objective.svg").exists()


# ------------------------------------------------------------------------- figures
from stackopt.comparisons.figures import REFERENCE_LABEL, VIOLATION_REFERENCE, draw, robust_range  # noqa: E402,E501
from stackopt.comparisons.report import README_FIGURES, build_tables  # noqa: E402


def test_robust_range_sets_an_outlier_aside():
    assert robust_range([-3.5, -3.53, -3.4, -3.2, -3.45, -192.0]) == (-3.53, -3.2)
    assert robust_range([1.0, 1.2, 0.9, 1.1, 40.0]) == (0.9, 1.2)
    assert robust_range([-3.5, -3.53, -3.4, -3.2, -3.45, -3.1]) is None  # nothing stands out
    assert robust_range([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]) is None
    assert robust_range([1.0, 1.0, 1.0, 50.0]) is None  # the rest has no spread to flatten
    # a cluster far away is data, not an outlier: at most a fifth of the points is set aside
    assert robust_range([1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 9.0, 9.1, 9.2, 9.3]) is None


def _row(method, budget, seed, objective, violation=0.0, status="converged"):
    return {"experiment": "fig", "game": "harness_toy", "params": json.dumps({"budget": budget}),
            "seed": seed, "method": method, "status": status, "leader_objective": objective,
            "initial_objective": -5.0, "constraint_violation": violation,
            "equilibrium_residual": 1e-9, "wall_time_s": 0.1, "sense": "maximize", "bound": None,
            "fingerprint": None}


def _table(rows):
    (t,) = build_tables(rows, {"fig": "budget"})
    return t


def test_objective_figure_clips_an_outlier_and_labels_it():
    rows = [_row(m, b, s, base + 0.1 * b + 0.01 * s)
            for m, base in (("a", -3.5), ("b", -3.4), ("c", -3.6)) for b in (0.0, 0.5, 1.0)
            for s in (1, 2)]
    rows = [r if not (r["method"] == "c" and r["params"] == json.dumps({"budget": 1.0}))
            else dict(r, leader_objective=-192.0) for r in rows]
    fig = draw(_table(rows), "objective")
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert -6 < low < -3.6 and high < -2.5  # the axis shows the methods, not the outlier...
    assert any(t.get_text() == "-192" for t in ax.texts)  # ...which is labelled at the edge
    assert any("beyond the axis" in t.get_text() for t in ax.get_legend().get_texts())


def test_objective_figure_without_outliers_is_not_clipped():
    rows = [_row(m, b, s, base + b) for m, base in (("a", -3.0), ("b", -30.0))
            for b in (0.0, 1.0) for s in (1, 2)]
    ax = draw(_table(rows), "objective").axes[0]
    low, high = ax.get_ylim()
    assert low < -30 and high > -2 and not ax.texts


def test_means_over_fewer_seeds_are_marked():
    rows = [_row(m, b, s, -3.0 + b) for m in ("a", "b") for b in (0.0, 1.0) for s in (1, 2)]
    rows = [r if not (r["method"] == "b" and r["seed"] == 2 and "1.0" in r["params"])
            else dict(r, status="error", leader_objective=None) for r in rows]
    ax = draw(_table(rows), "objective").axes[0]
    assert [t.get_text() for t in ax.texts] == ["n=1"]
    assert any("fewer than 2 seeds" in t.get_text() for t in ax.get_legend().get_texts())
    full = [_row(m, b, s, -3.0 + b) for m in ("a", "b") for b in (0.0, 1.0) for s in (1, 2)]
    ax = draw(_table(full), "objective").axes[0]
    assert not ax.texts


@pytest.mark.parametrize("largest, drawn", [(1e-7, False), (5e-2, True)])
def test_violation_reference_line_only_inside_the_range(largest, drawn):
    rows = [_row(m, b, s, -3.0, violation=largest * b) for m in ("a", "b") for b in (0.0, 1.0)
            for s in (1, 2)]
    ax = draw(_table(rows), "violation").axes[0]
    low, high = ax.get_ylim()
    lines = [ln for ln in ax.get_lines() if ln.get_label() == REFERENCE_LABEL]
    assert bool(lines) is drawn
    assert high < VIOLATION_REFERENCE or drawn  # the line did not stretch the axis


# ------------------------------------------------------------------ README figures
README = Path(__file__).resolve().parents[2] / "README.md"
QUICK = """
plugins = ["test_harness_toys"]
seeds = [1, 2]
time_limit = 30
[experiments.ssg]
game = "harness_toy"
axis = "budget"
[experiments.ssg.grid]
budget = [0.5, 1.5]
[experiments.ssg.methods.test-random]
[experiments.ssg.methods.test-exact]
"""


def _store(path, name):
    return toys.fill_store(path, QUICK, name)


def test_report_docs_writes_the_readme_figures(tmp_path, capsys):
    from stackopt.cli import main

    db = _store(tmp_path / "results.sqlite", "quick")
    docs = tmp_path / "docs"
    assert main(["report", str(db), "--out", str(tmp_path / "report"), "--docs", str(docs)]) == 0
    for name in README_FIGURES:
        assert (docs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (docs / name).stat().st_size > 1000
    assert str(docs / "quick-ssg-objective.png") in capsys.readouterr().out


def test_readme_shows_only_figures_the_command_makes():
    text = README.read_text()
    shown = set(re.findall(r"\]\(docs/([\w.-]+\.png)\)", text))
    assert shown and shown <= set(README_FIGURES)
    assert "--docs docs" in text  # the documented command


def test_report_docs_names_the_figures_a_store_cannot_make(tmp_path, capsys):
    from stackopt.cli import main

    db = _store(tmp_path / "other.sqlite", "paper-ssg")
    assert main(["report", str(db), "--out", str(tmp_path / "r"), "--docs", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "quick-ssg-objective.png (experiment 'ssg' of config 'quick')" in err
    assert "stackopt compare" in err


# ------------------------------------------------------- reports that decide
def _decide_rows():
    """Three methods at two budgets, two seeds: 'b' has the best objective but one
    infeasible answer at budget 1.0; 'c' stopped at its time limit (with answers)."""
    rows = []
    for b in (0.0, 1.0):
        for s in (1, 2):
            rows.append(_row("a", b, s, -3.0 + b))
            rows.append(_row("b", b, s, -2.0 + b,
                             violation=0.5 if (b == 1.0 and s == 1) else 1e-9))
            rows.append(_row("c", b, s, -3.5 + b, status="time_limit"))
    return rows


def test_tables_name_the_best_feasible_method_and_mark_the_others():
    from stackopt.comparisons.report import markdown

    t = _table(_decide_rows())
    p0, p1 = t.points
    assert t.best(p0) == ["b"] and t.best(p1) == ["a"]  # b's infeasible answer rules it out
    md = markdown([t], "x.sqlite", [])
    assert "**Leader objective (maximised)**" in md
    assert "| **best feasible** | b | a |" in md
    assert re.search(r"\| b \| -2 ± 0 \| -1 ± 0 ✗1/2 \|", md), md
    assert re.search(r"\| c \| -3.5 ± 0 † \| -2.5 ± 0 † \|", md), md
    # the report explains its symbols and units itself
    for text in ("*✗k/N*", "*†*", "*best feasible*", "*(n=k)*", "*gap to certified bound*",
                 "*time (s)*: the method's wall clock in seconds", "violation exceeds 1e-06"):
        assert text in md, text
    # a looser tolerance makes b's answer feasible: it is then the best everywhere
    loose = _table_with(_decide_rows(), tol=1.0)
    assert [loose.best(p) for p in loose.points] == [["b"], ["b"]]
    # ties within the relative tolerance are all named
    tied = [dict(r, leader_objective=-3.0 + json.loads(r["params"])["budget"])
            if r["method"] == "b" else r for r in _decide_rows()]
    assert _table(tied).best(p0) == ["a", "b"]
    with pytest.raises(ValueError, match="feasibility tolerance must be a finite number >= 0"):
        _table_with(_decide_rows(), tol=-1.0)
    # problems of one experiment may differ in sense (the known-optimum library): each point's own
    mixed = [dict(r, sense="minimize") if "1.0" in r["params"] else r for r in _decide_rows()]
    t = _table(mixed)
    assert t.mixed and t.best(p0) == ["b"] and t.best(p1) == ["c"]  # the least objective at 1.0
    md = markdown([t], "x.sqlite", [])
    assert "(each grid point in its own sense: ↑ maximised, ↓ minimised)" in md
    assert "| budget | 0.0 ↑ | 1.0 ↓ |" in md


def _table_with(rows, tol):
    (t,) = build_tables(rows, {"fig": "budget"}, tol)
    return t


def test_figures_mark_infeasible_and_time_limited_means():
    ax = draw(_table(_decide_rows()), "objective").axes[0]
    crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x" and ln.get_color() == "red"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata().round(1)) == [1.0]  # b at budget 1
    squares = [ln for ln in ax.get_lines() if ln.get_marker() == "s"]
    assert len(squares) == 1 and len(squares[0].get_xdata()) == 2  # c at both budgets
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("infeasible answer among its cells (violation > 1e-06)") for t in legend)
    assert "cells stopped at their time limit" in legend
    clean = [r for r in _decide_rows() if r["method"] == "a"]
    ax = draw(_table(clean), "objective").axes[0]
    assert not [ln for ln in ax.get_lines() if ln.get_marker() in ("x", "s")]


def test_summary_csv_counts_time_limited_apart_from_failures(tmp_path):
    from stackopt.comparisons.report import write_csv

    rows = _decide_rows()
    t = _table(rows)
    write_csv([t], rows, tmp_path)
    with open(tmp_path / "summary.csv") as fh:
        got = {(r["axis_value"], r["method"]): r for r in csv.DictReader(fh)}
    c = got[("1.0", "c")]
    assert c["failed"] == "0" and c["time_limited"] == "2" and c["objective_mean"] != ""
    assert got[("1.0", "b")]["infeasible"] == "1" and got[("1.0", "b")]["best_feasible"] == "0"
    assert got[("1.0", "a")]["best_feasible"] == "1" and got[("0.0", "b")]["best_feasible"] == "1"


def test_results_page_states_its_commands_tables_and_figures(tmp_path):
    db = _store(tmp_path / "results.sqlite", "quick")
    with Store.open(db) as store:  # the commands as the runs recorded them
        store.conn.execute("UPDATE runs SET argv = ?", (json.dumps(
            ["/venv/bin/stackopt", "compare", "--db", str(db), "--workers", "1", "--seeds",
             "1-2", "--scheduler", "tcp://10.0.0.1:8786", "--no-progress"]),))
        store.conn.commit()
    docs = tmp_path / "docs"
    paths = make_report(str(db), str(tmp_path / "report"), docs=str(docs))
    page = (docs / "results.md").read_text()
    assert docs / "results.md" in paths
    assert "`stackopt report results.sqlite --out report --docs docs`" in page
    assert "## The main job: config `quick`" in page
    assert "Made by `stackopt compare --seeds 1-2`." in page  # neutral flags and paths left out
    assert str(tmp_path) not in page  # nothing of this machine's paths
    assert "| **best feasible** |" in page and "*best feasible*" in page
    for kind in ("objective", "improvement", "violation"):
        assert f"](quick-ssg-{kind}.png)" in page
        assert (docs / f"quick-ssg-{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(README_FIGURES) <= {p.name for p in paths}


def test_a_database_of_several_configs_reports_each_apart(tmp_path):
    db = _store(tmp_path / "results.sqlite", "quick")
    toys.fill_store(db, QUICK.replace("budget = [0.5, 1.5]", "budget = [0.25, 2.0]"), "paper-ssg")
    out = tmp_path / "report"
    make_report(str(db), str(out), docs=str(tmp_path / "docs"))
    md = (out / "report.md").read_text()
    assert "## quick/ssg (game `harness_toy`)" in md and "## paper-ssg/ssg (game" in md
    assert (out / "quick-ssg-objective.png").exists() and (out / "paper-ssg-ssg-objective.png").exists()
    page = (tmp_path / "docs" / "results.md").read_text()
    assert page.index("## The main job: config `quick`") < page.index("## Config `paper-ssg`")
    assert (tmp_path / "docs" / "paper-ssg-ssg-objective.png").exists()


def test_published_means_are_shown_beside_the_results_with_their_source(tmp_path):
    db = _store(tmp_path / "results.sqlite", "quick")
    toys.fill_store(db, QUICK.replace("budget = [0.5, 1.5]", "budget = [0.25, 2.0]") + """
[experiments.ssg.reported]
source = "a paper's Table 2"
[experiments.ssg.reported.gradient]
leader_objective = [-3.25, nan]
constraint_violation = [0.004, 0.5]
""", "paper-ssg")
    out = tmp_path / "report"
    make_report(str(db), str(out), docs=str(tmp_path / "docs"))
    for text in ((out / "report.md").read_text(), (tmp_path / "docs" / "results.md").read_text()):
        paper = text[text.index("paper-ssg"):]
        assert "| *reported: gradient* | -3.25 | - |" in paper  # the objective row, nan as -
        assert "| *reported: gradient* | 0.004 | 0.5 |" in paper  # the violation row
        assert "*reported*: a paper's Table 2" in paper
        assert "*reported" not in text[:text.index("paper-ssg")]  # quick's tables have none
        assert "gradient" not in paper.split("**best feasible**")[1].split("\n")[0]  # never a winner


def test_figures_draw_the_published_means_at_the_axis_values_shown():
    from stackopt.comparisons.config import Reported

    t = _table([_row("a", b, s, -3.0 + b) for b in (0.0, 1.0) for s in (1, 2)])
    t.reported = Reported("a paper", "budget", (0.0, 0.5, 1.0), {
        "gradient": {"leader_objective": (-3.5, -3.2, float("nan"))}})
    ax = draw(t, "objective").axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "reported: gradient"]
    assert list(line.get_xdata()) == [0.0] and list(line.get_ydata()) == [-3.5]  # 0.5 not run
    assert "reported: gradient" in [x.get_text() for x in ax.get_legend().get_texts()]
    assert not [ln for ln in draw(t, "violation").axes[0].get_lines()
                if ln.get_label().startswith("reported")]  # no violations published


def test_the_results_page_is_generated_and_its_figures_exist():
    docs = README.parent / "docs"
    page = (docs / "results.md").read_text()
    assert "`stackopt report results.sqlite --out report --docs docs`" in page  # made, not typed
    assert "## The main job: config `quick`" in page and "Made by `stackopt compare" in page
    linked = re.findall(r"\]\(([\w.-]+\.png)\)", page)
    assert linked and all((docs / name).is_file() for name in linked)
    assert "(docs/results.md)" in README.read_text()


# ------------------------------------------------- intervals from the scoring's draws
def _drawn(rows, half):
    """``rows`` with the scoring's 95 % interval of half-width ``half(row)`` stored."""
    return [dict(r, objective_low=r["leader_objective"] - half(r),
                 objective_high=r["leader_objective"] + half(r), draws=20) for r in rows]


def test_a_winner_only_where_the_intervals_separate():
    from stackopt.comparisons.report import markdown

    rows = [r for r in _decide_rows() if r["method"] != "b"]  # a beats c by 0.5 at each budget
    # at budget 0 the cells' intervals are 0.6 wide on each side: a group of two seeds
    # is sqrt(2) * 0.6 / 2 = 0.42 wide on each side, and a's and c's overlap; at budget 1
    # they are 0.1 wide and separate
    t = _table(_drawn(rows, lambda r: 0.6 if '"budget": 0.0' in r["params"] else 0.1))
    p0, p1 = t.points
    a0 = next(g for g in t.groups if g.pkey == p0 and g.method == "a")
    assert a0.interval() == pytest.approx((-3.0 - 0.6 / math.sqrt(2), -3.0 + 0.6 / math.sqrt(2)))
    assert t.best(p0) == ["a", "c"] and t.best(p1) == ["a"]
    md = markdown([t], "x.sqlite", [])
    assert "| **best feasible** | tie: a = c | a |" in md
    assert "| a | -3 [-3.4243, -2.5757] | -2 [-2.0707, -1.9293] |" in md, md
    assert "*tie: a = b*" in md and "95 % interval [low, high]" in md
    # without stored intervals (a database written before them), as before: mean ± s.e.
    old = _table(rows)
    assert old.best(p0) == ["a"] and "| **best feasible** | a | a |" in markdown([old], "x", [])


def test_exact_scores_say_so_and_decide_by_the_tolerance():
    from stackopt.comparisons.report import markdown

    rows = [r for r in _decide_rows() if r["method"] != "b"]
    t = _table([dict(r, draws=1) for r in _drawn(rows, lambda r: 0.0)])
    assert [t.best(p) for p in t.points] == [["a"], ["a"]]
    assert "| a | -3 (exact) | -2 (exact) |" in markdown([t], "x.sqlite", [])
    # identical draws of a game not known to have one equilibrium: a zero-wide interval
    t = _table(_drawn(rows, lambda r: 0.0))
    assert "| a | -3 [-3, -3] | -2 [-2, -2] |" in markdown([t], "x.sqlite", [])


def test_objective_figure_draws_the_intervals():
    rows = _drawn([r for r in _decide_rows() if r["method"] == "a"], lambda r: 0.3)
    ax = draw(_table(rows), "objective").axes[0]
    assert "95 % interval" in ax.get_ylabel()
    (bars,) = [c for c in ax.containers]
    segments = bars.lines[2][0].get_segments()
    assert [round(float(s[1, 1] - s[0, 1]), 6) for s in segments] == [round(0.6 / math.sqrt(2), 6)] * 2
    ax = draw(_table([r for r in _decide_rows() if r["method"] == "a"]), "objective").axes[0]
    assert "mean ± s.e." in ax.get_ylabel()


def test_a_sweep_stores_the_draws_and_the_report_reads_them(tmp_path):
    db = _store(tmp_path / "results.sqlite", "quick")
    with Store.open(db, readonly=True) as store:
        rows = store.rows()
    ok = [r for r in rows if r["status"] not in ("error", "solver_error")]
    assert ok and all(r["draws"] >= 1 and r["objective_low"] <= r["leader_objective"]
                      <= r["objective_high"] for r in ok)
    assert all(sum(e["count"] for e in r["equilibria"]) == r["draws"] for r in ok)
    out = tmp_path / "report"
    make_report(str(db), str(out))
    with open(out / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert all(r["objective_low"] != "" and r["draws_min"] != "" for r in summary
               if r["objective_mean"] not in ("", "nan"))


def test_reference_table_shows_intervals_and_beats_the_reference_only_beyond_them():
    from stackopt.comparisons.reference_table import collect, format_table

    recorded = -3.108003854751587  # the reference's seed 36, budget 1 (models/data)
    params = json.dumps({"budget": 1.0, "reference_seed": 36, "reimburse": "all"})

    def row(method, objective, half):
        return dict(experiment="ssg", game="ssg", seed=0, method=method, params=params,
                    sense="maximize", status="converged", leader_objective=objective,
                    constraint_violation=0.0, initial_objective=-3.81,
                    objective_low=objective - half, objective_high=objective + half)

    (t,) = collect([row("clear", recorded + 0.05, 0.01), row("within", recorded + 0.005, 0.01),
                    row("exact", recorded + 0.001, 0.0)])
    text = format_table(t)
    assert f"| {recorded + 0.05:.4f} ±0.0100 | 0 | converged |" in text
    assert f"| {recorded + 0.001:.4f} | 0 | converged |" in text  # exact: no interval shown
    assert "clear: mean" in text and "better than the reference" in text
    for method, better in (("clear", 1), ("within", 0), ("exact", 1)):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{method}: mean"))
        assert f"on {better} of 1 seeds" in line, line


def test_report_draws_the_equilibria_reached_with_their_counts(db, tmp_path):
    """One figure per experiment of the equilibria the scoring's draws reached at each
    method's answers: the toy game's equilibrium is unique (one per cell); a cell whose
    draws reached two equilibria shows both, at their frequencies."""
    from stackopt.comparisons.figures import equilibria_reached
    from stackopt.comparisons.tables import build_tables

    copy = tmp_path / "copy.sqlite"
    src, con = sqlite3.connect(db), sqlite3.connect(copy)
    src.backup(con)
    src.close()
    two = [{"count": 9, "frequency": 0.75, "objective": -1.0, "violation": 0.0},
           {"count": 3, "frequency": 0.25, "objective": -2.0, "violation": 0.0}]
    con.execute("UPDATE cells SET equilibria = ? WHERE method = 'test-random' AND seed = 1 "
                "AND params = ?", (json.dumps(two), json.dumps({"budget": 1.5, "size": 2},
                                                                separators=(",", ":"), sort_keys=True)))
    assert con.total_changes == 1
    con.commit()
    con.close()
    out = tmp_path / "report"
    names = {p.name for p in make_report(str(copy), str(out))}
    for ext in ("png", "svg"):
        assert f"toy-equilibria.{ext}" in names and (out / f"toy-equilibria.{ext}").stat().st_size > 1000
    assert "![equilibria](toy-equilibria.png)" in (out / "report.md").read_text()

    with Store.open(copy, create=False) as store:
        rows = store.rows()
    (table,) = build_tables(rows)
    reached = equilibria_reached(table)
    assert "test-crash" not in reached  # no answer, nothing reached
    assert {m: (r.equilibria, r.cells) for m, r in reached.items()} == {
        "test-exact": (6, 6), "test-sleep": (6, 6), "test-random": (7, 6)}
    rnd = reached["test-random"]
    assert sorted(rnd.count) == [1, 1, 1, 1, 1, 3, 9]
    assert sorted((x, f, o) for x, f, o, c in zip(rnd.x, rnd.frequency, rnd.objective, rnd.count)
                  if c > 1) == [(1, 0.25, -2.0), (1, 0.75, -1.0)]  # budget 1.5: the second point
    assert all(f == 1.0 for f, c in zip(rnd.frequency, rnd.count) if c == 1)
