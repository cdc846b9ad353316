"""The ``stackopt`` command.

    stackopt solve GAME [--<game parameter> V ...] --method M [--<method option> V ...] --seed S --json
    stackopt check-gradient GAME [--<game parameter> V ...] --seed S --json
    stackopt theorem1 --C 100 --epsilon 1 --json
    stackopt compare [CONFIG] --db results.sqlite --workers 2
    stackopt report results.sqlite --out DIR
    stackopt games | methods

Game parameters come from the game's registration (``stackopt games`` lists
them); method options from the method's options (``stackopt methods``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from . import methods as _methods
from .models import available_games, build_game, game_spec


def _load_methods() -> None:
    import stackopt  # noqa: F401  (registers every method)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    t = str(text).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_game_params(ap: argparse.ArgumentParser, game: str) -> list[str]:
    spec = game_spec(game)
    g = ap.add_argument_group(f"parameters of game {game!r}")
    names = []
    for name, prm in spec.params.items():
        if prm.type not in (int, float, str, bool):
            continue  # arrays, graphs: passed as data from Python, not as flags
        typ = _bool if prm.type is bool else prm.type
        g.add_argument(prm.cli or _flag(name), dest=f"game__{name}", type=typ, default=None,
                       help=f"{prm.help} (default {prm.default})".replace("%", "%%"))
        names.append(name)
    return names


def _add_method_options(ap: argparse.ArgumentParser, method: str) -> list[str]:
    cfg = _methods.get_method(method).CONFIG()
    g = ap.add_argument_group(f"options of method {method!r}")
    names = []
    for key in cfg.keys():
        default = cfg[key]
        typ = _bool if isinstance(default, bool) else (type(default) if isinstance(default, (int, float)) else str)
        if isinstance(default, int) and not isinstance(default, bool):
            typ = int
        g.add_argument(_flag(key), dest=f"opt__{key}", type=typ, default=None,
                       help=_help(cfg.get(key), default))
        names.append(key)
    return names


def _help(value, default) -> str:
    text = getattr(value, "_description", None) or getattr(value, "_doc", None) or ""
    return f"{text} (default {default})".replace("%", "%%")


def _game_and_method(argv, sub: str):
    """Pre-parse the game name and method so their flags can be added to the parser."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("game", nargs="?")
    pre.add_argument("--method", default="gradient")
    known, _ = pre.parse_known_args(argv)
    return known.game, known.method


def _params(ns, names, prefix):
    out = {}
    for n in names:
        v = getattr(ns, f"{prefix}__{n}")
        if v is not None:
            out[n] = v
    return out


def _json_float(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


def cmd_solve(argv) -> int:
    _load_methods()
    game, method = _game_and_method(argv, "solve")
    ap = argparse.ArgumentParser(prog="stackopt solve", description="Solve one game instance with one method.")
    ap.add_argument("game", choices=available_games())
    ap.add_argument("--method", default="gradient", choices=_methods.available_methods())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=None, help="seconds")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    gnames = _add_game_params(ap, game) if game in available_games() else []
    mnames = _add_method_options(ap, method) if method in _methods.available_methods() else []
    ns = ap.parse_args(argv)
    try:
        g = build_game(ns.game, seed=ns.seed, **_params(ns, gnames, "game"))
        res = _methods.solve(g, ns.method, seed=ns.seed, time_limit=ns.time_limit,
                             **_params(ns, mnames, "opt"))
    except ValueError as exc:
        print(f"stackopt solve: error: {exc}", file=sys.stderr)
        return 2
    out = {"game": res.game, "method": res.method, "seed": res.seed,
           "leader_objective": res.leader_objective, "initial_objective": res.initial_objective,
           "constraint_violation": res.constraint_violation,
           "equilibrium_residual": res.equilibrium_residual, "status": res.status.value,
           "wall_time_s": res.wall_time_s, "claimed_objective": res.claimed_objective,
           "bound": res.bound, "gap": res.gap}
    if ns.json:
        print(json.dumps({k: _json_float(v) for k, v in out.items()}))
    else:
        for k, v in out.items():
            print(f"{k:22s} {v}")
        if res.message:
            print(f"{'message':22s} {res.message.strip()}")
    return 0


def cmd_check_gradient(argv) -> int:
    from .checks import check_gradient

    game, _ = _game_and_method(argv, "check-gradient")
    ap = argparse.ArgumentParser(prog="stackopt check-gradient",
                                 description="Implicit gradient vs central finite differences.")
    ap.add_argument("game", choices=available_games())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", type=float, default=1e-5)
    ap.add_argument("--json", action="store_true")
    gnames = _add_game_params(ap, game) if game in available_games() else []
    ns = ap.parse_args(argv)
    try:
        g = build_game(ns.game, seed=ns.seed, **_params(ns, gnames, "game"))
        r = check_gradient(g, seed=ns.seed, step=ns.step)
    except ValueError as exc:
        print(f"stackopt check-gradient: error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps({"max_relative_error": r["max_relative_error"]}))
    else:
        print(f"max relative error {r['max_relative_error']:.3e} "
              f"(equilibrium residual {r['equilibrium_residual']:.1e})")
    return 0


def cmd_theorem1(argv) -> int:
    from .models.theorem1 import theorem1_report

    ap = argparse.ArgumentParser(prog="stackopt theorem1",
                                 description="The paper's Theorem-1 example: equilibrium selection rules.")
    ap.add_argument("--C", type=float, default=100.0)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args(argv)
    try:
        rep = theorem1_report(C=ns.C, epsilon=ns.epsilon)
    except ValueError as exc:
        print(f"stackopt theorem1: error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(rep))
    else:
        for rule, r in rep.items():
            print(f"{rule:12s} strategy {r['strategy']}  anticipated {r['anticipated']:g}  "
                  f"expected {r['expected']:g}")
    return 0


def cmd_list(what: str) -> int:
    if what == "games":
        for name in available_games():
            spec = game_spec(name)
            params = ", ".join(f"{k}={p.default}" for k, p in spec.params.items())
            print(f"{name:10s} {spec.doc}\n{'':10s} parameters: {params}")
    else:
        _load_methods()
        for name in _methods.available_methods():
            cls = _methods.get_method(name)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"{name:14s} {doc}")
    return 0


_COMMANDS = {"solve": cmd_solve, "check-gradient": cmd_check_gradient, "theorem1": cmd_theorem1}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _COMMANDS:
        return _COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] in ("games", "methods"):
        return cmd_list(argv[0])
    ap = argparse.ArgumentParser(prog="stackopt", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name in (*_COMMANDS, "games", "methods"):
        sub.add_parser(name, help=f"see `stackopt {name} --help`")
    try:
        from .comparisons.cli import register
    except ImportError as exc:  # pragma: no cover - the harness ships with the package
        print(f"stackopt: comparison harness unavailable: {exc}", file=sys.stderr)
    else:
        register(sub)
    ns = ap.parse_args(argv)
    if getattr(ns, "func", None) is None:
        ap.print_help()
        return 2
    return int(ns.func(ns))


if __name__ == "__main__":
    raise SystemExit(main())
