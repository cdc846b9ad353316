"""Game models written with stackopt's public API, each with a seeded instance generator.

Installed as ``stackopt.models``. Every model registers a builder under a short
name (``nfg``, ``ssg``, ``cyber``, ...) with its parameters, so the command line
and the comparison harness can build any game from ``(name, parameters, seed)``.
An instance is a pure function of those three. A game of your own is named the
same way by reference, ``module:function`` or ``path/to/file.py:function``
(:mod:`stackopt.models.locate`).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stackopt.core import did_you_mean

from .locate import is_reference, locate, signature_params, takes_seed


@dataclass(frozen=True)
class Param:
    """A builder parameter: its type, default and one line of help.

    A ``mutable`` parameter is held in the model's mutable Pyomo Param of the same name
    (and in ``game.data``): :func:`vary` gives a built instance another value of it, checked
    by ``check`` (which returns the value to use or raises ``ValueError``), and instances that
    differ only in mutable parameters share their preparation."""

    type: type
    default: Any
    help: str
    cli: str | None = None  # command-line flag, default --<name with dashes>
    mutable: bool = False
    check: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class GameSpec:
    """A game's builder and parameters; ``location`` loads the builder again from any working
    directory (the name of a registered game, or a reference with an absolute path)."""

    name: str
    builder: Callable[..., Any]
    params: dict[str, Param] = field(default_factory=dict)
    doc: str = ""
    location: str = ""
    seeded: bool = True  # whether the builder takes ``seed``


_GAMES: dict[str, GameSpec] = {}
# the built-in models, each registering the game of its own name: a game is looked up by
# importing its module alone, and only a listing or an unknown name imports them all
_MODULES = ("nfg", "ssg", "cyber", "library", "gnep", "market")


def register_game(name: str, params: dict[str, Param]):
    """Decorator: register ``builder(seed=..., **params) -> StackelbergGame`` under ``name``."""

    def deco(fn):
        if name in _GAMES and _GAMES[name].builder is not fn:
            raise ValueError(f"game name {name!r} is already registered")
        _GAMES[name] = GameSpec(name, fn, dict(params), _first_line(fn.__doc__), name)
        return fn

    return deco


def _load(mod: str) -> None:
    try:
        importlib.import_module(f"{__name__}.{mod}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{mod}":
            raise


def _load_all() -> None:
    for mod in _MODULES:
        _load(mod)


def game_names() -> list[str]:
    """The names :func:`available_games` lists, without importing a model (for help texts)."""
    return sorted(set(_GAMES) | set(_MODULES))


def available_games() -> list[str]:
    _load_all()
    return sorted(_GAMES)


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def game_spec(name: str, base: str | os.PathLike | None = None) -> GameSpec:
    """The spec of a registered game, or of a builder named ``module:function`` or
    ``path/to/file.py:function`` (a relative path against ``base``, default the current
    directory)."""
    if is_reference(name):
        fn, location = locate(name, base)
        registered = next((s for s in _GAMES.values() if s.builder is fn), None)
        params = dict(registered.params) if registered else signature_params(fn, Param)
        return GameSpec(name, fn, params, _first_line(fn.__doc__), location, takes_seed(fn))
    if name not in _GAMES and name in _MODULES:
        _load(name)
    if name not in _GAMES:
        _load_all()
    if name not in _GAMES:
        raise ValueError(f"unknown game {name!r}{did_you_mean(name, _GAMES)}; expected one of "
                         f"{sorted(_GAMES)}, or a builder of your own as module:function or "
                         "path/to/file.py:function")
    return _GAMES[name]


def _known(spec: GameSpec, name: str, key: str) -> Param:
    """Parameter ``key`` of game ``name``; a ``ValueError`` naming the known ones where it is none."""
    if key not in spec.params:
        raise ValueError(f"unknown parameter {key!r} for game {name!r}"
                         f"{did_you_mean(key, spec.params)}; expected one of {sorted(spec.params)}")
    return spec.params[key]


def build_game(name: str, seed: int = 0, **params):
    """Build the instance of game ``name`` (a registered name or a reference, see
    :func:`game_spec`) for ``seed`` and ``params`` (unknown params rejected)."""
    from stackopt.game import StackelbergGame

    spec = game_spec(name)
    for key in params:
        _known(spec, name, key)
    game = spec.builder(seed=seed, **params) if spec.seeded else spec.builder(**params)
    if not isinstance(game, StackelbergGame):
        raise ValueError(f"game builder {name!r} returned {type(game).__name__}; a builder returns "
                         "a stackopt.StackelbergGame (end it with `return game`)")
    return game


def mutable_params(name: str) -> frozenset:
    """The names of game ``name``'s mutable parameters (see :class:`Param`)."""
    return frozenset(k for k, p in game_spec(name).params.items() if p.mutable)


def vary(game, name: str, **params) -> None:
    """Give ``game``, an instance of game ``name`` built by :func:`build_game`, new values of
    its mutable parameters: each is checked as its builder checks it, then written to the
    model's mutable Param of that name and to ``game.data``. The game solved afterwards is
    the instance :func:`build_game` builds with those values, without being built or
    prepared again (compiled programs read Params at every call)."""
    spec = game_spec(name)
    for key, value in params.items():
        param = _known(spec, name, key)
        if not param.mutable:
            raise ValueError(f"parameter {key!r} of game {name!r} shapes the model and cannot be "
                             f"varied on a built instance; expected one of "
                             f"{sorted(mutable_params(name))}, or build the instance again")
        value = param.check(value) if param.check is not None else value
        component = game.model.component(key)
        if component is None or not getattr(component, "mutable", False):
            raise ValueError(f"game {name!r} declares {key!r} mutable but its model has no "
                             f"mutable Param named {key!r}")
        component.set_value(value)
        game.data[key] = value
