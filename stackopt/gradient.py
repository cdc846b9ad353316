"""The gradient method: implicit KKT gradients inside an augmented Lagrangian (paper Algorithm 1).

The leader minimises ``L(p, s; lam) = l(x*, p) + lam^T (g + s) + mu/2 ||g + s||^2``
with ``l`` the leader's objective in minimisation form, ``g <= 0`` the leader's
constraints evaluated at the equilibrium ``x*(p)`` (their mean over the sampled
equilibria, or with ``constraints="worst"`` their largest value over them), and
slack variables ``s >= 0`` set to their exact minimiser
``max(0, -g - lam/mu)`` at every step. Each step solves the equilibrium
(warm-started), takes the total derivative of ``L`` by one adjoint solve of
the KKT matrix (:mod:`stackopt.implicit`), moves ``p`` by Adam or SGD and
projects it on the leader's bounds; every ``multiplier_every`` steps the
multipliers become ``max(0, lam + mu g)``.

With ``samples_per_step = k > 1`` the gradient is averaged over ``k``
equilibria; each is warm-started from its own previous position, and every
``resample_every`` steps all are drawn afresh from seeded random starts (the
stochastic oracle of paper Definition 2). Tracked branches can drift from the
distribution fresh draws give (the leader steers them), so with resampling
only iterates evaluated on fresh draws are candidates for the returned strategy.

The strategy returned is the best iterate whose constraint violation is at
most ``feasibility_tol`` (``select="best-feasible"``, the default), or the last
one (``select="last"``).
"""
from __future__ import annotations

import time

import numpy as np
from pyomo.common.config import (ConfigDict, ConfigValue, In, NonNegativeFloat, NonNegativeInt,
                                 PositiveFloat, PositiveInt)

from .implicit import leader_gradients, sensitivity
from .kernel import kernel_of
from .methods import Method, MethodOutput, register_method
from .oracle import EquilibriumOracle
from .result import Status


class _Options:
    def __init__(self, values: dict):
        self.__dict__.update(values)


def _unit_interval(v):
    v = float(v)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"expected a number in [0, 1), got {v!r}")
    return v


