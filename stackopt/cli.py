"""The ``stackopt`` command.

    stackopt solve GAME [--<game parameter> V ...] [--method M] [--<method option> V ...] [--seed S] [--json]
    stackopt check-gradient GAME [--<game parameter> V ...] [--seed S] [--json]
    stackopt compare [CONFIG] --db results.sqlite --workers 2
    stackopt report results.sqlite --out DIR [--docs docs]
    stackopt compare-dbs A.sqlite B.sqlite
    stackopt games [GAME] | methods [METHOD] | theorem1 [--C 100 --epsilon 1]

Game parameters come from the game's registration (``stackopt games`` lists
them); method options from the method's ``CONFIG`` (``stackopt methods``).
This module imports Pyomo, NumPy and the methods only once a command needs
them, so ``stackopt --help`` answers at once.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys

from . import __version__
from .options import flag_help, flag_keywords, parse_bool, plain

SOLVE_HELP = "solve one game instance with one method"
CHECK_HELP = "the implicit gradient against finite differences of re-solved equilibria"

Parser = functools.partial(argparse.ArgumentParser, allow_abbrev=False)


# ----------------------------------------------------------------------------- values
def _number(kind: type, words: str, low: float | None = None):
    """An argparse type: ``kind`` parsed from text, at least ``low``, never NaN."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
        if v != v or (low is not None and v < low):
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return v

    return parse


def _positive(text: str) -> float:
    v = _number(float, "a finite number > 0")(text)
    if not 0 < v < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


_SEED = _number(int, "a non-negative integer", 0)


# ----------------------------------------------------------------------------- parsers
def _pre_parse(argv) -> tuple[str | None, str]:
    """The game name and method, so that their flags can be added to the parser."""
    pre = Parser(add_help=False)
    pre.add_argument("game", nargs="?")
    pre.add_argument("--method", default="gradient")
    for flag in ("--seed", "--time-limit", "--step"):  # so that their values are not taken for GAME
        pre.add_argument(flag)
    pre.add_argument("--json", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return known.game, known.method


def _game_arguments(ap, game: str | None) -> tuple[list[str], dict[str, str]]:
    """GAME, and the parameters of ``game`` as flags; returns their names and flags."""
    if game is None:  # e.g. `stackopt solve --help`: answer without importing the models
        ap.add_argument("game", metavar="GAME",
                        help="a built-in game (`stackopt games` lists them); `stackopt solve GAME "
                             "--help` lists its parameters")
        return [], {}
    from .models import available_games, game_spec

    ap.add_argument("game", metavar="GAME", choices=available_games(),
                    help="one of " + ", ".join(available_games()))
    if game not in available_games():
        return [], {}
    spec = game_spec(game)
    g = ap.add_argument_group(f"parameters of game {game!r}")
    names, flags = [], {}
    kinds = {int: (_number(int, "an integer"), "N"), float: (_number(float, "a number"), "X"),
             str: (str, "TEXT"), bool: (parse_bool, "{true,false}")}
    for name, prm in spec.params.items():
        if prm.type not in kinds:
            continue  # arrays, graphs: passed as data from Python, not as flags
        typ, metavar = kinds[prm.type]
        flag = prm.cli or "--" + name.replace("_", "-")
        if flag in ap._option_string_actions:  # a common flag has the name
            flag = f"--game-{name.replace('_', '-')}"
        g.add_argument(flag, dest=f"game__{name}", type=typ, default=None, metavar=metavar,
                       help=f"{plain(prm.help)} (default {prm.default})".replace("%", "%%"))
        names.append(name)
        flags[name] = flag
    return names, flags


def _method_arguments(ap, method: str | None, taken: set[str]) -> list[str]:
    """--method, and the options of ``method`` as flags (None: no method listing)."""
    if method is None:
        ap.add_argument("--method", default="gradient", metavar="NAME",
                        help="solution method (default gradient; `stackopt methods` lists them)")
        return []
    from .methods import _METHODS, available_methods, get_method

    primary = available_methods()  # loads the built-in methods into the registry
    ap.add_argument("--method", default="gradient", choices=sorted(_METHODS), metavar="NAME",
                    help="solution method, one of " + ", ".join(primary)
                         + " (default gradient)")
    if method not in _METHODS:
        return []
    cls = get_method(method)
    cfg = cls.CONFIG()
    g = ap.add_argument_group(f"options of method {cls.name!r}")
    names = []
    for key in cfg.keys():
        flag = "--" + key.replace("_", "-")
        if key in taken or flag in ap._option_string_actions:
            flag = f"--option-{key.replace('_', '-')}"  # a common flag or game parameter has it
        default = cfg[key]
        g.add_argument(flag, dest=f"opt__{key}", default=None, help=flag_help(cfg.get(key), default),
                       **flag_keywords(cfg.get(key), default))
        names.append(key)
    return names


def _command_parser(command: str, argv, description: str, with_method: bool):
    game, method = _pre_parse(argv)
    game = game if game is not None and not game.startswith("-") else None
    ap = Parser(prog=f"stackopt {command}", description=description)
    ap.add_argument("--seed", type=_SEED, default=0, metavar="N",
                    help="seed of the instance and of the method (default 0)")
    if with_method:
        ap.add_argument("--time-limit", type=_positive, default=None, metavar="SECONDS",
                        help="stop the method after this many seconds")
        ap.add_argument("--json", action="store_true",
                        help="print one JSON object (with the leader's and followers' values)")
    else:
        ap.add_argument("--step", type=_positive, default=1e-5, metavar="X",
                        help="finite-difference step (default 1e-5)")
        ap.add_argument("--json", action="store_true", help="print one JSON object")
    gnames, gflags = _game_arguments(ap, game)
    mnames = _method_arguments(ap, method if game else None, set(gnames)) if with_method else []
    return ap, gnames, gflags, mnames


def _values(ns, names, prefix) -> dict:
    return {n: getattr(ns, f"{prefix}__{n}") for n in names
            if getattr(ns, f"{prefix}__{n}") is not None}


def _build_game(prog: str, ns, names, flags):
    """The game instance, or an error message naming the flag at fault."""
    from .models import build_game

    params = _values(ns, names, "game")
    try:
        return build_game(ns.game, seed=ns.seed, **params), None
    except ValueError as exc:
        return None, f"{prog}: error: {_flagged(str(exc), flags, ns.game)}"


def _flagged(message: str, flags: dict[str, str], game: str) -> str:
    """Prefix a game's error with the flag of the first parameter it names."""
    hits = [(m.start(), name) for name in flags
            for m in [re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message)] if m]
    if hits:
        return f"argument {flags[min(hits)[1]]}: {message}"
    return f"game {game!r}: {message}"


