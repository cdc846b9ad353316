"""Shared constraints in the single-level model: written once, multipliers per the game's concept.

A shared constraint (:meth:`~stackopt.game.StackelbergGame.add_shared_constraint`)
binds several followers. :func:`~stackopt.methods.mpec.pipeline.build_single_level`
copies it into the block of every follower it binds before Pyomo's ``core.kkt``
runs there, so that each follower's stationarity conditions get the term
``alpha_i * grad_{x_i} c`` with that follower's own multiplier ``alpha_i``.
:func:`write_shared` then

- writes the constraint once, on the sub-block ``shared`` of the single-level
  block (``shared.constraints``), and deactivates the followers' copies (their
  multipliers and stationarity terms stay), so a solver sees no duplicated row;
- ties the followers' multipliers as the game's ``shared`` concept says:

  * ``"variational"`` (Rosen's normalized equilibrium): one multiplier ``mu``
    per side of the constraint (``shared.multiplier``, ``>= 0`` for an
    inequality side, free for an equality) and ``alpha_i = mu`` for every
    bound follower (``shared.tie``); one complementarity pair ``mu _|_ slack``;
  * ``"weighted"`` (Rosen's weights ``r_i``): ``r_i alpha_i = mu``, i.e.
    follower ``i``'s multiplier is ``mu / r_i``; one pair ``mu _|_ slack``;
  * ``"any"``: no tie; one pair ``alpha_i _|_ slack`` per bound follower. The
    single-level model then ranges over every generalized Nash equilibrium and
    the solver chooses the leader's favourite (optimistic).

Nothing here touches the user's model: everything is on the clone's block.
"""
from __future__ import annotations

import pyomo.environ as pyo


def write_shared(blk, structure, copies: dict, kkt, translate, multipliers) -> list:
    """Write ``structure.shared`` onto ``blk.shared``; return their complementarity pairs as
    ``(follower(s), multiplier, slack, source, side)`` tuples.

    ``copies`` maps each shared constraint's index in ``structure.shared`` to
    ``[(follower name, follower block, copy)]``, the copies ``core.kkt`` (``kkt``)
    saw in each bound follower's block; ``translate`` maps the user's expressions
    onto the clone; ``multipliers`` (user's component -> multiplier) gets each
    shared constraint's entry: the common multiplier(s) under ``"variational"`` and
    ``"weighted"``, ``{follower: multiplier(s)}`` under ``"any"``. A pair of a common
    multiplier names every follower it binds, comma-separated.
    """
    if not structure.shared:
        return []
    sb = pyo.Block(concrete=True)
    blk.add_component("shared", sb)
    sb.constraints = pyo.ConstraintList()
    sb.multiplier = pyo.VarList()
    sb.tie = pyo.ConstraintList()
    weight = dict(zip((f.name for f in structure.followers), structure.weights))
    pairs = []
    for k, s in enumerate(structure.shared):
        lower, body, upper = s.constraint.to_bounded_expression()
        lower = None if lower is None else translate(lower)
        upper = None if upper is None else translate(upper)
        body = translate(body)
        once = sb.constraints.add(body == upper if s.constraint.equality
                                  else pyo.inequality(lower, body, upper))
        own = {}  # follower -> its multiplier(s) from core.kkt
        for fname, fb, cd in copies[k]:
            own[fname] = kkt.get_multiplier_from_object(fb, cd)
            cd.deactivate()
        if structure.concept == "any":
            multipliers[s.constraint] = dict(own)
            if once.equality:
                continue
            for fname, (low, up) in own.items():
                pairs += _sides(fname, once, low, up)
            continue
        who = ", ".join(s.followers)
        if once.equality:
            mu = sb.multiplier.add()
            _tie(sb, mu, {f: m for f, m in own.items()}, weight)
            multipliers[s.constraint] = mu
            continue
        common = []
        for side, present in (("lower", once.has_lb()), ("upper", once.has_ub())):
            if not present:
                common.append(None)
                continue
            mu = sb.multiplier.add()
            mu.setlb(0.0)
            idx = 0 if side == "lower" else 1
            _tie(sb, mu, {f: m[idx] for f, m in own.items()}, weight)
            common.append(mu)
        multipliers[s.constraint] = tuple(common)
        pairs += _sides(who, once, *common)
    return pairs


def _tie(sb, mu, own: dict, weight: dict) -> None:
    """``r_i * alpha_i == mu`` for every bound follower ``i`` (``r_i = 1`` unless weighted)."""
    for fname, alpha in own.items():
        sb.tie.add(weight[fname] * alpha == mu)


def _sides(who: str, cd, low, up) -> list:
    out = []
    if low is not None:
        out.append((who, low, cd.body - cd.lower, cd, "lower"))
    if up is not None:
        out.append((who, up, cd.upper - cd.body, cd, "upper"))
    return out
