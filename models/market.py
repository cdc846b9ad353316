"""A capacity-constrained electricity market: Cournot generators sharing transmission lines,
and a regulator who sets nodal charges and subsidies within a budget.

**The followers' game** is the Nash-Cournot market with coupled transmission constraints
of Contreras, Klusch, Krawczyk (2004) "Numerical solutions to Nash-Cournot equilibria in
coupled constraint electricity markets", IEEE Trans. Power Systems 19(1):195-206 (the
line limits as constraints shared by the generators, Rosen's normalized equilibrium),
with the DC-network power transfer distribution factors of Hobbs (2001) "Linear
complementarity models of Nash-Cournot competition in bilateral and POOL power
markets", IEEE Trans. Power Systems 16(2):194-202. The instances are drawn from the
seed (the papers' own data are not reproduced), in sizes that scale:

* a ring network of ``nodes`` buses ``0, ..., N-1`` and ``N`` lines ``(k, k+1 mod N)``
  with reactances ``x_l ~ U[0.5, 1.5]``; bus 0 is the load centre, where all
  consumers are (and the reference bus); the generating buses are ``1, ..., N-1``;
* ``firms`` generators, firm ``i`` (0-based) at bus ``n(i) = 1 + i mod (N - 1)``,
  with cost ``c_i q_i + d_i q_i^2 / 2``, ``c_i ~ U[10, 30]``, ``d_i ~ U[0.1, 0.3]``,
  and output ``0 <= q_i <= qmax_i``, ``qmax_i = (a - c_i + t_max) / (2 b + d_i)`` (above
  every best response, so never binding);
* inverse demand at bus 0: ``price = a - b Q``, ``Q = sum_i q_i``, ``a = 100``,
  ``b = 4 / firms``;
* flows: every MW injected at bus ``n`` and withdrawn at bus 0 puts ``H[l, n]`` MW on
  line ``l`` (``H = diag(1/x) A_r B_r^{-1}``: ``A`` the line-bus incidence, ``B = A^T
  diag(1/x) A``, ``_r`` without bus 0), so line ``l`` carries ``f_l(q) = sum_i H[l, n(i)]
  q_i``; its limit ``-K_l <= f_l(q) <= K_l`` is one shared constraint of every firm with
  ``H[l, n(i)] != 0``, with ``K_l = congestion * max(u_l |f_l(q^0)|, 0.1 max_k |f_k(q^0)|)``,
  ``u_l ~ U[0.9, 1.8]`` and ``q^0`` the Cournot outputs without charges and line limits
  (a linear solve): at ``congestion = 1`` a line seldom binds without charges, and lines
  bind as subsidies raise the output (smaller ``congestion``: more binding lines; where
  binding lines pin every bus's injection, no charge changes the welfare).

Firm ``i`` maximises its profit ``(a - b Q) q_i - t_{n(i)} q_i - c_i q_i - d_i q_i^2 / 2``.

**The leader** (a regulator, stackopt's own construction over this market) sets a charge
``t_n`` per generating bus, ``-t_max <= t_n <= t_max`` with ``t_max = 30`` (negative: a
subsidy per MWh), initially 0, and maximises social welfare at the followers'
equilibrium, consumer plus producer surplus (charges are transfers):

    W(q) = a Q - b Q^2 / 2 - sum_i (c_i q_i + d_i q_i^2 / 2),

subject to its budget, a constraint evaluated at the equilibrium: the net subsidy it pays
is at most ``budget``, ``-sum_i t_{n(i)} q_i <= budget``. Cournot firms withhold output
(price above marginal cost); subsidies counter that, charges at one bus can fund
subsidies at another and shift generation around congested lines.

The linear inverse demand makes the firms' game a potential game: the normalized
equilibrium maximises ``P(q) = a Q - b (Q^2 + sum_i q_i^2) / 2 - sum_i (c_i + t_{n(i)})
q_i - sum_i d_i q_i^2 / 2`` over the joint set (a strictly concave QP), which
:func:`market_equilibrium` solves independently of stackopt (HiGHS, then the KKT system
on its active set).
"""
from __future__ import annotations

import numpy as np
import pyomo.core as pyo

