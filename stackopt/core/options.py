"""What a method option accepts, read from its ``ConfigValue`` domain.

One place turns a Pyomo config domain into words (``"a positive integer"``),
choices (``In([...])``, booleans) and a plain error message, for
:func:`stackopt.methods.method_config`, and into a command-line flag (type,
choices, placeholder, help) for ``stackopt solve``, so neither shows Pyomo's
``Failed casting`` text.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import re
from typing import Any


@functools.cache
def _named() -> dict:
    """Pyomo's named domains: (words, base type). Imported on first use (the CLI's --help
    must not import Pyomo)."""
    from pyomo.common import config as pc

    return {
        pc.PositiveInt: ("a positive integer", int),
        pc.NonNegativeInt: ("a non-negative integer", int),
        pc.NegativeInt: ("a negative integer", int),
        pc.NonPositiveInt: ("a non-positive integer", int),
        pc.PositiveFloat: ("a number > 0", float),
        pc.NonNegativeFloat: ("a number >= 0", float),
        pc.NegativeFloat: ("a number < 0", float),
        pc.NonPositiveFloat: ("a number <= 0", float),
        pc.Bool: ("true or false", bool),
        bool: ("true or false", bool),
        int: ("an integer", int),
        float: ("a number", float),
        str: ("a string", str),
        dict: ("a mapping of names to values", dict),
    }


def _hashable(domain) -> bool:
    try:
        hash(domain)
    except TypeError:
        return False
    return True


def domain_of(value) -> Any:
    """The domain of a ``ConfigValue`` (None where it has none)."""
    return getattr(value, "_domain", None)


def choices(domain) -> list | None:
    """The finite set of values a domain accepts, or None."""
    from pyomo.common import config as pc

    if isinstance(domain, pc.In):
        return list(domain._domain)
    if isinstance(domain, pc.InEnum):
        return [m.value for m in domain._domain]
    if domain in (pc.Bool, bool):
        return [True, False]
    return None


def base_type(domain, default) -> type | None:
    """The Python type a domain's values have (from the domain, else from the default)."""
    if _hashable(domain) and domain in _named():
        return _named()[domain][1]
    opts = choices(domain)
    if opts:
        kinds = {type(o) for o in opts}
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(default, (bool, int, float, str, dict)):
        return type(default)
    return None


def describe(domain) -> str | None:
    """The domain in words, or None for a domain that is a function of its own."""
    if _hashable(domain) and domain in _named():
        return _named()[domain][0]
    opts = choices(domain)
    if opts is not None:
        return "one of " + ", ".join(repr(o) for o in opts)
    return None


def check(domain, value):
    """``domain(value)``, or ValueError saying what was expected and what was received."""
    if domain is None:
        return value
    words = describe(domain)
    try:
        out = domain(value)
    except (ValueError, TypeError) as exc:
        if words is None:  # the domain's own message says it best
            raise ValueError(str(exc).strip()) from None
        raise ValueError(f"expected {words}, got {value!r}") from None
    if isinstance(out, float) and out != out:  # Pyomo's float domains let NaN through
        raise ValueError(f"expected {words or 'a number'}, got {value!r}")
    return out


# ------------------------------------------------------------------- command-line flags
def flag_keywords(value, default) -> dict:
    """``add_argument`` keywords for one ``ConfigValue``: its type, choices and metavar."""
    domain = domain_of(value)
    kind = base_type(domain, default)
    opts = choices(domain)
    if kind is bool:
        return dict(type=parse_bool, metavar="{true,false}")
    if opts is not None and all(isinstance(o, str) for o in opts):
        return dict(type=str, choices=opts, metavar="{" + ",".join(opts) + "}")

    def parse(text: str):
        if kind is dict:
            try:
                v = json.loads(text)
            except json.JSONDecodeError:
                v = None
            if not isinstance(v, dict):
                raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
        elif kind in (int, float):
            try:
                v = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected {describe(domain) or ('an integer' if kind is int else 'a number')}, "
                    f"got {text!r}") from None
        else:
            v = None if default is None and text.lower() == "none" else text
            if default is None and v is not None:  # an optional number given as text
                try:
                    v = float(v)
                except ValueError:
                    pass
        try:
            return check(domain, v)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    metavar = {int: "N", float: "X", dict: "JSON"}.get(kind, "VALUE")
    return dict(type=parse, metavar=metavar)


def flag_help(value, default) -> str:
    doc = plain(value._description or value._doc or "").strip()
    domain = domain_of(value)
    words = describe(domain) if choices(domain) is None else None
    shown = "none" if default is None else default
    text = f"{doc}; {words}" if doc and words else (doc or words or "")
    return (f"{text} (default {shown})" if text else f"default {shown}").replace("%", "%%")


def number_type(kind: type, words: str, low: float | None = None):
    """An argparse type: ``kind`` parsed from text, at least ``low``, never NaN; its error
    says ``expected {words}``."""

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}") from None
        if v != v or (low is not None and v < low):
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return v

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0."""
    v = number_type(float, "a finite number > 0")(text)
    if not 0 < v < math.inf:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return v


def parse_bool(text: str) -> bool:
    """A command-line boolean: true/false, yes/no, on/off, 1/0."""
    t = str(text).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def plain(text: str) -> str:
    """reStructuredText roles and literals as plain text (``:mod:`~a.b``` -> ``b``)."""
    text = re.sub(r":[\w:]+:`~?([^`<]*?)\s*<[^`]*>`", r"\1", text)
    text = re.sub(r":[\w:]+:`~([^`]*)`", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r":[\w:]+:`([^`]*)`", r"\1", text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    return re.sub(r"`([^`]*)`_?", r"\1", text)


def registrar(table: dict, kind: str, name: str, aliases=()):
    """A class decorator entering a class in ``table`` under ``name`` and ``aliases``
    (setting its ``name`` and ``aliases``); a name taken by another class is an error
    naming the ``kind`` (method, mode, solver)."""

    def deco(cls):
        cls.name = name
        cls.aliases = tuple(aliases)
        for n in (name, *aliases):
            if n in table and table[n] is not cls:
                raise ValueError(f"{kind} name {n!r} is already registered")
            table[n] = cls
        return cls

    return deco



def did_you_mean(word: str, known) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``known`` to a mistyped ``word``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
