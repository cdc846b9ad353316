"""Benchmark: one gradient step on NFG(3 players, 10 actions), stackopt vs hand-written NumPy.

The reference step is what an expert would write for this one game: the logit
QRE by damped fixed point (factor 0.5) from the previous equilibrium, the
Jacobian of the fixed-point map, one adjoint solve and the subsidy gradient by
outer products, inside the same Adam / augmented Lagrangian loop. Both run in
this process on the same instance; the script prints time per step, peak
traced memory of each loop, their ratios and the projected 5000-step time.

    python -m stackopt.comparisons.bench_nfg [--steps 500] [--seed 1] [--budget 5]
"""
from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from stackopt import solve
from stackopt.models import build_game


def _softmax(u):
    e = np.exp(u - u.max())
    return e / e.sum()


class NumpyReference:
    """Hand-written QRE + adjoint gradient step for three-player subsidy games."""

    def __init__(self, P0, budget, lam=1.0, tol=1e-6, lr=1e-2, mu=10.0, every=100):
        self.P0, self.B, self.lam, self.tol = P0, budget, lam, tol
        self.lr, self.mu, self.every = lr, mu, every
        n, m = P0.shape[0], P0.shape[1]
        assert n == 3, "the reference is written for three players"
        self.m = m
        self.x = np.full((3, m), 1.0 / m)
        self.W = P0.sum(axis=0)

    def utilities(self, P, x):
        return np.stack([
            np.einsum("abc,b,c->a", P[0], x[1], x[2]),
            np.einsum("abc,a,c->b", P[1], x[0], x[2]),
            np.einsum("abc,a,b->c", P[2], x[0], x[1]),
        ])

    def qre(self, P):
        x = self.x
        for it in range(10000):  # noqa: B007  (the count is returned after the loop)
            u = self.utilities(P, x)
            br = np.stack([_softmax(self.lam * u[i]) for i in range(3)])
            if np.max(np.abs(br - x)) <= self.tol:
                break
            x = 0.5 * x + 0.5 * br
        self.x = x
        return x, it

    def step_gradient(self, pi, weights):
        """Gradient of weights[0]*(-welfare) + weights[1]*(subsidy - B) w.r.t. pi (3, m, m, m)."""
        P = self.P0 + pi
        x, _ = self.qre(P)
        m, lam = self.m, self.lam
        S = pi.sum(axis=0)
        prob = np.einsum("a,b,c->abc", x[0], x[1], x[2])
        obj = float(np.sum(self.W * prob))
        sub = float(np.sum(S * prob))
        # dG/dx for G_i(x) = x_i - softmax(lam u_i(x)); blocks du_i/dx_k
        du = np.zeros((3, m, 3, m))
        du[0, :, 1] = np.einsum("abc,c->ab", P[0], x[2])
        du[0, :, 2] = np.einsum("abc,b->ac", P[0], x[1])
        du[1, :, 0] = np.einsum("abc,c->ba", P[1], x[2])
        du[1, :, 2] = np.einsum("abc,a->bc", P[1], x[0])
        du[2, :, 0] = np.einsum("abc,b->ca", P[2], x[1])
        du[2, :, 1] = np.einsum("abc,a->cb", P[2], x[0])
        D = [np.diag(x[i]) - np.outer(x[i], x[i]) for i in range(3)]
        Jg = np.eye(3 * m)
        for i in range(3):
            Jg[i * m:(i + 1) * m] -= lam * D[i] @ du[i].reshape(m, 3 * m)
        # leader's loss in x
        WS = -weights[0] * self.W + weights[1] * S
        gx = np.stack([
            np.einsum("abc,b,c->a", WS, x[1], x[2]),
            np.einsum("abc,a,c->b", WS, x[0], x[2]),
            np.einsum("abc,a,b->c", WS, x[0], x[1]),
        ]).reshape(-1)
        v = np.linalg.solve(Jg.T, gx)  # adjoint
        # dG_i/dpi_i(a) = -lam D_i e_{a_i} prod_{k != i} x_k(a_k)
        q = [lam * (D[i] @ v[i * m:(i + 1) * m]) for i in range(3)]
        grad = np.stack([
            np.einsum("a,b,c->abc", q[0], x[1], x[2]),
            np.einsum("a,b,c->abc", x[0], q[1], x[2]),
            np.einsum("a,b,c->abc", x[0], x[1], q[2]),
        ])
        grad += weights[1] * prob[None]  # direct dependence of the expected subsidy on pi
        return grad, obj, sub

    def run(self, steps):
        pi = np.zeros_like(self.P0)
        m1, m2 = np.zeros_like(pi), np.zeros_like(pi)
        lam_mult = 0.0
        obj = sub = 0.0
        for t in range(steps):
            # weights use the previous step's constraint value (the same AL as stackopt's)
            c = sub - self.B
            s = max(0.0, -c - lam_mult / self.mu)
            omega = lam_mult + self.mu * (c + s)
            grad, obj, sub = self.step_gradient(pi, (1.0, omega))
            m1 = 0.9 * m1 + 0.1 * grad
            m2 = 0.999 * m2 + 0.001 * grad * grad
            pi = np.maximum(pi - self.lr * (m1 / (1 - 0.9 ** (t + 1))) /
                            (np.sqrt(m2 / (1 - 0.999 ** (t + 1))) + 1e-8), 0.0)
            if (t + 1) % self.every == 0:
                lam_mult = max(0.0, lam_mult + self.mu * (sub - self.B))
        return obj, sub


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _peak(fn):
    """Peak traced memory of ``fn`` (traced separately: tracing slows allocation)."""
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--budget", type=float, default=5.0)
    ap.add_argument("--actions", type=int, default=10)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    game = build_game("nfg", seed=args.seed, players=3, actions=args.actions, budget=args.budget)
    solve(game, "gradient", seed=args.seed, steps=1)  # prepares the kernel (once per game)
    prep = time.perf_counter() - t0

    ref = NumpyReference(game.data["payoffs"], args.budget)
    ref.qre(ref.P0)  # the same cold start outside the timing
    x_cold = ref.x.copy()
    (r_obj, r_sub), r_time = _timed(lambda: ref.run(args.steps))
    res, s_time = _timed(lambda: solve(game, "gradient", seed=args.seed, steps=args.steps))
    _, s_fixed = _timed(lambda: solve(game, "gradient", seed=args.seed, steps=1))
    mem_steps = min(args.steps, 100)
    ref.x = x_cold
    r_peak = _peak(lambda: ref.run(mem_steps))
    s_peak = _peak(lambda: solve(game, "gradient", seed=args.seed, steps=mem_steps))

    # per-step time: the difference removes the fixed costs (cold start, scoring)
    s_step, r_step = (s_time - s_fixed) / (args.steps - 1), r_time / args.steps
    print(f"NFG(3 players, {args.actions} actions), seed {args.seed}, budget {args.budget}, "
          f"{args.steps} steps")
    print(f"(peak traced memory over {mem_steps}-step runs)")
    print(f"{'':24s}{'ms/step':>10s}{'peak MiB':>10s}{'5000 steps (s)':>16s}{'objective':>11s}")
    print(f"{'stackopt gradient':24s}{1e3 * s_step:10.3f}{s_peak / 2**20:10.2f}"
          f"{5000 * s_step:16.2f}{res.leader_objective:11.4f}")
    print(f"{'numpy reference':24s}{1e3 * r_step:10.3f}{r_peak / 2**20:10.2f}"
          f"{5000 * r_step:16.2f}{r_obj:11.4f}")
    print(f"ratio stackopt/reference: time {s_step / r_step:.2f}, peak memory {s_peak / r_peak:.2f}")
    print(f"one-off preparation (build + compile derivatives): {prep:.2f} s")
    print(f"fixed cost of one solve (cold start + scoring): {s_fixed:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