from stackopt.game import StackelbergGame

from . import Param, register_game

DEMAND_INTERCEPT = 100.0
MAX_TARIFF = 30.0


def _check(name, value, ok, expected):
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def market_data(seed: int = 0, firms: int = 4, nodes: int = 3, congestion: float = 1.0) -> dict:
    """The instance's data (see the module docstring), a pure function of its arguments.

    Keys: ``a``, ``b``, ``c``, ``d``, ``qmax`` (per firm), ``bus`` (each firm's bus,
    1..N-1), ``reactance`` and ``lines`` (per line), ``ptdf`` (line x firm: ``H[l, n(i)]``),
    ``limit`` (``K_l``), ``t_max``.
    """
    _check("firms", firms, isinstance(firms, (int, np.integer)) and firms >= 1, "an integer >= 1")
    _check("nodes", nodes, isinstance(nodes, (int, np.integer)) and nodes >= 3, "an integer >= 3")
    _check("congestion", congestion, np.isfinite(congestion) and congestion > 0, "a finite number > 0")
    rng = np.random.default_rng(seed)
    n, N = int(firms), int(nodes)
    a, b = DEMAND_INTERCEPT, 4.0 / n
    c = rng.uniform(10.0, 30.0, n)
    d = rng.uniform(0.1, 0.3, n)
    reactance = rng.uniform(0.5, 1.5, N)
    lines = [(k, (k + 1) % N) for k in range(N)]
    A = np.zeros((N, N))
    for line, (i, j) in enumerate(lines):
        A[line, i], A[line, j] = 1.0, -1.0
    B = A.T @ np.diag(1.0 / reactance) @ A
    H = np.diag(1.0 / reactance) @ A[:, 1:] @ np.linalg.inv(B[1:, 1:])
    bus = 1 + np.arange(n) % (N - 1)
    ptdf = H[:, bus - 1]
    M = b * (np.ones((n, n)) + np.eye(n)) + np.diag(d)
    flows = ptdf @ np.linalg.solve(M, a - c)
    u = rng.uniform(0.9, 1.8, N)
    limit = congestion * np.maximum(u * np.abs(flows), 0.1 * np.abs(flows).max())
    return dict(a=a, b=b, c=c, d=d, qmax=(a - c + MAX_TARIFF) / (2 * b + d), bus=bus,
                reactance=reactance, lines=lines, ptdf=ptdf, limit=limit, t_max=MAX_TARIFF)