# ----------------------------------------------------------------------------- commands
def _game_command(name, argv, description, with_method):
    """Parse a command that builds one game: ``(parser, namespace, game, method option names)``,
    the game None where it could not be built (the error printed)."""
    ap, gnames, gflags, mnames = _command_parser(name, argv, description, with_method)
    ns = ap.parse_args(argv)
    game, error = _build_game(ap.prog, ns, gnames, gflags)
    if error:
        print(error, file=sys.stderr)
    return ap, ns, game, mnames


def cmd_solve(argv) -> int:
    ap, ns, game, mnames = _game_command("solve", argv, _SOLVE_DESCRIPTION, True)
    if game is None:
        return 2
    from .methods import solve

    try:
        res = solve(game, ns.method, seed=ns.seed, time_limit=ns.time_limit,
                    **_values(ns, mnames, "opt"))
    except ValueError as exc:  # e.g. options a game recommends that clash with the user's
        print(f"{ap.prog}: error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        out = res.to_dict()
        out.pop("history")  # per-step records: from Python, `solve(...).history`
        print(json.dumps(_jsonable(out)))
    else:
        print(res)
        if len(res.leader_values) + len(res.follower_values) > 12:
            print("(every value: add --json)")
    return 0


_SOLVE_DESCRIPTION = (
    "Solve one instance of a built-in game with one method; the result is scored by the common "
    "equilibrium oracle. The game's parameters and the method's options are flags: `stackopt solve "
    "GAME --help` lists the game's and the default method's, `stackopt solve GAME --method NAME "
    "--help` another method's.")


def cmd_check_gradient(argv) -> int:
    ap, ns, game, _ = _game_command(
        "check-gradient", argv, "Compare the implicit gradient of the leader's objective and "
        "constraints with central finite differences of re-solved equilibria, at a seeded random "
        "leader strategy.", False)
    if game is None:
        return 2
    from .checks import check_gradient

    try:
        r = check_gradient(game, seed=ns.seed, step=ns.step)
    except (ValueError, RuntimeError) as exc:
        print(f"{ap.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_jsonable(r.to_dict())) if ns.json else r)
    return 0


def cmd_theorem1(ns) -> int:
    from .models.theorem1 import theorem1_report

    rep = theorem1_report(C=ns.C, epsilon=ns.epsilon)
    if ns.json:
        print(json.dumps(rep))
    else:
        for rule, r in rep.items():
            print(f"{rule:12s} strategy {r['strategy']}  anticipated {r['anticipated']:g}  "
                  f"expected {r['expected']:g}")
    return 0


def cmd_games(ns) -> int:
    from .models import available_games, game_spec

    if ns.name is not None and ns.name not in available_games():
        print(f"stackopt games: error: unknown game {ns.name!r}; expected one of "
              f"{', '.join(available_games())}", file=sys.stderr)
        return 2
    for name in [ns.name] if ns.name else available_games():
        spec = game_spec(name)
        print(f"{name:10s} {plain(spec.doc)}")
        if ns.name:
            for key, p in spec.params.items():
                flag = p.cli or "--" + key.replace("_", "-")
                where = flag if p.type in (int, float, str, bool) else f"{key} (Python only)"
                print(f"  {where:20s} {plain(p.help)} (default {p.default})")
        else:
            print(f"{'':10s} parameters: " + ", ".join(f"{k}={p.default}" for k, p in spec.params.items()))
    if not ns.name:
        print("\nstackopt games NAME shows a game's flags.")
    return 0


def cmd_methods(ns) -> int:
    from .methods import _METHODS, available_methods, get_method

    primary = available_methods()  # loads the built-in methods into the registry
    if ns.name is not None and ns.name not in _METHODS:
        print(f"stackopt methods: error: unknown method {ns.name!r}; expected one of "
              f"{', '.join(primary)}", file=sys.stderr)
        return 2
    for name in [get_method(ns.name).name] if ns.name else primary:
        cls = get_method(name)
        aliases = sorted(k for k, c in _METHODS.items() if c is cls and k != name)
        doc = plain(_dedent(cls.__doc__ or "")).strip()
        print(f"{name:14s} {doc.splitlines()[0] if doc else ''}"
              + (f"\n{'':14s} aliases: {', '.join(aliases)}" if aliases else ""))
        if ns.name:
            rest = "\n".join(doc.splitlines()[1:]).strip()
            print(("\n" + rest + "\n") if rest else "")
            print(f"options, as flags of: stackopt solve GAME --method {name}")
            cfg = cls.CONFIG()
            for key in cfg.keys():
                kw = flag_keywords(cfg.get(key), cfg[key])
                print(f"  --{key.replace('_', '-')} {kw['metavar']}\n      "
                      + flag_help(cfg.get(key), cfg[key]).replace("%%", "%"))
    if not ns.name:
        print("\nstackopt methods NAME shows a method's description and options.")
    return 0


def _dedent(doc: str) -> str:
    import inspect

    return inspect.cleandoc(doc)


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    if isinstance(v, float):
        if not math.isfinite(v):
            return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
        return v + 0.0  # -0.0 -> 0.0
    return v


# ----------------------------------------------------------------------------- main
_DYNAMIC = {"solve": cmd_solve, "check-gradient": cmd_check_gradient}


def _parser() -> argparse.ArgumentParser:
    ap = Parser(prog="stackopt", description="Stackelberg games with one leader and several "
                "followers in Nash equilibrium, written in Pyomo: implicit-gradient, MPEC and "
                "black-box methods, and comparisons of them on identical instances.",
                epilog="`stackopt COMMAND --help` describes a command.",
                formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=20))
    ap.add_argument("--version", action="version", version=f"stackopt {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                            parser_class=Parser)
    sub.add_parser("solve", help=SOLVE_HELP, add_help=False)
    sub.add_parser("check-gradient", help=CHECK_HELP, add_help=False)
    from .comparisons.cli import register

    register(sub)
    p = sub.add_parser("games", help="list the built-in games and their parameters",
                       description="List the built-in games; with a name, the game's flags.")
    p.add_argument("name", nargs="?", metavar="GAME")
    p.set_defaults(func=cmd_games)
    p = sub.add_parser("methods", help="list the solution methods and their options",
                       description="List the solution methods; with a name, its description and "
                                   "options (flags of `stackopt solve`).")
    p.add_argument("name", nargs="?", metavar="METHOD")
    p.set_defaults(func=cmd_methods)
    p = sub.add_parser("theorem1", help="the paper's Theorem-1 example: equilibrium selection rules",
                       description="The paper's Theorem-1 example: the leader's strategy and payoff "
                                   "under each equilibrium selection rule.")
    p.add_argument("--C", type=_positive, default=100.0, metavar="X",
                   help="the leader's large payoff C (default 100)")
    p.add_argument("--epsilon", type=_positive, default=1.0, metavar="X",
                   help="the leader's small loss eps (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_theorem1)
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DYNAMIC:  # their flags depend on the game and the method
        return _DYNAMIC[argv[0]](argv[1:])
    ap = _parser()
    ns = ap.parse_args(argv)
    if getattr(ns, "func", None) is None:
        ap.print_help()
        return 2
    return int(ns.func(ns))


if __name__ == "__main__":
    raise SystemExit(main())
