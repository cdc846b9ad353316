"""Cold-start dynamics: how the followers adjust from a start, which selects the equilibrium.

Each dynamics runs from a start until its steps are small and then hands over
a primal-dual point (:class:`Handover`) for the Newton engine to finish; the
multipliers come from the dynamics itself (a projection's normal cone, the
best responses' own multipliers), so no separate dual estimate is needed.

* :class:`GradientPlay` -- projected gradient play ``x <- P(x - eta F(x))``
  with an adaptive ``eta``, where every follower's set is simple
  (:attr:`FollowerSets.simple`: projections are exact and cheap); in a
  generalized Nash game whose smooth rows use only their followers' variables,
  the same play on the *joint* set (projections by Ipopt) with ``F`` weighted by
  Rosen's weights: the projection method of the variational inequality whose
  solutions are the normalized equilibria (:func:`joint_play_applies`).
* :class:`ImplicitGradientPlay` -- the same flow by linearly implicit Euler
  steps of the same length, for games where the explicit step leaves the
  objectives' domain (``log`` of an entropy term: stiff near the boundary).
* :class:`Relaxation` -- the paper's damped simultaneous best response
  ``x <- (1 - d) x + d BR(x)``, every best response solved by
  :class:`~stackopt.oracle.responses.best.BestResponses` (over the set the others' values
  leave the follower, in a generalized Nash game: then ``d <= 1 / coupling``, which
  keeps a jointly convex set).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Handover:
    """Where a dynamics stopped: ``z = (x, nu, lam, w)``, the steps it took, whether
    it settled (its last step was below the hand-over tolerance), and whether it
    stopped because ``F`` was not finite at its next point (``stiff``); the best
    responses it solved and how many of them failed."""

    z: tuple
    steps: int
    settled: bool
    stiff: bool = False
    distance: float = 0.0  # predicted distance from the dynamics' limit
    eta: float = 0.0  # gradient play: its step when it stopped (to play on from there)
    responses: int = 0
    response_failures: int = 0


def _distance(sizes, window: int = 10) -> float:
    """Predicted distance from the limit, ``step / (1 - rho)``, with ``rho`` the steps'
    contraction per step over the last ``window`` steps (``inf`` if they do not contract)."""
    if len(sizes) <= window or sizes[-1 - window] <= 0:
        return float("inf")
    rho = (sizes[-1] / sizes[-1 - window]) ** (1.0 / window)
    return sizes[-1] / (1.0 - rho) if rho < 1 else float("inf")


class ColdDynamics:
    """Interface: ``run(x, p, deadline, budget, handover) -> Handover``."""

    name = "abstract"

    def run(self, x, p, deadline: float, budget: int, handover: float) -> Handover:  # pragma: no cover
        raise NotImplementedError


class GradientPlay(ColdDynamics):
    """Projected gradient play with the step ``eta`` halved where the play oscillates or
    circles without contracting: over a window of ``patience`` steps, the mean step is
    not below ``CONTRACT`` times the previous window's and the play's net displacement
    is less than ``CIRCLING`` times the length of its path. Steps that keep their size
    along a steady direction (the play drifting towards a distant equilibrium) keep
    ``eta``: halving there would shrink the steps without bringing the play nearer;
    a play circling at a steady size (no potential: gradient play of a game need not
    converge at a given step) has its step halved until it contracts."""

    name = "gradient-play"
    CIRCLING = 0.5  # net displacement / path length below which a window oscillates or circles
    CONTRACT = 0.9  # mean step / previous window's above which a window did not contract

    def __init__(self, kernel, sets, step: float = 0.5, patience: int = 10, weights=None):
        self.k, self.sets, self.step, self.patience = kernel, sets, step, patience
        # Rosen's weight of each variable's follower (the joint set's play), or None
        self.weights = None if weights is None else np.asarray(weights, dtype=float)[kernel.x_owner]

    def run(self, x, p, deadline, budget, handover, eta=None) -> Handover:
        k = self.k
        eta = self.step if eta is None else eta
        it, proj, sizes = 0, None, []
        anchor, path, last = x, 0.0, np.inf  # the window's start, its path length, the last window's mean step
        self._eta = eta
        for it in range(1, budget + 1):
            F = k.F(x, p)
            if not np.all(np.isfinite(F)):
                return Handover(self._z(x, proj, p), it, False, stiff=True)
            if self.weights is not None:
                F = self.weights * F
            self._eta = eta
            proj = self.sets.project(x - eta * F, p)
            size = float(np.max(np.abs(proj.x - x), initial=0.0))
            path += float(np.linalg.norm(proj.x - x))
            x = proj.x
            sizes.append(size)
            if size <= handover:
                return Handover(self._z(x, proj, p), it, True, distance=_distance(sizes), eta=eta)
            if it % self.patience == 0:
                mean = float(np.mean(sizes[-self.patience:]))
                if mean >= self.CONTRACT * last and np.linalg.norm(x - anchor) < self.CIRCLING * path:
                    eta, mean = 0.5 * eta, np.inf
                anchor, path, last = x, 0.0, mean
            if time.perf_counter() > deadline:
                break
        return Handover(self._z(x, proj, p), it, False)

    def _z(self, x, proj, p):
        k = self.k
        if proj is None:
            return x, np.zeros(k.n_eq), np.zeros(k.n_ineq), np.zeros(k.n_x)
        if not self.sets.simple:  # the joint set: -eta r F is the projection's normal cone
            return joint_duals(k, proj, self._eta, self.weights)
        return (x,) + self.sets.stationary_duals(x, k.F(x, p), proj)


class ImplicitGradientPlay(ColdDynamics):
    """Projected gradient play by linearly implicit Euler steps: each step solves
    ``F(x) + (J(x) + I / eta)(x' - x) + normal cone = 0`` by one semismooth step of
    the :class:`~stackopt.oracle.newton.NewtonEngine` (the bounds and rows its active-set
    rule holds). ``eta`` is the explicit play's step, halved while the next point
    leaves the objectives' domain and doubled back after. One game Jacobian and one
    factorization per step: for stiff games, where the explicit step cannot be stable."""

    name = "implicit-gradient-play"

    def __init__(self, newton, step: float = 0.5, min_step: float = 1e-12):
        self.newton, self.step, self.min_step = newton, step, min_step
        self.system = newton.system

    def run(self, x, p, deadline, budget, handover, z=None) -> Handover:
        sysm, k = self.system, self.system.kernel
        if z is None:
            z = (x, np.zeros(sysm.m_e), np.zeros(sysm.m_i), np.zeros(k.n_x))
        F = k.F(z[0], p)
        eta, it = self.step, 0
        for it in range(1, budget + 1):
            J = sysm.jacobian(z[0], p, self.newton.solver.dense, z[1], z[2])
            while True:
                zt = self.newton.target(z, p, F, J, prox=1.0 / eta)
                Ft = k.F(zt[0], p)
                if np.all(np.isfinite(Ft)) and all(np.all(np.isfinite(v)) for v in zt):
                    break
                eta *= 0.5
                if eta < self.min_step:
                    return Handover(z, it, False, stiff=True)
            size = float(np.max(np.abs(zt[0] - z[0]), initial=0.0))
            z, F, eta = zt, Ft, min(self.step, 2.0 * eta)
            if size <= handover:
                return Handover(z, it, True)
            if time.perf_counter() > deadline:
                break
        return Handover(z, it, False)


class Relaxation(ColdDynamics):
    """Damped simultaneous best response; hands over the last best responses themselves
    (they carry the active bounds, and their multipliers).

    It settles once the best-response step is below ``step_tol``, or once the
    predicted distance of the best responses from the dynamics' limit,
    ``step / (1 - rho)`` with ``rho`` the observed contraction of the steps over
    the last two sweeps, is below ``handover`` (``Handover.distance``): the oracle
    then keeps Newton's answer only if it lies within that distance. Where no
    follower's problem reads another's variables (:func:`decoupled`: a game of one
    follower, say), the best responses are the equilibrium and the step is not damped."""

    name = "relaxation"

    def __init__(self, kernel, responses, damping: float = 0.5, patience: int = 30):
        self.k, self.responses, self.damping, self.patience = kernel, responses, damping, patience
        self.cap = 1.0 / max(1, coupling(kernel))
        # no follower's problem reads another's variables (one follower, say): the best
        # responses are the equilibrium, and the undamped step reaches it in one sweep
        self.decoupled = decoupled(kernel)

    def _damping(self, damping) -> float:
        if self.decoupled:
            return 1.0
        return min(self.damping if damping is None else damping, self.cap)

    def run(self, x, p, deadline, budget, handover, step_tol=None, damping=None) -> Handover:
        k = self.k
        d = self._damping(damping)
        step_tol = handover if step_tol is None else step_tol
        it, sizes, failed = 0, [], 0
        owners = np.arange(len(k.slices))
        for it in range(1, budget + 1):
            brs = self.responses.batch(owners, np.broadcast_to(x, (owners.size, x.size)), p,
                                      deadline=deadline)
            failed += sum(not b.ok for b in brs)
            br = np.concatenate([b.x for b in brs])
            if time.perf_counter() > deadline and not all(b.ok for b in brs):
                break  # responses cut short by the deadline: no step to judge
            step = br - x
            x = x + d * step
            size = float(np.max(np.abs(step), initial=0.0))
            sizes.append(size)
            done = dict(responses=it * owners.size, response_failures=failed)
            if size <= step_tol:
                return Handover(self._z(br, brs), it, True, distance=size, **done)
            if len(sizes) >= 3 and sizes[-3] > 0:
                rho = (size / sizes[-3]) ** 0.5
                if rho < 1 and size / (1 - rho) <= handover:
                    return Handover(self._z(br, brs), it, True, distance=size / (1 - rho), **done)
            if len(sizes) > self.patience and size >= min(sizes[:-self.patience]):
                break  # no smaller step in `patience` sweeps: the damped map does not contract
            if time.perf_counter() > deadline:
                break
        return Handover(self._z(br, brs), it, False, responses=it * owners.size, response_failures=failed)

    def contracts(self, system, z, p, damping=None) -> bool:
        """The damped best-response map ``x -> (1 - d) x + d BR(x)`` is a contraction at ``z``:
        its Jacobian ``(1 - d) I + d B``, ``B = -H_ii^{-1} J_i,-i`` over the free variables,
        has spectral radius below one. Checked where followers have bounds only."""
        k, d = self.k, self._damping(damping)
        if system.m_e or system.m_i:
            return True
        free = system.classify(z[0], z[2], z[3], p).free
        J = k.Jx(z[0], p)[np.ix_(free, free)]
        owner = k.x_owner[free]
        block = owner[:, None] == owner[None, :]
        try:
            B = -np.linalg.solve(np.where(block, J, 0.0), np.where(block, 0.0, J))
        except np.linalg.LinAlgError:
            return False
        M = (1 - d) * np.eye(B.shape[0]) + d * B
        return bool(B.size == 0 or np.max(np.abs(np.linalg.eigvals(M))) < 1)

    def _z(self, x, brs):
        k = self.k
        nu, lam, w = np.zeros(k.n_eq), np.zeros(k.n_ineq), np.zeros(k.n_x)
        me, mi = k.eq.n_rows, k.ineq.n_rows
        for i, (sl, b) in enumerate(zip(k.slices, brs)):
            nu[:me][k.eq.owner == i] = b.nu
            lam[:mi][k.ineq.owner == i] = b.lam
            w[sl] = b.w
        if k.smooth is not None:  # the followers' own multipliers of the smooth rows, by slot
            sigma = k.smooth.slot_multipliers({i: b.smooth for i, b in enumerate(brs) if b.smooth})
            nu[me:], lam[mi:] = sigma[:k.smooth.n_eq], np.maximum(sigma[k.smooth.n_eq:], 0.0)
        return x, nu, lam, w


def joint_play_applies(kernel) -> bool:
    """Whether projected gradient play on the joint set finds the game's equilibria: smooth
    rows (:mod:`stackopt.kernel.smooth_rows`) under a normalized concept (``"variational"``,
    ``"weighted"``), each row in its followers' variables only. The play's fixed points
    ``x = P(x - eta r F(x))`` are then exactly the normalized equilibria (a follower's
    own row that uses another follower's variables would bind that one too)."""
    sm = kernel.smooth
    return sm is not None and kernel.structure.concept != "any" and sm.self_contained


def joint_duals(kernel, proj, eta: float, weights=None) -> tuple:
    """``z`` at a joint projection ``x = P(x - eta r F(x))``: its normal cone's parts divided
    by ``eta`` (and by the follower's weight ``r``, for the rows and bounds that are one
    follower's; a shared row's multiplier is Rosen's common one)."""
    k = kernel
    r = np.ones(k.n_x) if weights is None else weights
    me, mi = k.eq.n_rows, k.ineq.n_rows
    by = np.ones(len(k.slices)) if weights is None else np.array([r[sl.start] for sl in k.slices])
    nu, lam = proj.nu / eta, proj.lam / eta
    nu[:me] /= by[k.eq.owner]
    lam[:mi] /= by[k.ineq.owner]
    own = k.smooth.owner[k.smooth.slot_row]  # a follower's own row: its weight; shared: none
    scale = np.where(own >= 0, by[np.maximum(own, 0)], 1.0)
    nu[me:] /= scale[:k.smooth.n_eq]
    lam[mi:] /= scale[k.smooth.n_eq:]
    return proj.x, nu, lam, proj.w / (eta * r)


def decoupled(kernel) -> bool:
    """No follower's problem reads another follower's variables: ``dF/dx`` has no entry
    outside the followers' own blocks and no smooth row binds two followers (a game of
    one follower is one). Each best response then ignores the others' values."""
    owner = kernel.x_owner
    return bool(np.all(owner[kernel.Jx_rows] == owner[kernel.Jx_cols])) and coupling(kernel) == 1


def coupling(kernel) -> int:
    """The largest number of followers whose variables one smooth row uses (1 without any):
    a damped simultaneous best response ``x + d (BR(x) - x)`` with ``d <= 1 / coupling``
    is a convex combination of ``x`` and points where one follower responded, so it
    stays in a jointly convex set that each response respects."""
    sm = kernel.smooth
    if sm is None:
        return 1
    owners = [set() for _ in range(sm.n_rows)]
    rows, cols = sm.jacobian_structure
    for r, j in zip(rows, cols):
        if j < kernel.n_x:
            owners[r].add(int(kernel.x_owner[j]))
    return max((len(o) for o in owners), default=1)