def market_equilibrium(data: dict, tariffs) -> tuple:
    """The normalized equilibrium ``(q, line multipliers)`` at the bus charges ``tariffs``
    (one per generating bus 1..N-1), independently of stackopt.

    It maximises the potential (module docstring) over ``0 <= q <= qmax`` and the line
    limits: HiGHS's QP solver finds it and its active set; the KKT system on that set
    (stationarity of the free outputs, the binding lines as equalities) is then solved
    exactly. A line's multiplier is positive where its upper limit binds, negative where
    its lower one does.
    """
    import highspy

    a, b, c, d, H, K, qmax = (data[k] for k in ("a", "b", "c", "d", "ptdf", "limit", "qmax"))
    n, L = len(c), len(K)
    t = np.asarray(tariffs, dtype=float)[data["bus"] - 1]
    Q = b * (np.ones((n, n)) + np.eye(n)) + np.diag(d)  # -P's Hessian
    g = -(a - c - t)  # -P's linear term
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    model = highspy.HighsModel()
    lp = model.lp_
    lp.num_col_, lp.num_row_ = n, L
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = g, np.zeros(n), qmax
    lp.row_lower_, lp.row_upper_ = -K, K
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(0, n * L + 1, L)
    lp.a_matrix_.index_ = np.tile(np.arange(L), n)
    lp.a_matrix_.value_ = H.T.ravel()
    hess = model.hessian_
    hess.dim_, hess.format_ = n, highspy.HessianFormat.kTriangular
    hess.start_ = np.array([j * n - j * (j - 1) // 2 for j in range(n + 1)])
    hess.index_ = np.concatenate([np.arange(j, n) for j in range(n)])
    hess.value_ = np.concatenate([Q[j:, j] for j in range(n)])
    h.passModel(model)
    h.run()
    q = np.array(h.getSolution().col_value)
    tol = 1e-6
    held = np.where(q <= tol, 0.0, np.where(q >= qmax - tol, qmax, np.nan))
    flows = H @ q
    rows = [r for r in range(L) if abs(abs(flows[r]) - K[r]) <= tol * max(1.0, K[r])]
    free = np.flatnonzero(np.isnan(held))
    x = np.where(np.isnan(held), 0.0, held)
    k = len(free) + len(rows)
    mat, rhs = np.zeros((k, k)), np.zeros(k)
    fixed = ~np.isnan(held)
    mat[:len(free), :len(free)] = Q[np.ix_(free, free)]
    mat[:len(free), len(free):] = H[rows][:, free].T
    rhs[:len(free)] = -g[free] - Q[np.ix_(free, fixed)] @ x[fixed]
    mat[len(free):, :len(free)] = H[rows][:, free]
    rhs[len(free):] = np.sign(flows[rows]) * K[rows] - H[rows][:, fixed] @ x[fixed]
    sol = np.linalg.solve(mat, rhs)
    x[free] = sol[:len(free)]
    mult = np.zeros(L)
    mult[rows] = sol[len(free):]
    return x, mult


@register_game("market", params={
    "firms": Param(int, 4, "generators (followers), spread over the generating buses"),
    "nodes": Param(int, 3, "buses of the ring network (>= 3; bus 0 is the load centre)"),
    "budget": Param(float, 0.0, "the regulator's subsidy budget: net subsidy paid <= budget (>= 0)"),
    "congestion": Param(float, 1.0, "scale of the line limits (smaller: more congestion)"),
})
def build_market(seed: int = 0, firms: int = 4, nodes: int = 3, budget: float = 0.0,
                 congestion: float = 1.0) -> StackelbergGame:
    """Electricity market: Cournot generators sharing transmission lines, a regulator's charges."""
    _check("budget", budget, np.isfinite(budget) and budget >= 0, "a finite number >= 0")
    data = market_data(seed, firms, nodes, congestion)
    a, b, c, d, H, K, qmax, bus = (data[k] for k in ("a", "b", "c", "d", "ptdf", "limit", "qmax",
                                                      "bus"))
    g = StackelbergGame("market")
    m = g.model
    m.t = pyo.Var(range(1, int(nodes)), bounds=(-MAX_TARIFF, MAX_TARIFF), initialize=0.0)
    gens = [g.add_follower(f"gen{i + 1}") for i in range(len(c))]
    for f, qm in zip(gens, qmax):
        f.q = pyo.Var(bounds=(0.0, float(qm)), initialize=0.0)
    total = sum(f.q for f in gens)
    for i, f in enumerate(gens):
        # (a - b Q - t - c_i) q_i - d_i q_i^2 / 2 with Q = q_i + the others' outputs, written
        # so that its concavity in q_i is provable (no deviation search is needed)
        others = sum(o.q for o in gens if o is not f)
        f.profit = pyo.Objective(
            expr=(a - b * others - m.t[int(bus[i])] - c[i]) * f.q - (b + 0.5 * d[i]) * f.q ** 2,
            sense=pyo.maximize)
    for line in range(len(K)):
        terms = [(float(H[line, i]), f) for i, f in enumerate(gens) if abs(H[line, i]) > 1e-12]
        if terms:
            flow = sum(h * f.q for h, f in terms)
            g.add_shared_constraint(f"line{line}", pyo.inequality(-float(K[line]), flow, float(K[line])))
    welfare = a * total - 0.5 * b * total ** 2 - sum(c[i] * f.q + 0.5 * d[i] * f.q ** 2
                                                      for i, f in enumerate(gens))
    subsidy = -sum(m.t[int(bus[i])] * f.q for i, f in enumerate(gens))
    g.set_leader([m.t], objective=welfare, sense=pyo.maximize, constraints=[subsidy <= budget])
    g.data = {"firms": int(firms), "nodes": int(nodes), "budget": float(budget),
              "congestion": float(congestion),
              **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in data.items()}}
    return g
