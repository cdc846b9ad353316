"""Inner steps of the gradient method on the augmented Lagrangian, in scaled variables.

Both work in ``u = p / s`` (``s`` the leader variables' scales, see
:mod:`stackopt.methods.gradient.method`) and project onto the leader's bounds and linear
constraints in that metric.

* :class:`SpgStep`: spectral projected gradient (Birgin, Martinez, Raydan 2000)
  in a diagonal metric: the direction ``P(u - alpha D grad) - u`` with ``D``
  the inverse running RMS of each coordinate's gradient (Adam's second moment:
  leader variables whose gradients differ by orders of magnitude, as the
  subsidies of likely and unlikely joint actions do, move at comparable rates),
  the Barzilai-Borwein length ``alpha = s'D^-1 s / s'y`` of the last step in
  that metric, and a non-monotone Armijo line search (Grippo, Lampariello,
  Lucidi) against the largest of the last ``MEMORY`` values. No learning rate.
* :class:`AdamStep`: the paper's Adam with ``lr`` relative to the scale, Adam
  rectified in its first steps (RAdam, Liu et al., ICLR 2020), or plain SGD.

A trial strategy whose equilibrium branch cannot be followed by warm starts
(a fold, or an active-set change too large for Newton) counts as a failed
trial and halves the step; after ``MAX_LOST`` such halvings the lost branches
re-adjust by the followers' dynamics at the last trial, as the followers would
once theirs is gone, and the step is taken there (a *jump*). Both step rules
refuse a jump to an equilibrium where the leader's objective is worse by more
than ``JUMP_LOSS`` of its magnitude and (Adam) the violation is no smaller or
(the spectral step) the merit fails the search's non-monotone reference: Adam
stays, its momentum cleared; for the spectral step the search has failed (on cyber
insurance a step restarted on a kink otherwise jumped from 31.6 to -146.5 and
the run ended at 1.40). On cyber insurance a premium pushed
past a fold otherwise drops the revenue of the branch it had climbed (126 to
-98 in one step on one instance) and the run rarely climbs back; the small
losses of crossing between nearby branches (0.2% on the security game) are
taken, as the followers' own re-adjustment would.

``take`` returns a :class:`Step`: the new point and what the rule did on the way
(halvings, jumps, refusals); the loop adds those up.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from stackopt.leader import FIRST_MOVE

MEMORY = 10  # non-monotone line search: values the Armijo test compares against
ARMIJO = 1e-4  # sufficient decrease
MAX_LOST = 2  # halvings with a lost branch before it re-adjusts
MAX_MOVE = 10.0  # largest trial move, in scale units, of any variable
ALPHA_MIN, ALPHA_MAX = 1e-12, 1e12  # Barzilai-Borwein safeguards
MIN_STEP = 1e-12  # a line search whose step falls below this (scale units) has failed
PROBE = 1e-7  # scale units of the one-variable probes on a kink
RMS_DECAY = 0.999  # the diagonal metric's running average of squared gradients
JUMP_LOSS = 0.1  # a re-adjustment losing more than this share of the objective's magnitude is refused
RECTIFY_FROM = 5.0  # RAdam: Adam's normalised steps once the second moment's average spans more steps


@dataclass(frozen=True)
class Step:
    """What one step did: the new point (None where no step could be taken), the
    trials halved because their branch was lost, whether the equilibria re-adjusted
    where their branch ended (a jump) and whether such a re-adjustment was refused."""

    point: object | None
    halvings: int = 0
    jumps: int = 0
    refused: int = 0


class SpgStep:
    """Spectral projected gradient steps with a non-monotone line search; multipliers
    are updated once an inner solve met its tolerance (the textbook rule)."""

    paper = False

    def __init__(self, prob, opts):
        self.prob, self.opts = prob, opts
        self.v = np.zeros(prob.k.n_p)
        self.count = 0
        self.reset()

    def reset(self) -> None:
        """Forget the step length, the reference values and the held variables (after a
        re-anchoring or jump)."""
        self.alpha = None
        self.refs: deque = deque(maxlen=MEMORY)
        self.held = np.zeros(self.prob.k.n_p, dtype=bool)

    def _metric(self, gu):
        """Diagonal metric: the inverse running RMS of the scaled gradient (as Adam's
        second moment), normalised to a largest entry of one."""
        self.count += 1
        self.v = RMS_DECAY * self.v + (1 - RMS_DECAY) * gu * gu
        rms = np.sqrt(self.v / (1 - RMS_DECAY ** self.count))
        floor = 1e-8 * max(float(rms.max(initial=0.0)), 1e-300)
        D = 1.0 / np.maximum(rms, floor)
        return D / D.max()

    def take(self, al, pt, g) -> Step:
        """One step from ``pt`` with the augmented Lagrangian gradient ``g``: the new point,
        or None where the line search failed to decrease ``L`` (a :class:`Step`).

        A search that fails from a Barzilai-Borwein length (which collapses after a step
        across a kink, where the gradients differ by much over a short step) is tried
        once more from the first length ``FIRST_MOVE``. Where that fails too, the point
        may sit on a kink of ``L`` (an ``abs`` in the game, an active-set change of the
        equilibria): each variable is probed alone by ``PROBE`` scale units along its
        descent direction and against it; those along which ``L`` decreases neither way
        are held (the face of the kink, as a bound holds a variable) until the next
        re-anchoring or jump, and the search is run on the others. Held variables count
        as stationary in the stopping rule (zero is in the subdifferential along them).

        Steps zigzagging across a kink need not fail: each Barzilai-Borwein length is
        about half the last (the gradient jumps across ever shorter steps) and the
        non-monotone search accepts them, so the variables on the kink are never probed
        and the others stop moving with them (on cyber insurance, a compensation at the
        loss: moves of 1e-12 scale units for hundreds of steps, until one lands on the
        kink itself). A length that reached its safeguard ``ALPHA_MIN`` is therefore
        taken as a kink too: the variables are probed and held as above, and the step
        starts afresh from ``FIRST_MOVE``."""
        self.D = self._metric(g * al.scale)
        if self.alpha is not None and self.alpha <= ALPHA_MIN:
            self._hold(al, pt, g)
            self.alpha = None
        fresh = self.alpha is None
        done = self._search(al, pt, g)
        if done.point is None and not fresh:
            self.alpha = None
            done = _then(done, self._search(al, pt, g))
        if done.point is None and self._hold(al, pt, g):
            self.alpha = None
            done = _then(done, self._search(al, pt, g))
        return done

    def _hold(self, al, pt, g) -> bool:
        """Probe each free variable alone, both ways; hold those along which ``L`` decreases
        neither way (a kink with ``L`` rising on both sides: zero is in its subdifferential
        along that variable). Returns whether any variable was newly held."""
        s, L0, held = al.scale, al.value(pt), False
        for j in np.flatnonzero((g != 0) & ~self.held):
            if al.out_of_time():
                break
            rises = True
            for sign in (-np.sign(g[j]), np.sign(g[j])):
                y = pt.p.copy()
                y[j] += PROBE * s[j] * sign
                if not np.allclose(al.project(y), y, rtol=0.0, atol=1e-3 * PROBE * s[j]):
                    rises = False  # leaves the leader's set: the projection decides, not a kink
                    break
                trial = self.prob.follow(pt, y)
                if not trial.converged or al.value(trial) < L0:
                    rises = False
                    break
            if rises:
                self.held[j] = held = True
        return held

    def _search(self, al, pt, g) -> Step:
        s, D = al.scale, self.D
        gu = np.where(self.held, 0.0, g) * s
        gmax = float(np.max(np.abs(D * gu), initial=0.0))
        if gmax == 0.0:
            return Step(None)
        if self.alpha is None:
            self.alpha = FIRST_MOVE / gmax
        alpha = min(self.alpha, MAX_MOVE / gmax)
        L0 = al.value(pt)
        if not self.refs or self.refs[-1] != L0:
            self.refs.append(L0)
        ref = max(self.refs)
        # projected in the metric the step is taken in, so that the direction descends
        q = al.project(pt.p - alpha * s * D * gu, metric=s * np.sqrt(D))
        d = q - pt.p
        gd = float(g @ d)
        size = float(np.max(np.abs(d / s), initial=0.0))
        if size == 0.0 or gd >= 0.0:
            return Step(None)
        t, lost = 1.0, 0
        while t * size >= MIN_STEP:
            if al.out_of_time():
                break
            x = pt.p + t * d
            trial = self.prob.follow(pt, x)
            if not trial.converged:
                lost += 1
                if lost > MAX_LOST:
                    return self._jump(al, pt, x, trial, lost)
                t *= 0.5
                continue
            Lt = al.value(trial)
            if Lt <= ref + ARMIJO * t * gd:
                self._update(al, pt, g, trial)
                return Step(trial, halvings=lost)
            denom = 2.0 * (Lt - L0 - t * gd)
            t_new = -gd * t * t / denom if denom > 0 else 0.5 * t
            t = float(np.clip(t_new, 0.1 * t, 0.5 * t))
        return Step(None, halvings=lost)

    def _update(self, al, pt, g, trial) -> None:
        s = al.scale
        su = (trial.p - pt.p) / s
        yu = (al.grad(trial) - g) * s
        sy = float(su @ yu)
        self.alpha = float(np.clip(su @ (su / self.D) / sy, ALPHA_MIN, ALPHA_MAX)) if sy > 0 else ALPHA_MAX

    def _jump(self, al, pt, x, trial, lost: int) -> Step:
        """The followers' branch ended on the way to ``x``: the equilibrium re-adjusted there
        is taken unless it is :func:`_costly` (then the search has failed)."""
        new = self.prob.readjust(pt, x, trial)
        if not new.converged:
            return Step(None, halvings=lost)
        if _costly(pt, new, al.value(new) > max(self.refs)):  # a failed search: tried again or held
            return Step(None, halvings=lost, refused=1)
        self.reset()
        return Step(new, halvings=lost, jumps=1)


class AdamStep:
    """Adam (or SGD) steps, ``lr`` relative to each variable's scale; as in the paper, the
    multipliers are updated every ``multiplier_every`` of its steps.

    ``optimizer="radam"`` rectifies Adam's steps while its second moment rests on few
    gradients (RAdam, Liu et al., ICLR 2020, with PyTorch's threshold): the first five
    steps are momentum steps ``lr * m`` in the scaled gradient's own units, then Adam's
    normalised step is multiplied by the rectification ``r_t`` (with ``beta2 = 0.999``:
    0.03 at step 6, 0.22 at step 100, 0.65 at step 1000, tending to 1). The paper's Adam
    (``"adam"``, the default) moves every variable whose gradient is not zero by ``lr`` of
    its scale at its first step, whatever the gradient's size: on the security game at a
    budget of 0.2 that spends six times the budget over the 176 reimbursements the
    objective favours, the penalty's gradient, 25 against the objective's 0.06, then stays
    in the second moment for thousands of steps, and every later step moves a thousandth
    of ``lr`` (seed 1, budgets 0.2-0.8: answers within 0.003 of the start). Why the
    rectified steps are not the default: docs/methods.md, "Known limits, measured"."""

    paper = True

    def __init__(self, prob, opts):
        self.prob, self.opts = prob, opts
        n = prob.k.n_p
        self.m1, self.m2, self.count = np.zeros(n), np.zeros(n), 0

    def reset(self) -> None:
        """Adam's moments carry over multiplier updates, as in the paper."""

    def take(self, al, pt, g) -> Step:
        o, s = self.opts, al.scale
        gu = g * s
        lr = o.lr
        if o.lr_decay == "cosine":
            lr *= 0.5 * (1 + np.cos(np.pi * min(al.t, o.steps) / o.steps))
        if o.optimizer in ("adam", "radam"):
            self.count += 1
            t = self.count
            self.m1 = o.beta1 * self.m1 + (1 - o.beta1) * gu
            self.m2 = o.beta2 * self.m2 + (1 - o.beta2) * gu * gu
            mh = self.m1 / (1 - o.beta1 ** t)
            r = rectification(o.beta2, t) if o.optimizer == "radam" else 1.0
            if r is None:
                step = lr * mh
            else:
                vh = self.m2 / (1 - o.beta2 ** t)
                step = lr * r * mh / (np.sqrt(vh) + 1e-8)
        else:
            step = lr * gu
        q = al.project(pt.p - s * step)
        for h in range(MAX_LOST + 1):
            x = pt.p + 0.5 ** h * (q - pt.p)
            trial = self.prob.follow(pt, x)
            if trial.converged:
                return Step(trial, halvings=h)
            if al.out_of_time():
                return Step(None, halvings=h + 1)
        halved = MAX_LOST + 1
        new = self.prob.readjust(pt, x, trial)
        if not new.converged:
            return Step(None, halvings=halved)
        if _costly(pt, new, al.violation(new) >= al.violation(pt)):  # its momentum is forgotten
            self.m1[:] = 0.0
            return Step(pt, halvings=halved, refused=1)
        return Step(new, halvings=halved, jumps=1)


def rectification(beta2: float, t: int) -> float | None:
    """RAdam's factor on Adam's step ``t`` (counted from 1): ``r_t`` from the length
    ``rho_t`` of the simple moving average that the second moment's exponential one
    approximates, or None where ``rho_t <= RECTIFY_FROM`` (too few gradients for a
    variance: a momentum step instead)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    b = beta2 ** t
    rho = rho_inf - 2.0 * t * b / (1.0 - b)
    if rho <= RECTIFY_FROM:
        return None
    return float(np.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)))


def _costly(pt, new, worse: bool) -> bool:
    """Whether a re-adjustment past a fold is refused: the followers settle where the leader
    loses more than ``JUMP_LOSS`` of its objective's magnitude, and ``worse`` holds (Adam: the
    point is no more feasible; the spectral step: its merit fails the search's reference)."""
    return worse and new.f - pt.f > JUMP_LOSS * max(abs(pt.f), abs(new.f))


def _then(first: Step, second: Step) -> Step:
    """``second``, with the halvings of the failed ``first`` added."""
    return Step(second.point, first.halvings + second.halvings, second.jumps, second.refused)

