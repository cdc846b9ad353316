"""Do the scoring's 95 % intervals cover the expected objective as often as they say?

    python -m stackopt.comparisons.coverage --db results.sqlite [--further 30] [--experiment E]
    python -m stackopt.comparisons.coverage --synthetic [--reps 20000]

On a results database (``--db``): every stored cell's leader strategy is scored again on
``--further`` independent draws of the followers' equilibrium, from seeds disjoint from the
scoring's (draw ``s`` of a cell with seed ``k`` starts from ``(OFFSET + k, s)``; the scoring
used ``(k, s)``), on the instance rebuilt from the cell's game, parameters and seed (checked
against the stored data fingerprint). Per cell: the stored mean, 95 % interval, draws and
distinct equilibria; the further draws' mean and its standard error; whether the interval
covers the further mean; and ``z``, the difference of the two means over
``sqrt(se^2 + se_further^2)``. The further mean carries its own noise, so "covered" is
a weak check (it fails more often than 5 % even for exact intervals); ``|z| <= 1.96`` is
the right one (an exact interval and an unbiased further mean: 95 % of the cells). A
cell whose equilibrium is provably unique (one exact draw) is listed and not counted.

With ``--synthetic``: the scoring's rule (:func:`stackopt.scoring.planned_draws` and
:func:`stackopt.scoring.half_width`) and the former one ("draw until the standard error
is small enough", from 10 draws) on synthetic draws of known mean (normal, skewed, two or
three equilibria of unequal probabilities, the spread of a security game's draws):
coverage of the expectation and mean draws over ``--reps`` repetitions.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

import numpy as np
from scipy import special

from stackopt.scoring import LEVEL, MAX_DRAWS, MIN_DRAWS, PRECISION, half_width, planned_draws

OFFSET = 1_000_000  # further draws of a cell with seed k start from (OFFSET + k, s)
Z = float(special.ndtri(0.5 + LEVEL / 2))  # 1.96

# The 16 draws the scoring made of the gradient method's strategy on the reference
# security game 38 (budget 1): a spread like the security games' (every draw its own
# equilibrium), resampled as a distribution of known mean.
SECURITY_GAME_DRAWS = np.array([
    -2.502136254264528, -2.5081919158143586, -2.5437810799884346, -2.55115605036786,
    -2.5260519699212436, -2.529059422795707, -2.5781162681617484, -2.5546379172237836,
    -2.5398798837621994, -2.527916723336019, -2.532137540210046, -2.560660673141969,
    -2.51281333915086, -2.5519054648191335, -2.539006397610426, -2.5389170061864603])


@dataclass(frozen=True)
class Spread:
    """Synthetic draws: ``mean + ratio * PRECISION * |mean| * z`` for standardised ``z``
    (mean 0, standard deviation 1) of the named ``kind`` (``values``/``probabilities`` for
    equilibria), or resampled ``values`` (``kind = "resample"``). ``ratio`` is the standard
    deviation over the precision asked: about ``ratio^2`` draws are needed."""

    name: str
    kind: str
    ratio: float = 0.0
    values: tuple = ()
    probabilities: tuple = ()
    mean: float = -3.0

    @property
    def expectation(self) -> float:
        return float(np.mean(self.values)) if self.kind == "resample" else self.mean

    def draw(self, rng: np.random.Generator, shape) -> np.ndarray:
        if self.kind == "resample":
            return rng.choice(np.asarray(self.values, dtype=float), size=shape)
        if self.kind == "normal":
            z = rng.standard_normal(shape)
        elif self.kind in ("lognormal", "-lognormal"):
            e = math.e
            z = (rng.lognormal(0.0, 1.0, shape) - math.sqrt(e)) / math.sqrt((e - 1) * e)
            z = -z if self.kind == "-lognormal" else z
        elif self.kind == "exponential":
            z = rng.exponential(1.0, shape) - 1.0
        elif self.kind == "equilibria":
            v, q = np.asarray(self.values, dtype=float), np.asarray(self.probabilities)
            m = float(v @ q)
            z = (rng.choice(v, size=shape, p=q) - m) / math.sqrt(float((v - m) ** 2 @ q))
        else:
            raise ValueError(f"unknown kind of spread {self.kind!r}")
        return self.mean + self.ratio * PRECISION * abs(self.mean) * z


SPREADS = (
    Spread("normal, ~10 draws needed", "normal", 3.0),
    Spread("normal, ~35 draws needed", "normal", 6.0),
    Spread("lognormal (right tail)", "lognormal", 4.0),
    Spread("lognormal (left tail)", "-lognormal", 4.0),
    Spread("exponential", "exponential", 4.0),
    Spread("2 equilibria, 0.7/0.3", "equilibria", 2.0, (0.0, 1.0), (0.7, 0.3)),
    Spread("2 equilibria, 0.8/0.2", "equilibria", 4.0, (0.0, 1.0), (0.8, 0.2)),
    Spread("2 equilibria, 0.9/0.1", "equilibria", 3.0, (0.0, 1.0), (0.9, 0.1)),
    Spread("3 equilibria, 0.6/0.3/0.1", "equilibria", 4.0, (0.0, 1.0, 3.0), (0.6, 0.3, 0.1)),
    Spread("security game's draws", "resample", values=tuple(SECURITY_GAME_DRAWS)),
)


def stein_rule(draws: np.ndarray, least: int = MIN_DRAWS, precision: float = PRECISION,
               most: int = MAX_DRAWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scoring's rule on rows of pre-drawn objectives ``draws`` (reps x most): draws
    made, mean and interval half-width per row."""
    n = np.minimum(planned_draws(draws[:, :least], precision), most)
    mean, half = np.empty(len(n)), np.empty(len(n))
    for k in np.unique(n):  # rows with the same number of draws at once
        rows = n == k
        mean[rows] = draws[rows, :k].mean(axis=1)
        half[rows] = half_width(draws[rows, :k], least)
    return n, mean, half


