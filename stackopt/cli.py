"""The ``stackopt`` command.

    stackopt solve GAME [--<game parameter> V ...] [--method M] [--<method option> V ...] [--seed S] [--json]
    stackopt check-gradient GAME [--<game parameter> V ...] [--seed S] [--json]
    stackopt equilibrium GAME [--<game parameter> V ...] [--leader JSON] [--seed S] [--json]
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
import difflib
import json
import math
import re
import sys

from stackopt import __version__
from stackopt.core.options import (
    did_you_mean,
    flag_help,
    flag_keywords,
    number_type,
    parse_bool,
    plain,
    positive_number,
)

SOLVE_HELP = "solve one game instance with one method"
CHECK_HELP = "the implicit gradient against finite differences of re-solved equilibria"
EQUILIBRIUM_HELP = "the followers' (generalized) Nash equilibrium at given leader values"

INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells use
VALUES_SHOWN = 48  # --json prints the values of games with at most this many, else with --values


class Parser(argparse.ArgumentParser):
    """argparse with flags spelled out in full, and errors that say what to write instead: the
    closest flag to a mistyped one, the closest choice to a mistyped value. With
    ``json_errors`` (the command was given ``--json``) a usage error is also printed as one
    JSON object on stdout (:func:`_fail`)."""

    def __init__(self, *args, json_errors: bool = False, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def error(self, message: str):
        message += self.suggestion(message)
        if self.json_errors:
            _json_error(message, 2)
        super().error(message)

    def suggestion(self, message: str) -> str:
        if message.startswith("unrecognized arguments:"):
            flags = [w.split("=")[0] for w in message.split(":", 1)[1].split() if w.startswith("-")]
            known = [f for f in self._option_string_actions if f.startswith("--")]
            hints = {flag: close[0] for flag in flags
                     for close in [difflib.get_close_matches(flag, known, n=1, cutoff=0.6)] if close}
            if len(hints) == 1 and len(flags) == 1:
                return f"; did you mean {next(iter(hints.values()))}?"
            if hints:
                return "; did you mean " + ", ".join(f"{v} (for {k})" for k, v in hints.items()) + "?"
            where = f"{self.prog} GAME --help" if self.prog.endswith(("solve", "check-gradient")) \
                else f"{self.prog} --help"
            return f"; `{where}` lists the flags"
        m = re.match(r"argument ([^:]+): invalid choice: '([^']*)'", message)
        if m:
            action = next((a for a in self._actions if m.group(1) in (a.metavar, a.dest,
                                                                      *a.option_strings)), None)
            if action is not None and action.choices:
                return did_you_mean(m.group(2), action.choices)
        return ""


def _json_error(message: str, code: int) -> None:
    print(json.dumps({"error": message, "exit_status": code}))


def _fail(prog: str, message: str, as_json: bool, code: int = 2) -> int:
    """Print ``prog: error: message`` on stderr and, where the command was given ``--json``,
    ``{"error": message, "exit_status": code}`` on stdout; return ``code``."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    if as_json:
        _json_error(message, code)
    return code


# ----------------------------------------------------------------------------- values
_SEED = number_type(int, "a non-negative integer", 0)
_COUNT = number_type(int, "a positive integer", 1)


