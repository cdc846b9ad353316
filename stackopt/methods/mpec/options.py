"""Option domains of the MPEC modes and solvers, and the options every MPEC method shares.

Numeric domains reject booleans (``True`` is not the number 1 here) and
non-finite values, and say what they expected.
"""
from __future__ import annotations

import math
import numbers

from pyomo.common.config import ConfigDict, ConfigValue

DEFAULT_BLOCK = "stackopt_mpec"


def _number(val) -> float:
    if isinstance(val, bool) or not isinstance(val, numbers.Real):
        raise ValueError(f"expected a number, got {val!r}")
    val = float(val)
    if not math.isfinite(val):
        raise ValueError(f"expected a finite number, got {val!r}")
    return val


def finite_positive(val) -> float:
    """A finite number > 0."""
    val = _number(val)
    if not val > 0:
        raise ValueError(f"expected a finite number > 0, got {val!r}")
    return val


def finite_nonnegative(val) -> float:
    """A finite number >= 0."""
    val = _number(val)
    if not val >= 0:
        raise ValueError(f"expected a finite number >= 0, got {val!r}")
    return val


def fraction(val) -> float:
    """A number strictly between 0 and 1."""
    val = _number(val)
    if not 0.0 < val < 1.0:
        raise ValueError(f"expected a number strictly between 0 and 1, got {val!r}")
    return val


def positive_int(val) -> int:
    """An integer >= 1 (a float with an integral value is accepted)."""
    if isinstance(val, bool) or not isinstance(val, numbers.Real):
        raise ValueError(f"expected a positive integer, got {val!r}")
    if not (math.isfinite(val) and float(val).is_integer() and val >= 1):
        raise ValueError(f"expected a positive integer, got {val!r}")
    return int(val)


def optional_positive(val):
    """None, or a finite number > 0."""
    return None if val is None else finite_positive(val)


def flag(val) -> bool:
    """True or False (no other value is taken for a switch)."""
    if isinstance(val, bool):
        return val
    raise ValueError(f"expected True or False, got {val!r}")


def optional_path(val):
    """None, or a path (kept as a string)."""
    return None if val is None else str(val)


def mapping(val) -> dict:
    """A dict of solver options (name -> value)."""
    if not isinstance(val, dict):
        raise ValueError(f"expected a dict of name -> value, got {val!r}")
    return dict(val)


def pipeline_options() -> ConfigDict:
    """The options every MPEC method passes to :func:`~stackopt.methods.mpec.pipeline.build_single_level`."""
    cfg = ConfigDict("pipeline")
    cfg.declare("block_name", ConfigValue(
        default=DEFAULT_BLOCK, domain=str, doc="name of the generated block on the model's clone"))
    cfg.declare("dump", ConfigValue(
        default=None, domain=optional_path,
        doc="write the single-level model (with complementarity) to this file (.nl, .gms, ...)"))
    return cfg


def merge(name: str, *parts: ConfigDict) -> ConfigDict:
    """One ConfigDict declaring every entry of ``parts`` (a name declared twice is kept once)."""
    cfg = ConfigDict(name)
    for part in parts:
        cfg.declare_from(part, skip=set(cfg.keys()))
    return cfg