def former_rule(draws: np.ndarray, least: int = 10, precision: float = PRECISION,
                most: int = MAX_DRAWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rule the scoring used before, for comparison: from ``least`` draws on, stop as soon
    as the standard error is at most ``precision`` times the largest ``|objective|`` so far
    (at most ``most``); Student's t interval over the draws made."""
    reps = len(draws)
    total, squares = np.cumsum(draws, axis=1), np.cumsum(draws ** 2, axis=1)
    scale = np.maximum.accumulate(np.abs(draws), axis=1)
    n = np.zeros(reps, dtype=np.int64)
    for k in range(least, most + 1):
        m = total[:, k - 1] / k
        se = np.sqrt(np.maximum(squares[:, k - 1] - k * m * m, 0.0) / (k - 1) / k)
        n[(n == 0) & ((se <= precision * scale[:, k - 1]) | (k == most))] = k
    rows = np.arange(reps)
    mean = total[rows, n - 1] / n
    sd = np.sqrt(np.maximum(squares[rows, n - 1] - n * mean * mean, 0.0) / (n - 1))
    return n, mean, special.stdtrit(n - 1, 0.5 + LEVEL / 2) * sd / np.sqrt(n)


RULES = {"former": former_rule, "scoring": stein_rule}


def simulate(rule, spread: Spread, reps: int, seed: int = 0) -> tuple[float, float]:
    """Coverage of ``spread``'s expectation by ``rule``'s intervals, and its mean draws, over
    ``reps`` repetitions."""
    draws = spread.draw(np.random.default_rng(seed), (reps, MAX_DRAWS))
    n, mean, half = rule(draws)
    return float(np.mean(np.abs(mean - spread.expectation) <= half)), float(np.mean(n))


def synthetic_table(reps: int, seed: int = 0, out=None) -> dict:
    """Print (to ``out``, default standard output) and return the coverage and mean draws of
    every rule on every spread."""
    out = out or sys.stdout
    width = max(len(s.name) for s in SPREADS)
    print(f"{reps} repetitions per spread; 95 % intervals; coverage (mean draws)", file=out)
    print(f"{'spread':{width}}  " + "  ".join(f"{r:>16}" for r in RULES), file=out)
    table = {}
    for i, spread in enumerate(SPREADS):
        table[spread.name] = {r: simulate(rule, spread, reps, seed + i) for r, rule in RULES.items()}
        print(f"{spread.name:{width}}  " + "  ".join(
            f"{100 * c:7.1f} % ({n:5.1f})" for c, n in table[spread.name].values()), file=out)
    return table


@dataclass
class Checked:
    """One stored cell scored again on further draws."""

    label: str
    method: str
    seed: int
    mean: float
    interval: tuple
    draws: int
    equilibria: int
    se: float
    further_mean: float = math.nan
    further_se: float = math.nan
    note: str = ""

    @property
    def exact(self) -> bool:
        return self.draws == 1 and self.interval[0] == self.interval[1]

    @property
    def counted(self) -> bool:
        return (not self.note and not self.exact and math.isfinite(self.further_mean)
                and all(math.isfinite(v) for v in (*self.interval, self.se)))

    @property
    def covered(self) -> bool:
        return self.interval[0] <= self.further_mean <= self.interval[1]

    @property
    def z(self) -> float:
        """The difference of the means in standard errors of the difference (0 where both
        are exact and equal)."""
        d, se = self.mean - self.further_mean, math.hypot(self.se, self.further_se)
        return d / se if se > 0 else (0.0 if d == 0 else math.copysign(math.inf, d))


def _params(row) -> dict:
    """The cell's grid parameters (the store gives them as JSON text)."""
    return row["params"] if isinstance(row["params"], dict) else json.loads(row["params"] or "{}")


def _label(row) -> str:
    shown = ", ".join(f"{k}={v}" for k, v in sorted(_params(row).items()))
    return f"{row['experiment']} {row['game']}({shown})"


def check_cell(row: dict, further: int, offset: int = OFFSET) -> Checked:
    """Score the stored cell ``row``'s leader values again on ``further`` draws."""
    from stackopt.models import build_game
    from stackopt.scoring import evaluate

    from .worker import fingerprint

    low, high = row.get("objective_low"), row.get("objective_high")
    c = Checked(label=_label(row), method=row["method"], seed=int(row["seed"]),
                mean=_number(row.get("leader_objective")),
                interval=(_number(low), _number(high)), draws=int(row.get("draws") or 0),
                equilibria=len(row.get("equilibria") or []),
                se=_number(row.get("objective_stderr")))
    if not row.get("leader_values") or not math.isfinite(c.mean) or c.draws < 1:
        c.note = f"nothing to check (status {row.get('status')})"
        return c
    if c.exact:
        c.note = "unique equilibrium: one exact draw"
        return c
    try:
        game = build_game(row["game"], int(row["seed"]), **_params(row))
    except Exception as exc:  # a game named by reference, or one this install lacks
        c.note = f"cannot rebuild the game: {type(exc).__name__}: {exc}"
        return c
    if row.get("fingerprint") and fingerprint(game) != row["fingerprint"]:
        c.note = "the rebuilt instance's data differ from the stored fingerprint"
        return c
    ev = evaluate(game, row["leader_values"], seed=offset + int(row["seed"]), samples=further)
    c.further_mean, c.further_se = ev.leader_objective, ev.objective_stderr
    return c


def _number(v) -> float:
    return math.nan if v is None else float(v)


def check_database(path: str, further: int, experiments=None, methods=None, offset=OFFSET,
                   out=None) -> list[Checked]:
    """Print (to ``out``, default standard output) every cell of the database at ``path``
    scored again (see the module docstring) as it is done, then the summary; return the
    cells."""
    out = out or sys.stdout
    from .store import Store

    with Store.open(path, readonly=True) as store:
        rows = store.rows(experiments=experiments)
    rows = [r for r in rows if not methods or r["method"] in methods]
    # a grid point's cells together, seeds in order (rows come in the order they finished)
    rows.sort(key=lambda r: (r["experiment"], r["params"], r["seed"], r["method"]))
    print(f"{len(rows)} cells of {path}; {further} further draws each (seeds ({offset} + seed, s))",
          file=out)
    head = (f"{'method':10} {'seed':>4} {'mean':>10} {'95 % interval':>23} {'draws':>5} {'eq':>3} "
            f"{'further mean +- se':>22} {'covered':>7} {'z':>6}")
    checked, label = [], None
    for row in rows:
        c = check_cell(row, further, offset)
        checked.append(c)
        if c.label != label:
            label = c.label
            print(f"\n{label}\n{head}", file=out)
        line = (f"{c.method:10} {c.seed:>4} {c.mean:10.5f} [{c.interval[0]:10.5f}, "
                f"{c.interval[1]:10.5f}] {c.draws:>5} {c.equilibria:>3}")
        if c.note:
            line += f"  {c.note}"
        else:
            line += (f" {c.further_mean:10.5f} +- {c.further_se:8.5f} "
                     f"{'yes' if c.covered else 'no':>7} {c.z:6.2f}")
        print(line, file=out, flush=True)
    print("\n" + summary(checked), file=out)
    return checked


def summary(checked: list[Checked]) -> str:
    """The counts over the cells with an interval to check."""
    counted = [c for c in checked if c.counted]
    n = len(counted)
    covering = sum(c.covered for c in counted)
    within = sum(abs(c.z) <= Z for c in counted)
    skipped = len(checked) - n
    return (f"intervals covering the further mean: {covering}/{n}; |z| <= {Z:.2f}: {within}/{n}"
            + (f" ({skipped} cells not counted: exact or nothing to check)" if skipped else ""))


def _names(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stackopt.comparisons.coverage", allow_abbrev=False,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--db", help="results database written by `stackopt compare`")
    p.add_argument("--further", type=int, default=30,
                   help="further draws per cell (default: %(default)s)")
    p.add_argument("--experiment", default=None, help="only these experiments (comma-separated)")
    p.add_argument("--methods", default=None, help="only these methods (comma-separated)")
    p.add_argument("--offset", type=int, default=OFFSET,
                   help="further draws of a cell with seed k start from (OFFSET + k, s) "
                        "(default: %(default)s; the scoring's are (k, s))")
    p.add_argument("--synthetic", action="store_true",
                   help="simulate the scoring's rule and the former one on synthetic draws")
    p.add_argument("--reps", type=int, default=20000,
                   help="repetitions per synthetic spread (default: %(default)s)")
    args = p.parse_args(argv)
    if not args.synthetic and not args.db:
        p.error("give --db DB (stored cells) or --synthetic")
    if args.further < 2:
        p.error(f"argument --further: expected an integer >= 2, got {args.further}")
    if args.reps < 1:
        p.error(f"argument --reps: expected a positive integer, got {args.reps}")
    if args.offset == 0:
        p.error("argument --offset: 0 would repeat the scoring's own draws")
    if args.synthetic:
        synthetic_table(args.reps)
    if args.db:
        check_database(args.db, args.further, _names(args.experiment), _names(args.methods),
                       args.offset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
