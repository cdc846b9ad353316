"""Comparison configs: which games, grid points, seeds and methods a sweep runs.

A config is a TOML file holding one or more experiments::

    time_limit = 600            # seconds per cell (defaults for every experiment)
    seeds = "1-30"              # a list of integers or ranges "1-30", "1,4,7-9"

    [experiments.nfg]
    game = "nfg"                # stackopt.models.available_games(), or module:function or
                                # path/to/file.py:function (relative to this file's folder)
    precision = 1e-3            # scoring: draws for a standard error of the mean objective
    max_draws = 50              # of at most this times its scale, at most max_draws draws
                                # (both also at the top; defaults in stackopt.scoring)
    axis = "budget"             # x axis of the report's figures (default: the varied parameter)
    [experiments.nfg.grid]      # a list sweeps a parameter, a scalar fixes it
    budget = [0, 1, 2, 3, 4, 5]
    actions = 10
    [experiments.nfg.methods.gradient]   # stackopt.methods.available_methods()
    steps = 5000                          # options validated by method_config()
    [experiments.nfg.methods.slsqp]
    time_limit = 60                       # reserved key: this method's own cell time limit
    [experiments.nfg.reported]            # published means to show beside the results
    source = "Wang et al. (AAAI 2022), means over their 30 instances"
    [experiments.nfg.reported.gradient]   # a label (a method of the publication)
    leader_objective = [15.269, 16.114, 17.165, 18.149, 19.196, 20.481]  # one per axis value
    constraint_violation = [0, 0.0016, 0.0026, 0.0033, 0.0036, 0.0054]   # (nan: not given)

``all_methods = true`` in an experiment (or at the top) adds every registered
method with default options, besides those listed. ``plugins = ["module"]``
names modules (or ``.py`` files) to import first (in the parent and in every
worker) that register extra games or methods. A game of your own is named by
reference, ``game = "my_game.py:build"``: its parameters are its builder's
(:mod:`stackopt.models.locate`). Paths, and modules that are not importable as
they stand, are looked for in the config's folder, so neither needs
``PYTHONPATH``. Everything is checked by :func:`load_config` before any cell
runs: each problem is a ``ValueError`` naming the value.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from stackopt.core import did_you_mean

DEFAULT_TIME_LIMIT = 600.0
DEFAULT_GRACE = 60.0

_TOP_KEYS = {"description", "time_limit", "kill_grace", "seeds", "plugins", "all_methods",
             "methods", "experiments", "precision", "max_draws"}
_EXP_KEYS = {"description", "game", "grid", "seeds", "methods", "all_methods", "time_limit",
             "kill_grace", "axis", "precision", "max_draws", "reported"}
REPORTED_COLUMNS = ("leader_objective", "constraint_violation")


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method on one instance (game, parameters, seed)."""

    experiment: str
    game: str
    params: tuple  # sorted (name, value) pairs
    seed: int
    method: str
    options: tuple  # sorted (name, value) pairs, as given in the config
    time_limit: float
    kill_after: float  # hard wall-clock guard in seconds
    plugins: tuple = ()  # where to import them from (see import_plugins)
    game_ref: str = ""  # where a game named by reference loads from anywhere (not part of the key)
    # the scoring's precision and max_draws where the config gives them (sorted pairs; not part
    # of the key, as the time limit is not)
    scoring: tuple = ()

    @property
    def params_json(self) -> str:
        return canonical_json(dict(self.params))

    @property
    def options_json(self) -> str:
        return canonical_json(dict(self.options))

    @property
    def key(self) -> tuple:
        """The store's unique key of this cell."""
        return (self.experiment, self.game, self.params_json, self.seed, self.method,
                self.options_json)


@dataclass(frozen=True)
class Reported:
    """Published means at an experiment's grid points, which its report shows beside its own
    (the ``[experiments.NAME.reported]`` table: a ``source`` and, per label, one value per
    axis value and column of :data:`REPORTED_COLUMNS`, NaN where the source gives none)."""

    source: str
    axis: str
    at: tuple  # the axis values, in the grid's order
    values: dict  # label -> column -> tuple of values, one per entry of ``at``

    def value(self, label: str, column: str, point: dict) -> float:
        """The published ``column`` of ``label`` at grid point ``point``; NaN where none."""
        vals = self.values.get(label, {}).get(column)
        x = point.get(self.axis)
        if vals is None or x is None:
            return math.nan
        for a, v in zip(self.at, vals):
            if a == x:
                return v
        return math.nan


