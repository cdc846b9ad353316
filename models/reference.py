"""The reference experiments' own instances and their recorded results.

The paper's public experiment code (github ``guaguakai/equilibrium_gradient``,
``qre/``, ``ssg/``, ``cyber/`` ``main.py``) draws its instances with torch's and
numpy's generators; stackopt's own generators share its distributions but not
its draws. The instances it drew for a few seeds ship in ``models/data/`` (see
the README there), together with ``reference_results.csv``: the reference
gradient method's recorded result on each (NFG at budget 2, SSG at budget 1.0,
cyber insurance at risk aversion 0.5).

The game builders take them through a ``reference_seed`` parameter::

    build_game("nfg", reference_seed=3, budget=2.0)
    stackopt solve ssg --reference-seed 36 --budget 1.0 --reimburse all

:func:`load_instance` returns the arrays of one instance, :func:`recorded_results`
the recorded rows, :data:`REFERENCE_SEEDS` the seeds that have an instance.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"

REFERENCE_SEEDS: dict[str, tuple[int, ...]] = {
    "nfg": (1, 2, 3, 4, 5),
    "cyber": (1, 2, 3, 4, 5),
    "ssg": (36, 38, 39, 40, 41, 42, 43, 44, 45),
}

# the arrays every instance file holds, with their shapes
ARRAYS: dict[str, dict[str, tuple[int, ...]]] = {
    "nfg": {"payoffs": (3, 10, 10, 10)},
    "cyber": {"W": (10, 10), "L": (10,), "c": (10,)},
    "ssg": {"attractiveness": (100,), "leader_payoffs": (100,), "target_payoffs": (2, 100),
            "defender_payoffs": (5, 100), "coverage": (5, 100), "resources": (5,)},
}

# what a recorded row's parameter is, per domain
PARAMETER = {"nfg": "budget", "cyber": "risk_aversion", "ssg": "budget"}


def check_seed(domain: str, seed) -> int:
    """``seed`` as an int if ``domain`` has a reference instance for it, else ValueError."""
    if domain not in REFERENCE_SEEDS:
        raise ValueError(f"no reference instances for domain {domain!r}; expected one of "
                         f"{sorted(REFERENCE_SEEDS)}")
    seeds = REFERENCE_SEEDS[domain]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) not in seeds:
        raise ValueError(f"reference_seed must be one of {list(seeds)} for {domain!r} (the seeds "
                         f"the reference experiments' instances ship for), got {seed!r}")
    return int(seed)


def load_instance(domain: str, seed: int) -> dict[str, np.ndarray]:
    """The arrays of the reference instance of ``domain`` for ``seed`` (fresh copies)."""
    return {k: v.copy() for k, v in _load(domain, check_seed(domain, seed)).items()}


@cache
def _load(domain: str, seed: int) -> dict[str, np.ndarray]:
    path = DATA / f"{domain}_seed{seed}.npz"
    with np.load(path) as f:
        arrays = {k: np.array(f[k]) for k in f.files}
    for name, shape in ARRAYS[domain].items():
        if name not in arrays or arrays[name].shape != shape:
            got = arrays[name].shape if name in arrays else "missing"
            raise ValueError(f"reference instance {path.name} is damaged: array {name!r} should "
                             f"have shape {shape}, got {got}")
    return arrays


@dataclass(frozen=True)
class Recorded:
    """One row of ``reference_results.csv``: the reference gradient method on one seed."""

    domain: str
    seed: int
    parameter: float  # budget (nfg, ssg) or risk aversion (cyber)
    initial_objective: float
    objective: float
    violation: float  # budget overrun (nfg, ssg) or summed IR violation (cyber)


@lru_cache(maxsize=1)
def recorded_results() -> dict[tuple[str, int], Recorded]:
    """Every recorded row, keyed by ``(domain, seed)``."""
    out = {}
    with open(DATA / "reference_results.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            row = Recorded(r["domain"], int(r["seed"]), float(r["parameter"]),
                           float(r["initial_objective"]), float(r["gradient_objective"]),
                           float(r["gradient_violation"]))
            out[(row.domain, row.seed)] = row
    return out


def recorded(domain: str, seed: int) -> Recorded | None:
    """The recorded row of ``domain`` and ``seed``, or None where the reference has none."""
    return recorded_results().get((domain, int(seed)))
