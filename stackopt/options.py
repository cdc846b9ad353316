"""What a method option accepts, read from its ``ConfigValue`` domain.

One place turns a Pyomo config domain into words (``"a positive integer"``),
choices (``In([...])``, booleans) and a plain error message, for
:func:`stackopt.methods.method_config` and for the command line's flags, so
neither shows Pyomo's ``Failed casting`` text.
"""
from __future__ import annotations

from typing import Any

from pyomo.common import config as _pc

_NAMED = {  # Pyomo's named domains: (words, base type)
    _pc.PositiveInt: ("a positive integer", int),
    _pc.NonNegativeInt: ("a non-negative integer", int),
    _pc.NegativeInt: ("a negative integer", int),
    _pc.NonPositiveInt: ("a non-positive integer", int),
    _pc.PositiveFloat: ("a number > 0", float),
    _pc.NonNegativeFloat: ("a number >= 0", float),
    _pc.NegativeFloat: ("a number < 0", float),
    _pc.NonPositiveFloat: ("a number <= 0", float),
    _pc.Bool: ("true or false", bool),
    bool: ("true or false", bool),
    int: ("an integer", int),
    float: ("a number", float),
    str: ("a string", str),
    dict: ("a mapping of names to values", dict),
}


def domain_of(value) -> Any:
    """The domain of a ``ConfigValue`` (None where it has none)."""
    return getattr(value, "_domain", None)


def choices(domain) -> list | None:
    """The finite set of values a domain accepts, or None."""
    if isinstance(domain, _pc.In):
        return list(domain._domain)
    if isinstance(domain, _pc.InEnum):
        return [m.value for m in domain._domain]
    if domain in (_pc.Bool, bool):
        return [True, False]
    return None


def base_type(domain, default) -> type | None:
    """The Python type a domain's values have (from the domain, else from the default)."""
    if domain in _NAMED:
        return _NAMED[domain][1]
    opts = choices(domain)
    if opts:
        kinds = {type(o) for o in opts}
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(default, (bool, int, float, str, dict)):
        return type(default)
    return None


def describe(domain) -> str | None:
    """The domain in words, or None for a domain that is a function of its own."""
    if domain in _NAMED:
        return _NAMED[domain][0]
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