def parse_reported(exp: dict, where: str) -> Reported | None:
    """The experiment table's ``reported`` table, checked against its ``axis`` and ``grid``
    (None where it has none); a ValueError names what is wrong."""
    raw = exp.get("reported")
    if raw is None:
        return None
    raw = _table(raw, f"{where}: reported")
    axis = exp.get("axis")
    grid = exp.get("grid") if isinstance(exp.get("grid"), dict) else {}
    if not isinstance(axis, str) or not isinstance(grid.get(axis), list):
        raise ValueError(f"{where}: reported values are given per axis value; set axis = \"NAME\" "
                         "to a parameter the grid sweeps (a list)")
    at = tuple(grid[axis])
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"{where}: reported needs source = \"...\" (where the numbers are "
                         f"published), got {source!r}")
    values = {}
    for label, cols in raw.items():
        if label == "source":
            continue
        cols = _table(cols, f"{where}: reported.{label}")
        _check_keys(cols, set(REPORTED_COLUMNS), f"{where}: reported.{label}")
        values[label] = {}
        for col, vals in cols.items():
            if not isinstance(vals, list) or len(vals) != len(at) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                raise ValueError(f"{where}: reported.{label}.{col} must be a list of {len(at)} "
                                 f"numbers (one per value of {axis} = {list(at)}; nan where the "
                                 f"source gives none), got {vals!r}")
            values[label][col] = tuple(float(v) for v in vals)
    if not values:
        raise ValueError(f"{where}: reported gives no values: add [reported.LABEL] tables with "
                         f"{' and/or '.join(REPORTED_COLUMNS)}")
    return Reported(source.strip(), axis, at, values)


@dataclass
class Experiment:
    name: str
    game: str
    grid: dict[str, list]  # every parameter given, varied or fixed (a one-element list)
    seeds: list[int]
    methods: dict[str, dict[str, Any]]
    time_limit: float
    axis: str | None = None
    description: str = ""
    method_time_limits: dict[str, float] = field(default_factory=dict)
    grace: float = DEFAULT_GRACE
    game_ref: str = ""  # a game named by reference: its builder's location (see models.locate)
    scoring: dict[str, Any] = field(default_factory=dict)  # precision, max_draws where given
    reported: Reported | None = None  # published means to show beside the results

    def grid_points(self) -> list[dict[str, Any]]:
        names = sorted(self.grid)
        return [dict(zip(names, vals)) for vals in itertools.product(*(self.grid[n] for n in names))]

    def cells(self, plugins: tuple = ()) -> list[Cell]:
        out = []
        for point in self.grid_points():
            for seed in self.seeds:
                for method, opts in self.methods.items():
                    tl = self.method_time_limits.get(method, self.time_limit)
                    out.append(Cell(self.name, self.game, tuple(sorted(point.items())), seed,
                                    method, tuple(sorted(opts.items())), tl, tl + self.grace,
                                    plugins, self.game_ref, tuple(sorted(self.scoring.items()))))
        return out


@dataclass
class Config:
    name: str
    text: str
    experiments: list[Experiment]
    plugins: tuple = ()
    description: str = ""

    def cells(self) -> list[Cell]:
        return [c for e in self.experiments for c in e.cells(self.plugins)]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def builtin_configs() -> list[str]:
    root = resources.files("stackopt.comparisons") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def resolve_config_path(ref: str) -> tuple[str, str]:
    """``ref`` is a built-in config name (``quick``) or a path; return (name, TOML text)."""
    path = Path(ref)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ValueError(f"config file {ref!r} does not exist")
        return path.stem, path.read_text()
    root = resources.files("stackopt.comparisons") / "configs" / f"{ref}.toml"
    if not root.is_file():
        raise ValueError(
            f"unknown config {ref!r}: not a file and not a built-in config; built-in configs are "
            f"{builtin_configs()}"
        )
    return ref, root.read_text()


