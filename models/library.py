"""Bilevel and multi-follower Stackelberg problems with published optimal values.

A test library for every method: each problem is written with the public
:class:`~stackopt.game.StackelbergGame` API, and :data:`KNOWN_OPTIMA` holds its
optimal leader objective (in the leader's own sense) with the source that
states it. The problems were chosen so that each follower's problem is convex
in the follower's own variables (strictly convex, or with a unique solution),
hence the followers' equilibrium is unique and the optimistic MPEC
reformulation, the black-box methods and the gradient method all address the
same problem.

Conventions of the sources are kept: BOLIB (Zhou, Zemkoho, Tin, "BOLIB:
Bilevel Optimization LIBrary of test problems", 2020) and MacMPEC (Leyffer)
state every problem as a minimisation for the leader, so do these games
(except ``cournot3``, the leader maximises its profit). Where a source leaves a
variable unbounded, a finite box that contains the optimum and is never
binding there is added (a global MINLP solver with big-M needs it); each
builder's docstring lists those boxes. The leader's variable bounds are the
leader's feasible set; where the followers' problem is infeasible for some
leader values (``bard1988_ex1``), the box is the set of leader values for which
it is feasible. The gnash games carry one leader constraint that never binds,
total output Q >= a floor every followers' equilibrium satisfies (derived in
:func:`gnash_output_floor`), which keeps a global solver away from the price's
singularity at Q = 0.

Problems (``F`` leader, ``f`` follower, ``x`` leader, ``y`` followers):

====================  ===========  ==========================================
name                  followers    published optimum (leader, own sense)
====================  ===========  ==========================================
bard1988_ex1          1            17                (BOLIB, MacMPEC bard1)
shimizu_aiyoshi1981   1            100               (BOLIB, MacMPEC ex9.2.2)
henderson_quandt1958  1            -3266.67 = -9800/3 (BOLIB, MacMPEC stackelberg1)
clark_westerberg1990  1            5                 (BOLIB, HTP 9.3.6)
htp_9_3_5             1            0.5               (HTP 9.3.5, MacMPEC ex9.2.4)
desilva1978           2            -1                (BOLIB, MacMPEC ex9.2.6)
cournot3              3            114075/112 (derived here in closed form)
gnash10               4            -230.823          (MacMPEC gnash10)
gnash14               4            -0.179046         (MacMPEC gnash14)
gnash19               4            -6.11671          (MacMPEC gnash19)
harker_tax            2 (shared)   0.0108499 (derived here: harker_tax_optimum)
river_basin_standard  3 (shared)   41.5252 (derived here: river_basin_optimum)
price_budget          2            3.75 (derived here in closed form)
disk_cap_radius       2 (shared)   3.98916 (derived here: disk_cap_radius_optimum)
====================  ===========  ==========================================

The last four are leader problems over generalized Nash games of
:mod:`stackopt.models.gnep` (shared constraints read as Rosen's variational
equilibrium; budgets with the leader's price as coefficient; a disk, nonlinear in
the follower's own variables, of the leader's radius); their optima are
derived from the followers' equilibrium in closed form or by exact enumeration
of its active sets, independently of stackopt.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pyomo.core as pyo

from stackopt.game import StackelbergGame

from . import Param, register_game


class KnownOptimum:
    """Optimal leader objective in the leader's own sense (``value``), and where it is stated
    (``source``). A value derived by a computation (given as a function of no arguments) is
    computed when first read, so that importing the library computes nothing."""

    def __init__(self, value: float | Callable[[], float], source: str):
        self._value = value
        self.source = source

    @functools.cached_property
    def value(self) -> float:
        return float(self._value() if callable(self._value) else self._value)

    def __repr__(self) -> str:
        return f"KnownOptimum(value={self.value!r}, source={self.source!r})"


PROBLEMS: dict[str, Callable[[], StackelbergGame]] = {}
KNOWN_OPTIMA: dict[str, KnownOptimum] = {}


def _problem(name: str, value: float | Callable[[], float], source: str):
    def deco(fn):
        PROBLEMS[name] = fn
        KNOWN_OPTIMA[name] = KnownOptimum(value, source)
        return fn

    return deco


# --------------------------------------------------------------- one follower
@_problem("bard1988_ex1", 17.0,
          "Bard (1988) Convex two-level optimization, Math. Prog. 40, Ex. 1; BOLIB Bard1988Ex1 "
          "(F*=17); MacMPEC bard1 / ex9.2.1 (17); Floudas et al. (1999) Handbook of Test "
          "Problems 9.3.2; BilevelJuMP test jump_HTP_quad01")
def bard1988_ex1() -> StackelbergGame:
    """Bard (1988) Example 1: min (x-5)^2 + (2y+1)^2, y in argmin (y-1)^2 - 1.5xy.

    Follower: -3x + y <= -3, x - 0.5y <= 4, x + y <= 7, y >= 0. Optimum x=1, y=0.
    The follower's problem is feasible exactly for x in [1, 5], the leader's box;
    the follower's box y in [0, 10] is never binding (y <= 7 - x).
    At the optimum the follower's feasible set is the single point y = 0.
    """
    g = StackelbergGame("bard1988_ex1")
    m = g.model
    m.x = pyo.Var(bounds=(1.0, 5.0), initialize=4.0)
    f = g.add_follower("follower")
    f.y = pyo.Var(bounds=(0.0, 10.0), initialize=0.0)
    f.obj = pyo.Objective(expr=(f.y - 1) ** 2 - 1.5 * m.x * f.y, sense=pyo.minimize)
    f.c1 = pyo.Constraint(expr=-3 * m.x + f.y <= -3)
    f.c2 = pyo.Constraint(expr=m.x - 0.5 * f.y <= 4)
    f.c3 = pyo.Constraint(expr=m.x + f.y <= 7)
    g.set_leader([m.x], objective=(m.x - 5) ** 2 + (2 * f.y + 1) ** 2, sense=pyo.minimize)
    g.data = {"problem": "bard1988_ex1"}
    return g


@_problem("shimizu_aiyoshi1981", 100.0,
          "Shimizu, Aiyoshi (1981) A new computational method for Stackelberg and min-max "
          "problems, Ex. 1; BOLIB ShimizuAiyoshi1981Ex1 (F*=100); MacMPEC ex9.2.2 (100); "
          "Handbook of Test Problems 9.3.3; BilevelJuMP test jump_HTP_quad02")
def shimizu_aiyoshi1981() -> StackelbergGame:
    """Shimizu-Aiyoshi (1981) Ex. 1: min x^2 + (y-10)^2 s.t. x - y >= 0, y in argmin (x+2y-30)^2.

    Follower: x + y <= 20, 0 <= y <= 20. Leader box x in [0, 15]; the leader's
    constraint y - x <= 0 is evaluated at the equilibrium. Optimum x = y = 10
    (the leader's constraint is active).
    """
    g = StackelbergGame("shimizu_aiyoshi1981")
    m = g.model
    m.x = pyo.Var(bounds=(0.0, 15.0), initialize=1.0)
    f = g.add_follower("follower")
    f.y = pyo.Var(bounds=(0.0, 20.0), initialize=1.0)
    f.obj = pyo.Objective(expr=(m.x + 2 * f.y - 30) ** 2, sense=pyo.minimize)
    f.c1 = pyo.Constraint(expr=m.x + f.y <= 20)
    g.set_leader([m.x], objective=m.x ** 2 + (f.y - 10) ** 2, sense=pyo.minimize,
                 constraints=[f.y - m.x <= 0])
    g.data = {"problem": "shimizu_aiyoshi1981"}
    return g


@_problem("henderson_quandt1958", -9800.0 / 3.0,
          "Henderson, Quandt (1958) Microeconomic Theory (Stackelberg duopoly); BOLIB "
          "HendersonQuandt1958 (F*=-3266.67); MacMPEC stackelberg1 (-3266.67); exact value "
          "-9800/3 at x=280/3, y=80/3 derived in the docstring")
def henderson_quandt1958() -> StackelbergGame:
    """Stackelberg duopoly: min x(x/2 + y/2 - 95) over x in [0, 200], y in argmin y(x/2 + y - 100), y >= 0.

    The follower's reaction is y = 50 - x/4, so the leader minimises
    x(3x/8 - 70): x* = 280/3, F* = -9800/3. The follower's box y in [0, 100]
    is never binding (y <= 50).
    """
    g = StackelbergGame("henderson_quandt1958")
    m = g.model
    m.x = pyo.Var(bounds=(0.0, 200.0), initialize=0.0)
    f = g.add_follower("follower")
    f.y = pyo.Var(bounds=(0.0, 100.0), initialize=0.0)
    f.obj = pyo.Objective(expr=f.y * (0.5 * m.x + f.y - 100), sense=pyo.minimize)
    g.set_leader([m.x], objective=m.x * (0.5 * (m.x + f.y) - 95), sense=pyo.minimize)
    g.data = {"problem": "henderson_quandt1958"}
    return g


@_problem("clark_westerberg1990", 5.0,
          "Clark, Westerberg (1990) Bilevel programming for steady-state chemical process "
          "design I, Comput. Chem. Eng. 14; BOLIB ClarkWesterberg1990a and SahinCiric1998Ex2 "
          "(F*=5); Handbook of Test Problems 9.3.6; BilevelJuMP test jump_HTP_quad05 (5)")
def clark_westerberg1990() -> StackelbergGame:
    """min (x-3)^2 + (y-2)^2 over x in [0, 8], y in argmin (y-5)^2.

    Follower: -2x + y <= 1, x - 2y <= 2, x + 2y <= 14. Optimum x=1, y=3. The
    follower's box y in [0, 10] is never binding (y = min(5, 1+2x, 7-x/2) >= 1).
    The leader starts at x0 = 0 (BOLIB's start x0 = 1 is the optimum); there
    are local minima at x = 3 (F = 9) and x = 4.4 (F = 9.8).
    """
    g = StackelbergGame("clark_westerberg1990")
    m = g.model
    m.x = pyo.Var(bounds=(0.0, 8.0), initialize=0.0)
    f = g.add_follower("follower")
    f.y = pyo.Var(bounds=(0.0, 10.0), initialize=1.0)
    f.obj = pyo.Objective(expr=(f.y - 5) ** 2, sense=pyo.minimize)
    f.c1 = pyo.Constraint(expr=-2 * m.x + f.y <= 1)
    f.c2 = pyo.Constraint(expr=m.x - 2 * f.y <= 2)
    f.c3 = pyo.Constraint(expr=m.x + 2 * f.y <= 14)
    g.set_leader([m.x], objective=(m.x - 3) ** 2 + (f.y - 2) ** 2, sense=pyo.minimize)
    g.data = {"problem": "clark_westerberg1990"}
    return g


@_problem("htp_9_3_5", 0.5,
          "Floudas et al. (1999) Handbook of Test Problems in Local and Global Optimization, "
          "9.3.5; MacMPEC ex9.2.4 (0.5); BilevelJuMP test jump_HTP_quad04 (0.5 at x=3, y=(1,2))")
def htp_9_3_5() -> StackelbergGame:
    """min 0.5((y1-2)^2 + (y2-2)^2), y in argmin 0.5 y1^2 + y2 s.t. y1 + y2 = x, y >= 0.

    The follower's solution is unique (y1 = min(x, 1), y2 = x - y1) though its
    objective is linear in y2. The source leaves x free; the leader's box is
    x in [0, 10] and the follower's y in [0, 10]^2. Optimum x=3, y=(1, 2).
    The leader starts at x0 = 0 (BilevelJuMP's start is the optimum).
    """
    g = StackelbergGame("htp_9_3_5")
    m = g.model
    m.x = pyo.Var(bounds=(0.0, 10.0), initialize=0.0)
    f = g.add_follower("follower")
    f.y = pyo.Var([1, 2], bounds=(0.0, 10.0), initialize=0.0)
    f.obj = pyo.Objective(expr=0.5 * f.y[1] ** 2 + f.y[2], sense=pyo.minimize)
    f.split = pyo.Constraint(expr=f.y[1] + f.y[2] == m.x)
    g.set_leader([m.x], objective=0.5 * ((f.y[1] - 2) ** 2 + (f.y[2] - 2) ** 2),
                 sense=pyo.minimize)
    g.data = {"problem": "htp_9_3_5"}
    return g


# ---------------------------------------------------------- several followers
@_problem("desilva1978", -1.0,
          "De Silva (1978) PhD thesis, via Falk, Liu (1995); BOLIB DeSilva1978 (F*=-1); "
          "MacMPEC ex9.2.6 (-1); Handbook of Test Problems 9.3.7")
def desilva1978() -> StackelbergGame:
    """min (x1-1)^2 + (x2-1)^2 + y1^2 + y2^2 - 2, each y_j in argmin (x_j - y_j)^2 on [0.5, 1.5].

    The lower level is separable, so it is written as two followers. Leader
    box x in [0, 2]^2 (MacMPEC has x >= 0). Optimum x = y = (0.5, 0.5), where
    each follower's bound is weakly active (the reaction y_j = clip(x_j) has a
    kink there).
    """
    g = StackelbergGame("desilva1978")
    m = g.model
    m.x = pyo.Var([1, 2], bounds=(0.0, 2.0), initialize=0.0)
    ys = []
    for j in (1, 2):
        f = g.add_follower(f"follower{j}")
        f.y = pyo.Var(bounds=(0.5, 1.5), initialize=1.0)
        f.obj = pyo.Objective(expr=(m.x[j] - f.y) ** 2, sense=pyo.minimize)
        ys.append(f.y)
    obj = (m.x[1] - 1) ** 2 + (m.x[2] - 1) ** 2 + ys[0] ** 2 + ys[1] ** 2 - 2
    g.set_leader([m.x], objective=obj, sense=pyo.minimize)
    g.data = {"problem": "desilva1978"}
    return g


# Stackelberg-Nash-Cournot oligopoly with linear demand, derived here.
_COURNOT = dict(a=100.0, b=1.0, c0=10.0, c=(10.0, 15.0, 25.0), d=(1.0, 1.0, 2.0))


def cournot_optimum(a, b, c0, c, d):
    """Closed-form leader output and profit of the linear Stackelberg-Nash-Cournot game.

    Followers i maximise (a - b Q) q_i - c_i q_i - d_i q_i^2 / 2 given the
    leader's q0 (Q total output). With s_i = 1/(b + d_i), S = sum s_i and
    C = sum s_i c_i, their Nash equilibrium gives the price
    p(q0) = (a - b q0 + b C) / (1 + b S), so the leader's profit
    (p - c0) q0 is concave with maximiser q0* = (a + b C - c0 (1 + b S)) / (2b)
    and maximum b q0*^2 / (1 + b S) (valid when every follower's output is
    positive, which the caller checks).
    """
    s = [1.0 / (b + di) for di in d]
    S, C = sum(s), sum(si * ci for si, ci in zip(s, c))
    q0 = (a + b * C - c0 * (1 + b * S)) / (2 * b)
    price = (a - b * q0 + b * C) / (1 + b * S)
    qf = [si * (price - ci) for si, ci in zip(s, c)]
    return q0, qf, b * q0 ** 2 / (1 + b * S)


@_problem("cournot3", 114075.0 / 112.0,
          "derived in closed form (cournot_optimum): Stackelberg-Nash-Cournot game in the "
          "setting of Sherali, Soyster, Murphy (1983) Stackelberg-Nash-Cournot equilibria, "
          "Oper. Res. 31, with linear demand; q0* = 195/4, profit 114075/112")
def cournot3() -> StackelbergGame:
    """A leader firm and three follower firms in Cournot-Nash equilibrium, linear demand.

    Price p = 100 - Q, leader cost 10 q0, follower i cost c_i q_i + d_i q_i^2/2
    with c = (10, 15, 25), d = (1, 1, 2). The leader maximises its profit
    (p - 10) q0; each follower maximises its own profit, which depends on the
    other followers' outputs through the price. Boxes: q0 in [0, 100], q_i in
    [0, 100] (never binding: the optimum is q0 = 48.75, q = (10.45, 7.95, 1.96)).
    """
    a, b, c0, c, d = (_COURNOT[k] for k in ("a", "b", "c0", "c", "d"))
    g = StackelbergGame("cournot3")
    m = g.model
    m.q0 = pyo.Var(bounds=(0.0, 100.0), initialize=0.0)
    fs = []
    for i in range(3):
        f = g.add_follower(f"firm{i + 1}")
        f.q = pyo.Var(bounds=(0.0, 100.0), initialize=10.0)
        fs.append(f)
    total = m.q0 + sum(f.q for f in fs)
    for f, ci, di in zip(fs, c, d):
        f.obj = pyo.Objective(expr=(a - b * total) * f.q - ci * f.q - 0.5 * di * f.q ** 2,
                              sense=pyo.maximize)
    g.set_leader([m.q0], objective=(a - b * total - c0) * m.q0, sense=pyo.maximize)
    g.data = {"problem": "cournot3", "a": a, "b": b, "c0": c0, "c": list(c), "d": list(d)}
    return g


# MacMPEC gnash1 (Facchinei, Jiang, Qi (1999) A smoothing method for MPECs,
# Math. Prog. 85, problem 8; Cournot data of Murphy, Sherali, Soyster (1982)).
_GNASH_FIRMS = dict(c=(10.0, 8.0, 6.0, 4.0, 2.0), K=(5.0,) * 5, b=(1.2, 1.1, 1.0, 0.9, 0.8))


def gnash_output_floor(L: float, gamma: float, c=None, K=None, b=None) -> float:
    """A lower bound on total output Q = x + sum y_i at every followers' equilibrium of ``gnash``.

    It holds for every leader output x in [0, L]. With p(Q) = G Q^(-1/g)
    (G = 5000^(1/g), g = gamma >= 1), k_i = K_i^(-1/b_i), and the followers'
    KKT conditions (necessary and sufficient: each follower is convex)

        c_i + k_i y_i - p(Q) (1 - y_i / (g Q)) = l_i - u_i,
        0 <= l_i _|_ y_i >= 0,  0 <= u_i _|_ L - y_i >= 0,

    (p'(Q) = -p(Q) / (g Q)), one of three cases holds:

    a. some y_i = L: Q >= y_i = L (all outputs are >= 0);
    b. some y_i = 0 (so u_i = 0): l_i = c_i - p(Q) >= 0, i.e. p(Q) <= c_i,
       Q >= 5000 / c_i^g >= 5000 / c_max^g;
    c. every 0 < y_i < L: l_i = u_i = 0; summing the n stationarity rows,
       C + sum k_i y_i = p(Q) (n - Y / (g Q)) with C = sum c_i, Y = sum y_i <= Q,
       so (n - 1/g) G Q^(-1/g) <= C + k_max Q. The left side decreases and the
       right side increases in Q, hence Q >= Q_c, their crossing point.

    So Q >= min(L, 5000 / c_max^g, Q_c), returned slightly rounded down
    (Q_c by bisection). gnash10: 150; gnash14: about 80; gnash19: 20.
    """
    c = _GNASH_FIRMS["c"][1:] if c is None else c
    K = _GNASH_FIRMS["K"][1:] if K is None else K
    b = _GNASH_FIRMS["b"][1:] if b is None else b
    n = len(c)
    G = 5000.0 ** (1.0 / gamma)
    k_max = max(Ki ** (-1.0 / bi) for Ki, bi in zip(K, b))

    def phi(q):  # decreasing on (0, inf); Q_c is its root
        return (n - 1.0 / gamma) * G * q ** (-1.0 / gamma) - sum(c) - k_max * q

    lo, hi = 1e-12, 1.0
    while phi(hi) > 0:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if phi(mid) > 0 else (lo, mid)
    return (1.0 - 1e-9) * min(L, 5000.0 / max(c) ** gamma, lo)


def gnash(name: str, L: float, gamma: float) -> StackelbergGame:
    """The MacMPEC ``gnash1`` Stackelberg-Nash-Cournot game: a leader and four followers.

    Price p(Q) = 5000^(1/gamma) Q^(-1/gamma), Q = x + sum y_i. The leader
    minimises c1 x + b1/(b1+1) K1^(-1/b1) x^((1+b1)/b1) - x p(Q) over
    x in [0, L]. Follower i minimises c_i y_i + K_i^(-1/b_i) y_i^2 / 2 - y_i p(Q)
    over y_i in [0, L] (exactly the follower conditions MacMPEC's gnash1.mod
    states: its KKT rows use the marginal cost c_i + K_i^(-1/b_i) y_i); strictly
    convex in y_i for gamma >= 1.

    The leader has one constraint that never binds: Q >= :func:`gnash_output_floor`,
    a bound every followers' equilibrium satisfies for every x in [0, L] (derived
    there from the followers' KKT conditions), so the bilevel problem is the
    source's. It keeps Q, hence the price, away from the singularity Q = 0: a
    global solver's relaxation of Q^(-1/gamma) over Q in [0, 5L] is useless
    (SCIP's bound stays near -2.5e8 without it).
    """
    c, K, b = (_GNASH_FIRMS[k] for k in ("c", "K", "b"))
    gg = 5000.0 ** (1.0 / gamma)
    g = StackelbergGame(name)
    m = g.model
    m.x = pyo.Var(bounds=(0.0, L), initialize=L / 2)
    fs = []
    for i in range(4):
        f = g.add_follower(f"firm{i + 2}")
        f.y = pyo.Var(bounds=(0.0, L), initialize=L / 2)
        fs.append(f)
    Q = m.x + sum(f.y for f in fs)
    price = gg * Q ** (-1.0 / gamma)
    for i, f in enumerate(fs, start=1):
        f.obj = pyo.Objective(
            expr=c[i] * f.y + 0.5 * K[i] ** (-1.0 / b[i]) * f.y ** 2 - f.y * price,
            sense=pyo.minimize)
    leader = (c[0] * m.x + b[0] / (b[0] + 1) * K[0] ** (-1.0 / b[0]) * m.x ** ((1 + b[0]) / b[0])
              - m.x * price)
    floor = gnash_output_floor(L, gamma, c[1:], K[1:], b[1:])
    g.set_leader([m.x], objective=leader, sense=pyo.minimize, constraints=[Q >= floor])
    g.data = {"problem": name, "L": L, "gamma": gamma, "output_floor": floor,
              **{k: list(v) for k, v in _GNASH_FIRMS.items()}}
    return g


_GNASH_SOURCE = ("MacMPEC {0} (gnash1.mod with {0}.dat: L={1}, gamma={2}), optimum {3}; "
                 "Facchinei, Jiang, Qi (1999) Math. Prog. 85, problem 8")
for _name, _L, _g, _opt in (("gnash10", 150.0, 1.0, -230.823), ("gnash14", 150.0, 1.7, -0.179046),
                            ("gnash19", 20.0, 1.7, -6.11671)):
    def _builder(_name=_name, _L=_L, _g=_g):
        return gnash(_name, _L, _g)

    _builder.__doc__ = f"MacMPEC {_name}: gnash1 with L={_L}, gamma={_g}."
    _problem(_name, _opt, _GNASH_SOURCE.format(_name, _L, _g, _opt))(_builder)


# ------------------------------------------------- over generalized Nash games
def harker_tax_optimum() -> tuple:
    """``(tau*, objective*)`` of :func:`harker_tax`, in closed form.

    With the followers' variational equilibrium of
    :func:`stackopt.models.gnep.harker_equilibrium`, the leader's objective
    f(tau) = (x1(tau) - 9.5)^2 + tau^2 / 100 is, piece by piece,
    (4 tau - 4.5)^2 + tau^2/100 on [0, 1] (decreasing: f(1) = 0.26),
    (12 tau - 12.5)^2 + tau^2/100 on [1, 13/12] (the capacity binds), and at least
    0.25 + tau^2/100 beyond (x1 = 10). The middle piece's minimiser
    tau* = 300 / 288.01... lies inside it: 144.01 tau^2 - 300 tau + 156.25 is least at
    tau* = 150 / 144.01, with f* = 156.25 - 150^2 / 144.01, the global minimum.
    """
    a, b, c = 144.01, -300.0, 156.25
    tau = -b / (2 * a)
    return tau, c - b * b / (4 * a)


@_problem("harker_tax", lambda: harker_tax_optimum()[1],
          "derived here in closed form (harker_tax_optimum) over the variational equilibrium of "
          "Harker (1991) Eur. J. Oper. Res. 54:81-94 with a tax on player 2; tau* = 1.041594, "
          "x* = (9.49910, 5.50090), the shared capacity binding")
def harker_tax() -> StackelbergGame:
    """A regulator taxes player 2 of Harker's game at tau in [0, 2] and minimises
    (x1 - 9.5)^2 + tau^2 / 100 over the variational equilibrium
    (:func:`stackopt.models.gnep.harker`); the optimum has the shared capacity binding."""
    from .gnep import harker

    g = harker()
    g.data = {"problem": "harker_tax"}
    return g


def river_basin_optimum(grid: int = 201) -> tuple:
    """``(K1*, objective*)`` of :func:`river_basin_standard`, from the followers'
    equilibrium solved exactly (:func:`stackopt.models.gnep.river_basin_equilibria`).

    On every piece of [50, 150] where the equilibrium's active set is the same, the
    equilibrium is affine in K1 (a fixed linear system with K1 on its right-hand side), so
    the leader's objective is a quadratic in K1 there. The pieces are found on a grid of
    ``grid`` values and their ends by bisection; each piece's quadratic comes from two of
    its points and its maximiser is kept where it lies in the piece. The optimum is the
    best of those maximisers, the pieces' ends and the box's ends (the objective is
    continuous): K1* = 63.019, where station 1 binds and firm 3 produces nothing.
    """
    from .gnep import river_basin_data, river_basin_equilibria

    _, _, A, _ = river_basin_data()

    def solve(K):  # at a piece's end two active sets describe the same equilibrium
        found = river_basin_equilibria(K)
        return found[0][0], {act for _, _, act in found}

    def objective(x):
        from .gnep import _RIVER
        c1, c2 = np.array(_RIVER["c1"]), np.array(_RIVER["c2"])
        total = x.sum()
        profit = float(np.sum((_RIVER["d1"] - _RIVER["d2"] * total) * x - (c1 + c2 * x) * x))
        return profit - 0.005 * float(A[0] @ x) ** 2

    Ks = np.linspace(50.0, 150.0, grid)
    acts = [min(solve(K)[1]) for K in Ks]
    candidates = [50.0, 150.0]
    start = 0
    for i in range(1, grid + 1):
        if i < grid and acts[i] == acts[start]:
            continue
        lo, hi = Ks[start], Ks[i - 1]
        if i < grid:  # the piece's end: bisect between the last grid point in it and the next
            a, b = Ks[i - 1], Ks[i]
            for _ in range(100):
                mid = 0.5 * (a + b)
                a, b = (mid, b) if acts[start] in solve(mid)[1] else (a, mid)
            hi = a
            candidates.append(a)
        if hi > lo:  # the quadratic through three points of the piece; its maximiser
            ks = np.array([lo, 0.5 * (lo + hi), hi])
            coef = np.polyfit(ks, [objective(solve(K)[0]) for K in ks], 2)
            if coef[0] < 0:
                k_star = -coef[1] / (2 * coef[0])
                if lo <= k_star <= hi and acts[start] in solve(k_star)[1]:
                    candidates.append(k_star)
        start = i
    best = max(candidates, key=lambda K: objective(solve(K)[0]))
    return float(best), objective(solve(best)[0])


@_problem("river_basin_standard", 41.52515390921,
          "derived here (river_basin_optimum: exact enumeration of the followers' equilibrium "
          "on each piece of the leader's box) over the river basin game of Haurie, Krawczyk "
          "(1997), Krawczyk, Uryasev (2000); K1* = 63.01914, x* = (13.3101, 15.8091, 0)")
def river_basin_standard() -> StackelbergGame:
    """The agency sets station 1's standard K1 in [50, 150] of the river basin pollution
    game (:func:`stackopt.models.gnep.river_basin`: two shared constraints, the
    variational equilibrium) and maximises the firms' profit minus 0.005 (station 1's
    pollution)^2. At the optimum station 1 binds and firm 3 is at its lower bound."""
    from .gnep import river_basin

    g = river_basin()
    g.data = {**g.data, "problem": "river_basin_standard"}
    return g


@_problem("price_budget", 3.75,
          "derived here in closed form: the followers' equilibrium of "
          "stackopt.models.gnep.price_budget_equilibrium gives the revenue 1.5 + 3 p - p^2 on the "
          "whole box [0.5, 2], maximal at p* = 1.5")
def price_budget() -> StackelbergGame:
    """A seller prices its good at p in [0.5, 2] for two buyers with budgets p x_i <= B_i and
    accounts p x_i + y_i = 5 (the leader's price as a coefficient in both), and maximises
    its revenue p (x1 + x2) (:func:`stackopt.models.gnep.price_budget`). Buyer 1's budget
    binds (x1 = 2/p), buyer 2 is interior (x2 = 3 - 1/(2p) - p), so the revenue is
    1.5 + 3 p - p^2: p* = 1.5, revenue 3.75."""
    from .gnep import price_budget as build

    return build()


def disk_cap_equilibrium(p: float) -> tuple:
    """The variational equilibrium ``(u1, u2, y)`` of :func:`disk_cap_radius` at radius ``p``.

    With the disk |u|^2 <= p^2 and the cap u2 + y <= 3.155 both binding (multipliers l and
    s), stationarity reads 2 (u1 - 3) + 2 l u1 = 0, 2 (u2 - 2) + 2 l u2 + s = 0 and
    2 (y - 4) + s = 0. The first gives l = 3 / u1 - 1 (> 0 for u1 < 3), the third with the
    cap s = 2 (u2 + 0.845) (> 0 for u2 > 0), and the second then u2 (1 + 3 / u1) = 1.155:
    u2 = 1.155 u1 / (u1 + 3). The disk's boundary u1^2 + u2^2 = p^2 is increasing in u1,
    so u1 is its one root in (0, p] (Brent's method). Both followers' problems are
    strictly convex and the cap is shared under one multiplier, so this is the unique
    variational equilibrium wherever l, s > 0: for every p in [0.8, 1.6].
    """
    from scipy.optimize import brentq

    u1 = brentq(lambda u: u * u + (1.155 * u / (u + 3.0)) ** 2 - p * p, 1e-12, p, xtol=1e-15)
    u2 = 1.155 * u1 / (u1 + 3.0)
    return u1, u2, 3.155 - u2


def disk_cap_radius_optimum() -> tuple:
    """``(p*, objective*)`` of :func:`disk_cap_radius`: with :func:`disk_cap_equilibrium` the
    leader's objective u1 + y - (p - 1)^2 = u1 - u2 + 3.155 - (p - 1)^2 is a smooth function
    of p on [0.8, 1.6], maximised by bounded Brent (to 1e-12): p* = 1.403311, 3.989161. Its
    derivative (d(u1 - u2)/du1) (du1/dp) - 2 (p - 1) changes sign once there (the first term
    decreases from about 0.75, the second increases)."""
    from scipy.optimize import minimize_scalar

    def value(p):
        u1, u2, y = disk_cap_equilibrium(p)
        return u1 + y - (p - 1.0) ** 2

    r = minimize_scalar(lambda p: -value(p), bounds=(0.8, 1.6), method="bounded",
                        options={"xatol": 1e-12})
    return float(r.x), float(value(r.x))


@_problem("disk_cap_radius", lambda: disk_cap_radius_optimum()[1],
          "derived here (disk_cap_radius_optimum: the variational equilibrium in closed form up to "
          "one monotone root, then a bounded scalar maximisation) over the game "
          "stackopt.models.gnep.disk_cap; p* = 1.403311, u* = (1.356448, 0.359627), y* = 2.795373, "
          "the disk and the shared cap binding")
def disk_cap_radius() -> StackelbergGame:
    """The leader sets the radius p in [0.8, 1.6] of player a's disk |u|^2 <= p^2 (a constraint
    nonlinear in the follower's own variables, with the leader's variable in it) in
    :func:`stackopt.models.gnep.disk_cap` (a also shares the cap u2 + y <= 3.155 with b), at
    the cost (p - 1)^2, and maximises u1 + y - (p - 1)^2. At the optimum both the disk and
    the shared cap bind (:func:`disk_cap_equilibrium`)."""
    from .gnep import disk_cap

    g = disk_cap()
    m, a, b = g.model, g.model.a, g.model.b
    m.p.setlb(0.8)
    m.p.setub(1.6)
    g.set_leader([m.p], objective=a.u[1] + b.y - (m.p - 1.0) ** 2, sense=pyo.maximize)
    g.data = {"problem": "disk_cap_radius"}
    return g


# ------------------------------------------------------------------ registry
@register_game("library", params={
    "problem": Param(str, "bard1988_ex1",
                     "which known-optimum problem: " + ", ".join(PROBLEMS)),
})
def library(seed: int = 0, problem: str = "bard1988_ex1") -> StackelbergGame:
    """Bilevel / multi-follower problems with published optimal values (seed unused)."""
    if problem not in PROBLEMS:
        raise ValueError(f"unknown library problem {problem!r}; expected one of {sorted(PROBLEMS)}")
    return PROBLEMS[problem]()