# ----------------------------------------------------------------------------- parsers
def _pre_parse(argv) -> tuple[str | None, str]:
    """The game name and method, so that their flags can be added to the parser."""
    pre = Parser(add_help=False)
    pre.add_argument("game", nargs="?")
    pre.add_argument("--method", default="gradient")
    for flag in ("--seed", "--time-limit", "--step", "--leader", "--precision", "--max-draws"):
        # so that their values are not taken for GAME
        pre.add_argument(flag)
    pre.add_argument("--json", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return known.game, known.method


def _game_arguments(ap, game: str | None) -> tuple[list[str], dict[str, str]]:
    """GAME, and the parameters of ``game`` as flags; returns their names and flags."""
    help_text = ("a built-in game (`stackopt games` lists them) or a builder of your own, "
                 "module:function or path/to/file.py:function")
    if game is None:  # e.g. `stackopt solve --help`: answer without importing the models
        ap.add_argument("game", metavar="GAME", help=help_text + "; `stackopt solve GAME --help` "
                        "lists its parameters")
        return [], {}
    from stackopt.models import game_names, game_spec

    try:
        spec = game_spec(game)  # imports that game's model alone
    except ValueError as exc:
        ap.error(f"argument GAME: {exc}")
    ap.add_argument("game", metavar="GAME", help="one of " + ", ".join(game_names())
                    + ", or a builder of your own, module:function or path/to/file.py:function")
    g = ap.add_argument_group(f"parameters of game {game!r}")
    names, flags = [], {}
    kinds = {int: (number_type(int, "an integer"), "N"), float: (number_type(float, "a number"), "X"),
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
    from stackopt.methods.registry import get_method, method_names

    known = method_names(aliases=True)  # without importing the methods: only the one asked for is
    ap.add_argument("--method", default="gradient", choices=known, metavar="NAME",
                    help="solution method, one of " + ", ".join(method_names())
                         + " (default gradient)")
    if method not in known:
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
    ap = Parser(prog=f"stackopt {command}", description=description, json_errors="--json" in argv)
    ap.add_argument("--seed", type=_SEED, default=0, metavar="N",
                    help="seed of the instance and of the method (default 0)")
    if command == "equilibrium":
        ap.add_argument("--leader", type=_leader_values, default=None, metavar="JSON",
                        help="the leader's values by Pyomo name, e.g. '{\"p[1]\": 2.0}' "
                             "(default: its initial values)")
        ap.add_argument("--json", action="store_true", help="print one JSON object")
    elif with_method:
        ap.add_argument("--time-limit", type=positive_number, default=None, metavar="SECONDS",
                        help="stop the method after this many seconds")
        ap.add_argument("--precision", type=positive_number, default=None, metavar="X",
                        help="scoring: a first stage of draws of the followers' equilibrium fixes "
                             "how many are made, for a standard error of the mean objective of at "
                             "most X times its scale (default 2e-3; one draw where the equilibrium "
                             "is provably unique)")
        ap.add_argument("--max-draws", type=_COUNT, default=None, metavar="N",
                        help="scoring: at most N draws (default 100)")
        ap.add_argument("--json", action="store_true",
                        help="print one JSON object: the scores, status, options and, for games "
                             f"with at most {VALUES_SHOWN} values, the leader's and followers' values")
        ap.add_argument("--values", action="store_true",
                        help="with --json, print every value whatever the game's size")
        shown = ap.add_mutually_exclusive_group()
        shown.add_argument("--progress", action="store_true", default=None,
                           help="show the method's steps: a bar on a terminal, a line every few "
                                "seconds otherwise (default: a bar on a terminal only)")
        shown.add_argument("--no-progress", dest="progress", action="store_false",
                           help="show no progress")
    else:
        ap.add_argument("--step", type=positive_number, default=1e-5, metavar="X",
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
    from stackopt.models import build_game

    params = _values(ns, names, "game")
    try:
        return build_game(ns.game, seed=ns.seed, **params), None
    except ValueError as exc:
        return None, _flagged(str(exc), flags, ns.game)


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
        _fail(ap.prog, error, ns.json)
    return ap, ns, game, mnames


def cmd_solve(argv) -> int:
    ap, ns, game, mnames = _game_command("solve", argv, _SOLVE_DESCRIPTION, True)
    if game is None:
        return 2
    from stackopt.api import solve

    try:
        res = solve(game, ns.method, seed=ns.seed, time_limit=ns.time_limit, progress=ns.progress,
                    precision=ns.precision, max_draws=ns.max_draws, **_values(ns, mnames, "opt"))
    except ValueError as exc:  # e.g. options a game recommends that clash with the user's
        return _fail(ap.prog, str(exc), ns.json)
    n_values = len(res.leader_values) + len(res.follower_values)
    if ns.json:
        out = res.to_dict()
        out.pop("history")  # per-step records: from Python, `solve(...).history`
        out["values_count"] = {"leader": len(res.leader_values), "followers": len(res.follower_values)}
        if n_values > VALUES_SHOWN and not ns.values:
            del out["leader_values"], out["follower_values"]
            out["values_omitted"] = f"{n_values} values; add --values to print them"
        print(json.dumps(_jsonable(out)))
    else:
        print(res)
        if n_values > 12:
            print("(every value: add --json" + (" --values)" if n_values > VALUES_SHOWN else ")"))
    return 0


_SOLVE_DESCRIPTION = (
    "Solve one instance of a built-in game with one method; the result is scored by the common "
    "equilibrium oracle. The game's parameters and the method's options are flags: `stackopt solve "
    "GAME --help` lists the game's and the default method's, `stackopt solve GAME --method NAME "
    "--help` another method's.")


def _report_command(name, argv, description, compute) -> int:
    """A command that builds one game and prints what ``compute(game, namespace)`` returns
    (its text, or its ``to_dict()`` as JSON with ``--json``); a ``ValueError`` or
    ``RuntimeError`` it raises is the command's error."""
    ap, ns, game, _ = _game_command(name, argv, description, False)
    if game is None:
        return 2
    try:
        r = compute(game, ns)
    except (ValueError, RuntimeError) as exc:
        return _fail(ap.prog, str(exc), ns.json)
    print(json.dumps(_jsonable(r.to_dict())) if ns.json else r)
    return 0


def cmd_check_gradient(argv) -> int:
    def compute(game, ns):
        from stackopt.checks import check_gradient
        return check_gradient(game, seed=ns.seed, step=ns.step)

    return _report_command(
        "check-gradient", argv, "Compare the implicit gradient of the leader's objective and "
        "constraints with central finite differences of re-solved equilibria, at a seeded random "
        "leader strategy.", compute)


def _leader_values(text: str) -> dict:
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"expected a JSON object of name: number, got {text!r}") from None
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of name: number, got {text!r}")
    return v


def cmd_equilibrium(argv) -> int:
    def compute(game, ns):
        from stackopt.nash import equilibrium
        try:
            return equilibrium(game, leader_values=ns.leader, seed=ns.seed)
        except ValueError as exc:  # the game was built: a bad value is the --leader one's
            raise ValueError(f"argument --leader: {exc}" if "leader_values" in str(exc) else str(exc)) from None

    return _report_command(
        "equilibrium", argv, "The followers' (generalized) Nash equilibrium of a built-in game at "
        "given leader values (the leader's initial values by default): the equilibrium oracle from "
        "a seeded start; the followers' values and the constraints' multipliers by name.", compute)


def cmd_theorem1(ns) -> int:
    from stackopt.models.theorem1 import theorem1_report

    rep = theorem1_report(C=ns.C, epsilon=ns.epsilon)
    if ns.json:
        print(json.dumps(rep))
    else:
        for rule, r in rep.items():
            print(f"{rule:12s} strategy {r['strategy']}  anticipated {r['anticipated']:g}  "
                  f"expected {r['expected']:g}")
    return 0


def cmd_games(ns) -> int:
    from stackopt.models import available_games, game_spec

    try:
        specs = [game_spec(ns.name)] if ns.name else [game_spec(n) for n in available_games()]
    except ValueError as exc:
        print(f"stackopt games: error: {exc}", file=sys.stderr)
        return 2
    for spec in specs:
        name = spec.name
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
    from stackopt.methods.registry import _METHODS, available_methods, get_method

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
_DYNAMIC = {"solve": cmd_solve, "check-gradient": cmd_check_gradient, "equilibrium": cmd_equilibrium}


def _parser(as_json: bool = False) -> argparse.ArgumentParser:
    ap = Parser(prog="stackopt", description="Stackelberg games with one leader and several "
                "followers in Nash equilibrium, written in Pyomo: implicit-gradient, MPEC and "
                "black-box methods, and comparisons of them on identical instances.",
                epilog="`stackopt COMMAND --help` describes a command.",
                formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=20),
                json_errors=as_json)
    ap.add_argument("--version", action="version", version=f"stackopt {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                            parser_class=Parser)
    sub.add_parser("solve", help=SOLVE_HELP, add_help=False)
    sub.add_parser("check-gradient", help=CHECK_HELP, add_help=False)
    sub.add_parser("equilibrium", help=EQUILIBRIUM_HELP, add_help=False)
    from stackopt.comparisons.cli import register

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
                                   "under each equilibrium selection rule.", json_errors=as_json)
    p.add_argument("--C", type=positive_number, default=100.0, metavar="X",
                   help="the leader's large payoff C (default 100)")
    p.add_argument("--epsilon", type=positive_number, default=1.0, metavar="X",
                   help="the leader's small loss eps (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_theorem1)
    return ap


class _ResentInterrupts:
    """While a command runs, a Ctrl-C that compiled code dropped is sent again.

    Python raises ``KeyboardInterrupt`` where the signal arrives; inside a callback from
    compiled code (Numba's compiler caching a function through llvmlite's ctypes callback,
    a solver's callback) the caller prints it as "Exception ignored" and carries on, and the
    command would run to its end. ``sys.unraisablehook`` sees every such drop: the interrupt
    is sent again to the main thread 50 ms later, when Python code runs there once more, and
    nothing is printed for it. Other unraisable exceptions go to the hook that was set."""

    DELAY = 0.05  # seconds before the dropped interrupt is sent again

    def __enter__(self):
        self.previous = sys.unraisablehook
        sys.unraisablehook = self._hook
        return self

    def __exit__(self, *exc):
        sys.unraisablehook = self.previous

    def _hook(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            import _thread
            import threading

            timer = threading.Timer(self.DELAY, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return
        self.previous(unraisable)


def main(argv=None) -> int:
    """Run one command; Ctrl-C ends any command with one line and exit status 130 (``compare``
    says what it kept; an interrupt that compiled code dropped is sent again,
    :class:`_ResentInterrupts`), errors are one line (and, with ``--json``, a JSON object on
    stdout)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    with _ResentInterrupts():
        return _run(argv, as_json)


def _run(argv: list, as_json: bool) -> int:
    try:
        if argv and argv[0] in _DYNAMIC:  # their flags depend on the game and the method
            return _DYNAMIC[argv[0]](argv[1:])
        ap = _parser(as_json)
        ns, extra = ap.parse_known_args(argv)
        if extra:  # named by the subcommand's parser, which knows its flags
            sub = next((a.choices.get(ns.command) for a in ap._actions
                        if isinstance(a, argparse._SubParsersAction)), None)
            (sub or ap).error(f"unrecognized arguments: {' '.join(extra)}")
        if getattr(ns, "func", None) is None:
            ap.print_help()
            return 2
        return int(ns.func(ns))
    except KeyboardInterrupt:
        command = next((a for a in argv if not a.startswith("-")), None)
        print("stackopt" + (f" {command}" if command else "") + ": interrupted", file=sys.stderr)
        if as_json:
            _json_error("interrupted", INTERRUPTED)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