def parse_seeds(spec: Any, where: str = "seeds") -> list[int]:
    """Seeds as a list of non-negative integers or a string of ranges like ``"1-5,9"``."""
    if isinstance(spec, str):
        seeds: list[int] = []
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    lo, hi = (int(x) for x in part.split("-", 1))
                    if hi < lo:
                        raise ValueError
                    seeds.extend(range(lo, hi + 1))
                else:
                    seeds.append(int(part))
            except ValueError:
                raise ValueError(
                    f"{where}: bad seed range {part!r} in {spec!r}; expected e.g. \"1-30\" or \"1,3,5-7\""
                ) from None
    elif isinstance(spec, list):
        seeds = spec
    else:
        raise ValueError(
            f"{where} must be a list of integers or a range string like \"1-30\", got {spec!r}"
        )
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"{where}: seeds must be non-negative integers, got {s!r}")
    if not seeds:
        raise ValueError(f"{where} is empty")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{where} lists a seed twice: {spec!r}")
    return list(seeds)


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{where} must be a positive number of seconds, got {value!r}")
    return float(value)


def _check_keys(table: dict, allowed: set, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ValueError(f"unknown key {key!r} in {where}{did_you_mean(key, allowed)}; expected "
                             f"one of {sorted(allowed)}")


def _table(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table, got {value!r}")
    return value


def _param_value(value: Any, ptype: type, where: str) -> Any:
    if ptype is object:  # arrays and other data: the builder checks them
        return value
    if isinstance(value, (dict, list)):
        raise ValueError(f"{where} must be a {ptype.__name__}, got {value!r}")
    if ptype is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if ptype is int and isinstance(value, bool):
        raise ValueError(f"{where} must be an int, got {value!r}")
    if not isinstance(value, ptype):
        raise ValueError(f"{where} must be a {ptype.__name__}, got {value!r}")
    return value


def import_plugins(plugins: tuple | list, base: str | Path | None = None) -> tuple[str, ...]:
    """Import the config's plugin modules (they register extra games or methods): dotted
    names or ``.py`` paths, looked for in ``base`` too; returns where each loads from anywhere."""
    from stackopt.models.locate import load_module

    out = []
    for mod in plugins:
        try:
            out.append(load_module(mod, base)[1])
        except (ImportError, ValueError) as exc:
            raise ValueError(f"plugin module {mod!r} cannot be imported: {exc}") from None
    return tuple(out)


def load_config(ref: str, *, seeds: str | list | None = None,
                experiments: list[str] | None = None, methods: list[str] | None = None,
                time_limit: float | None = None, check_instances: bool = True,
                precision: float | None = None, max_draws: int | None = None) -> Config:
    """Read and validate a config (built-in name or path); overrides replace config values."""
    name, text = resolve_config_path(ref)
    base = Path(ref).resolve().parent if Path(ref).is_file() else None
    return parse_config(text, name=name, seeds=seeds, experiments=experiments, methods=methods,
                        time_limit=time_limit, check_instances=check_instances, base=base,
                        precision=precision, max_draws=max_draws)


def parse_config(text: str, *, name: str = "config", seeds: str | list | None = None,
                 experiments: list[str] | None = None, methods: list[str] | None = None,
                 time_limit: float | None = None, check_instances: bool = True,
                 base: str | Path | None = None, precision: float | None = None,
                 max_draws: int | None = None) -> Config:
    """Validate a config's TOML ``text``; overrides replace config values (see :func:`load_config`).
    ``base`` is the folder game references and plugins are looked for in (default: the current
    directory)."""
    from stackopt.methods import available_methods
    from stackopt.models import available_games

    raw = _read_toml(text, name)
    plugins = import_plugins(_plugins(raw), base)
    top_methods = _table(raw.get("methods", {}), "[methods]")
    exps_raw = _selected_experiments(raw, name, experiments)
    games = available_games()
    registered = available_methods()
    given = {k: v for k, v in (("precision", precision), ("max_draws", max_draws)) if v is not None}
    out = [_experiment(ename, exp, raw, top_methods, games=games, registered=registered,
                       seeds=seeds, methods=methods, time_limit=time_limit, base=base,
                       scoring=given)
           for ename, exp in exps_raw.items()]
    config = Config(name, text, out, tuple(plugins), str(raw.get("description", "")))
    if check_instances:
        _check_instances(out)
    return config


def _read_toml(text: str, name: str) -> dict:
    """The config's top-level table, with only known keys."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config {name!r} is not valid TOML: {exc}") from None
    _check_keys(raw, _TOP_KEYS, f"config {name!r}")
    return raw


def _plugins(raw: dict) -> list[str]:
    plugins = raw.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ValueError(f"plugins must be a list of module names, got {plugins!r}")
    return plugins


def _selected_experiments(raw: dict, name: str, experiments: list[str] | None) -> dict:
    """The [experiments] tables, narrowed to ``experiments`` when given."""
    exps_raw = _table(raw.get("experiments", {}), "[experiments]")
    if not exps_raw:
        raise ValueError(f"config {name!r} has no experiments: add an [experiments.NAME] table")
    if experiments:
        for e in experiments:
            if e not in exps_raw:
                raise ValueError(f"unknown experiment {e!r}{did_you_mean(e, exps_raw)}; config {name!r} "
                                 f"has {sorted(exps_raw)}")
        exps_raw = {k: v for k, v in exps_raw.items() if k in experiments}
    return exps_raw


def _experiment(ename: str, exp: Any, raw: dict, top_methods: dict, *, games: list[str],
                registered: list[str], seeds: str | list | None, methods: list[str] | None,
                time_limit: float | None, base: str | Path | None = None,
                scoring: dict | None = None) -> Experiment:
    """One [experiments.NAME] table, checked; the command line's overrides replace its values
    (``scoring``: its precision and max_draws)."""
    where = f"experiment {ename!r}"
    exp = _table(exp, f"[experiments.{ename}]")
    _check_keys(exp, _EXP_KEYS, where)
    game, game_ref = _game(exp, where, games, base)
    grid = _grid(exp, ename, game, game_ref)
    axis = exp.get("axis")
    if axis is not None and axis not in grid:
        raise ValueError(f"{where}: axis {axis!r} is not a grid parameter; grid has {sorted(grid)}")
    seed_spec = seeds if seeds is not None else exp.get("seeds", raw.get("seeds"))
    if seed_spec is None:
        raise ValueError(f"{where} has no seeds: set seeds = \"1-30\" or a list")
    exp_seeds = parse_seeds(seed_spec, f"{where}: seeds")
    tl = time_limit if time_limit is not None else exp.get("time_limit",
                                                           raw.get("time_limit", DEFAULT_TIME_LIMIT))
    tl = _positive(tl, f"{where}: time_limit")
    grace = _positive(exp.get("kill_grace", raw.get("kill_grace", DEFAULT_GRACE)),
                      f"{where}: kill_grace")
    chosen, method_tl = _methods(exp, raw, top_methods, ename, registered, methods)
    description = exp.get("description", "")
    reported = parse_reported(exp, where)
    if time_limit is not None:  # the command line's limit replaces every other
        method_tl = {}
    return Experiment(ename, game, grid, exp_seeds, chosen, tl, axis,
                      description if isinstance(description, str) else "",
                      {m: t for m, t in method_tl.items() if m in chosen}, grace, game_ref,
                      _scoring(exp, raw, where, scoring or {}), reported)


def _scoring(exp: dict, raw: dict, where: str, given: dict) -> dict[str, Any]:
    """The scoring's ``precision`` and ``max_draws`` of an experiment where set (the command
    line's, else the experiment's, else the config's top level), checked; the others keep
    scoring's defaults (:mod:`stackopt.scoring`)."""
    from stackopt.scoring import MAX_DRAWS, PRECISION, check_precision

    out = {k: given.get(k, exp.get(k, raw.get(k))) for k in ("precision", "max_draws")}
    out = {k: v for k, v in out.items() if v is not None}
    try:
        check_precision(out.get("precision", PRECISION), out.get("max_draws", MAX_DRAWS))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if "precision" in out:
        out["precision"] = float(out["precision"])
    return out


def _game(exp: dict, where: str, games: list[str], base: str | Path | None) -> tuple[str, str]:
    """The experiment's game as written, and where a game named by reference loads from."""
    from stackopt.models import game_spec
    from stackopt.models.locate import is_reference

    game = exp.get("game")
    if not isinstance(game, str):
        raise ValueError(f"{where} needs game = \"NAME\", one of {games} or a builder of your own "
                         f"as \"module:function\" or \"path/to/file.py:function\"; got {game!r}")
    try:
        spec = game_spec(game, base)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return game, spec.location if is_reference(game) else ""


def _grid(exp: dict, ename: str, game: str, game_ref: str = "") -> dict[str, list]:
    """The experiment's grid: every parameter's values, typed and checked against the game."""
    from stackopt.models import game_spec

    where = f"experiment {ename!r}"
    spec = game_spec(game_ref or game)
    grid: dict[str, list] = {}
    for pname, values in _table(exp.get("grid", {}), f"[experiments.{ename}.grid]").items():
        if pname not in spec.params:
            raise ValueError(f"{where}: unknown parameter {pname!r} of game {game!r}"
                             f"{did_you_mean(pname, spec.params)}; expected one of {sorted(spec.params)}")
        vals = values if isinstance(values, list) else [values]
        if not vals:
            raise ValueError(f"{where}: grid parameter {pname!r} has no values")
        ptype = spec.params[pname].type
        grid[pname] = [_param_value(v, ptype, f"{where}: {pname}") for v in vals]
        if len({canonical_json(v) for v in grid[pname]}) != len(grid[pname]):
            raise ValueError(f"{where}: grid parameter {pname!r} repeats a value: {values!r}")
    return grid


def _methods(exp: dict, raw: dict, top_methods: dict, ename: str, registered: list[str],
             methods: list[str] | None) -> tuple[dict[str, dict], dict[str, float]]:
    """The experiment's methods (canonical name -> options) and their own time limits.

    Top-level defaults, then the experiment's own, then all_methods; ``methods``
    (the command line's) narrows the choice.
    """
    from stackopt.methods import get_method, method_config

    where = f"experiment {ename!r}"
    mtable = dict(_table(top_methods, "[methods]"))
    mtable.update(_table(exp.get("methods", {}), f"[experiments.{ename}.methods]"))
    all_flag = exp.get("all_methods", raw.get("all_methods", False))
    if not isinstance(all_flag, bool):
        raise ValueError(f"{where}: all_methods must be true or false, got {all_flag!r}")
    chosen: dict[str, dict] = {}
    method_tl: dict[str, float] = {}
    for mname, opts in mtable.items():
        try:
            canonical = get_method(mname).name
            opts = dict(_table(opts, f"[experiments.{ename}.methods.{mname}]"))
            if "time_limit" in opts:
                method_tl[canonical] = _positive(opts.pop("time_limit"),
                                                 f"time_limit of method {mname!r}")
            method_config(mname, opts)  # raises ValueError naming a bad option
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        chosen[canonical] = opts
    if all_flag:
        for mname in registered:
            chosen.setdefault(mname, {})
    if methods:
        wanted = {get_method(m).name for m in methods}
        chosen = {m: o for m, o in chosen.items() if m in wanted}
    chosen = dict(sorted(chosen.items()))
    if not chosen:
        raise ValueError(f"{where} runs no method: add [experiments.{ename}.methods.NAME] "
                         "or all_methods = true")
    return chosen, method_tl


def _check_instances(experiments: list[Experiment]) -> None:
    """Build every grid point's game once (first seed): a bad parameter fails before any cell runs."""
    from stackopt.models import build_game

    for e in experiments:
        for point in e.grid_points():
            try:
                build_game(e.game_ref or e.game, e.seeds[0], **point)
            except ValueError as exc:
                raise ValueError(f"experiment {e.name!r}, game {e.game!r} {point}: {exc}") from None
