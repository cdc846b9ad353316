"""Game models written with stackopt's public API, each with a seeded instance generator.

Installed as ``stackopt.models``. Every model registers a builder under a short
name (``nfg``, ``ssg``, ``cyber``, ...) with its parameters, so the command line
and the comparison harness can build any game from ``(name, parameters, seed)``.
An instance is a pure function of those three.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    """A builder parameter: its type, default and one line of help."""

    type: type
    default: Any
    help: str
    cli: str | None = None  # command-line flag, default --<name with dashes>


@dataclass(frozen=True)
class GameSpec:
    name: str
    builder: Callable[..., Any]
    params: dict[str, Param] = field(default_factory=dict)
    doc: str = ""


_GAMES: dict[str, GameSpec] = {}
_MODULES = ("nfg", "ssg", "cyber", "library", "gnep", "market")


def register_game(name: str, params: dict[str, Param]):
    """Decorator: register ``builder(seed=..., **params) -> StackelbergGame`` under ``name``."""

    def deco(fn):
        if name in _GAMES and _GAMES[name].builder is not fn:
            raise ValueError(f"game name {name!r} is already registered")
        _GAMES[name] = GameSpec(name, fn, dict(params), (fn.__doc__ or "").strip().splitlines()[0]
                                if fn.__doc__ else "")
        return fn

    return deco


def _load_all() -> None:
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise


def available_games() -> list[str]:
    _load_all()
    return sorted(_GAMES)


def game_spec(name: str) -> GameSpec:
    _load_all()
    if name not in _GAMES:
        raise ValueError(f"unknown game {name!r}; expected one of {sorted(_GAMES)}")
    return _GAMES[name]


def build_game(name: str, seed: int = 0, **params):
    """Build the instance of game ``name`` for ``seed`` and ``params`` (unknown params rejected)."""
    spec = game_spec(name)
    for key in params:
        if key not in spec.params:
            raise ValueError(
                f"unknown parameter {key!r} for game {name!r}; expected one of {sorted(spec.params)}"
            )
    return spec.builder(seed=seed, **params)