@register_method("gradient", "augmented-lagrangian")
class GradientMethod(Method):
    """Augmented Lagrangian gradient descent through the followers' equilibrium."""

    CONFIG = ConfigDict("gradient")
    CONFIG.declare("steps", ConfigValue(5000, PositiveInt, "number of gradient steps"))
    CONFIG.declare("lr", ConfigValue(1e-2, PositiveFloat, "learning rate"))
    CONFIG.declare("optimizer", ConfigValue("adam", In(["adam", "sgd"]), "adam or sgd"))
    CONFIG.declare("beta1", ConfigValue(0.9, _unit_interval, "Adam first-moment decay"))
    CONFIG.declare("beta2", ConfigValue(0.999, _unit_interval, "Adam second-moment decay"))
    CONFIG.declare("lr_decay", ConfigValue(
        "none", In(["none", "cosine"]), "learning-rate schedule over the steps"))
    CONFIG.declare("mu", ConfigValue(10.0, PositiveFloat, "augmented Lagrangian penalty"))
    CONFIG.declare("multiplier_every", ConfigValue(100, PositiveInt, "steps between multiplier updates (K)"))
    CONFIG.declare("oracle_tol", ConfigValue(1e-6, PositiveFloat, "equilibrium residual tolerance"))
    CONFIG.declare("samples_per_step", ConfigValue(1, PositiveInt, "equilibria averaged per step"))
    CONFIG.declare("jacobian_every", ConfigValue(
        1, PositiveInt, "steps between fresh game Jacobians in the adjoint (1: exact gradients; "
        "more reuses the last one while the active sets stay, for games whose Jacobian is costly)"))
    CONFIG.declare("resample_every", ConfigValue(
        0, NonNegativeInt, "steps between fresh random equilibrium draws (0: never); the last "
        "step draws afresh too, and only iterates scored on fresh draws can be returned"))
    CONFIG.declare("constraints", ConfigValue(
        "mean", In(["mean", "worst"]), "leader constraints over the sampled equilibria: their mean "
        "(in expectation, paper Definition 2) or their worst value (met at every sampled equilibrium, "
        "so also on average: robust where an equilibrium-dependent budget varies between draws)"))
    CONFIG.declare("select", ConfigValue(
        "best-feasible", In(["best-feasible", "last"]), "which iterate to return"))
    CONFIG.declare("feasibility_tol", ConfigValue(
        1e-6, NonNegativeFloat, "largest violation of an iterate counted as feasible"))

    def run(self, game, config, seed, time_limit):
        config = _Options(config.value())  # plain attributes: read every step
        k = kernel_of(game)
        oracle = EquilibriumOracle(k, tol=config.oracle_tol)
        rng = np.random.default_rng(seed)
        deadline = time.perf_counter() + (time_limit if time_limit else np.inf)
        n_s = config.samples_per_step
        p = k.p0.copy()
        parts = [oracle.solve(p, rng=rng) for _ in range(n_s)]
        lam = np.zeros(k.n_c)
        mu = config.mu
        m1, m2 = np.zeros(k.n_p), np.zeros(k.n_p)
        history, singular = [], False
        best = None  # (key, p, objective, violation, equilibrium)
        status = Status.CONVERGED
        sense = float(k.leader_sense)  # pyomo: minimize = 1, maximize = -1
        backtracks = jumps = 0
        p_prev = p
        last_sens: list = []
        candidates: list = []  # feasible iterates on fresh draws, for the final check
        for t in range(config.steps + 1):
            fresh = t == 0
            if t > 0:
                if config.resample_every and (t % config.resample_every == 0 or t == config.steps):
                    parts = [oracle.solve(p, rng=rng) for _ in range(n_s)]
                    fresh = True
                else:
                    p, parts, halvings, jumped = self._advance(oracle, p_prev, p, parts, rng)
                    backtracks += halvings
                    jumps += jumped
            lead = [k.leader_all(e.x, p) for e in parts]
            obj = float(np.mean([v[0] for v in lead]))
            cbar, share = _aggregate(np.array([v[1] for v in lead]).reshape(n_s, k.n_c),
                                     config.constraints)
            viol = float(np.max(cbar, initial=0.0))
            resid = max(e.residual for e in parts)
            ok = all(e.converged for e in parts)
            if ok and (fresh or not config.resample_every):  # with resampling: fresh draws only
                best = self._better(best, config.select, p, obj, viol, sense, config.feasibility_tol, parts[0])
                if viol <= config.feasibility_tol:
                    candidates.append((sense * obj, p.copy(), obj, viol, parts[0]))
            if t == config.steps or time.perf_counter() > deadline:
                if t < config.steps:
                    status = Status.TIME_LIMIT
                history.append(dict(step=t, leader_objective=obj, violation=viol,
                                    equilibrium_residual=resid))
                break
            s = np.maximum(0.0, -cbar - lam / mu)
            omega = lam + mu * (cbar + s)
            grad = np.zeros(k.n_p)
            for j, (e, v) in enumerate(zip(parts, lead)):
                if config.jacobian_every > 1 and t % config.jacobian_every and j < len(last_sens):
                    sensitivity(k, e, reuse=last_sens[j])
                weights = np.concatenate([[sense], omega * share[j]])
                grad += leader_gradients(k, e, weights, v)[2]
                singular |= sensitivity(k, e).singular
            last_sens = [sensitivity(k, e) for e in parts]
            grad /= n_s
            lagr = sense * obj + float(lam @ (cbar + s) + 0.5 * mu * np.sum((cbar + s) ** 2))
            history.append(dict(step=t, leader_objective=obj, violation=viol, lagrangian=lagr,
                                equilibrium_residual=resid))
            p_prev = p
            lr = config.lr
            if config.lr_decay == "cosine":
                lr *= 0.5 * (1 + np.cos(np.pi * t / config.steps))
            if config.optimizer == "adam":
                m1 = config.beta1 * m1 + (1 - config.beta1) * grad
                m2 = config.beta2 * m2 + (1 - config.beta2) * grad * grad
                mh = m1 / (1 - config.beta1 ** (t + 1))
                vh = m2 / (1 - config.beta2 ** (t + 1))
                p = k.project_leader(p - lr * mh / (np.sqrt(vh) + 1e-8))
            else:
                p = k.project_leader(p - lr * grad)
            if (t + 1) % config.multiplier_every == 0:
                lam = np.maximum(0.0, lam + mu * cbar)
        if best is None:
            return MethodOutput(leader=p, status=Status.NOT_CONVERGED, history=history,
                                singular_kkt=singular,
                                message="the equilibrium oracle never converged along the run")
        checked = ""
        if config.resample_every and config.select == "best-feasible" and candidates:
            best, checked = self._confirm(oracle, k, candidates, best, rng, config)
        _, bp, bobj, bviol, beq = best
        return MethodOutput(leader=bp, status=status, claimed_objective=bobj, history=history,
                            singular_kkt=singular, follower_hint=beq,
                            message=f"selected iterate: violation {bviol:.3g}{checked}; "
                                    f"leader steps halved {backtracks} times; "
                                    f"{jumps} equilibria re-adjusted where their branch ended")

    @staticmethod
    def _advance(oracle, p_prev, p, parts, rng, max_halvings: int = 2):
        """Re-solve every equilibrium at ``p`` warm; where a branch cannot be followed
        (Newton fails: an active-set change too large for one step, or a fold where the
        equilibrium ends), halve the leader's step up to ``max_halvings`` times. A branch
        still lost re-adjusts at the shortest step: the oracle's learning dynamics start
        from its last equilibrium, as the followers would move once theirs is gone (and
        from random points if they do not settle there).
        Only if that fails too does the leader stay at ``p_prev``.

        Returns ``(p, equilibria, halvings, jumps)``."""
        for h in range(max_halvings + 1):
            q = p_prev + 0.5 ** h * (p - p_prev)
            new = [oracle.solve(q, warm=e, fallback=False) for e in parts]
            if all(e.converged for e in new):
                return q, new, h, 0
        lost = sum(not e.converged for e in new)
        new = [e if e.converged else oracle.solve(q, x0=old.x, rng=rng) for e, old in zip(new, parts)]
        if all(e.converged for e in new):
            return q, new, max_halvings, lost
        return p_prev, parts, max_halvings, 0

    @staticmethod
    def _confirm(oracle, k, candidates, best, rng, config, tries: int = 3):
        """The best feasible iterate may only have been lucky in its draws (with many
        equilibria, the best of many noisy estimates is biased): confirm it on as many
        independent fresh draws, else the next best, for up to ``tries`` candidates."""
        candidates = sorted(candidates, key=lambda c: c[0])
        for n, (key, p, obj, _, eq) in enumerate(candidates[:tries]):
            draws = [oracle.solve(p, rng=rng) for _ in range(config.samples_per_step)]
            if not all(e.converged for e in draws):
                continue
            cons = np.array([k.leader_all(e.x, p)[1] for e in draws]).reshape(len(draws), k.n_c)
            viol = float(np.max(_aggregate(cons, config.constraints)[0], initial=0.0))
            if viol <= config.feasibility_tol:
                return ((0, key), p, obj, viol, eq), f", confirmed on fresh draws ({n} rejected before)"
        return best, f", not confirmed on fresh draws ({min(tries, len(candidates))} tried)"

    @staticmethod
    def _better(best, select, p, obj, viol, sense, tol, eq):
        if select == "last":
            return (0, p.copy(), obj, viol, eq)
        feasible = viol <= tol
        # feasible iterates beat infeasible ones; among feasible the better objective wins,
        # among infeasible the smaller violation
        key = (0, sense * obj) if feasible else (1, viol)
        if best is None or key < best[0]:
            return (key, p.copy(), obj, viol, eq)
        return best


def _aggregate(cons: np.ndarray, how: str):
    """Constraint values over the sampled equilibria (rows) as one vector, and each
    sample's share of each constraint's gradient (the gradient loop divides by the count)."""
    n_s, n_c = cons.shape
    if how == "worst":
        pick = np.argmax(cons, axis=0)  # the sample where each constraint is worst
        return cons[pick, np.arange(n_c)], n_s * (np.arange(n_s)[:, None] == pick[None, :])
    return cons.mean(axis=0), np.ones((n_s, n_c))
