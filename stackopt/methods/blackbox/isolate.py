"""An optimiser in a forked child process, stopped at a hard deadline with its best point kept.

Scipy's optimisers spend long stretches in compiled code (SLSQP's QP with
thousands of variables) where no Python-level time check runs. ``isolated``
runs the optimisation in a forked child that reports its best point and its
history as it goes; at the deadline the child is killed and the best point
reported so far is returned with status ``TIME_LIMIT``. The parent waits in
a poll that a signal interrupts: on KeyboardInterrupt (Ctrl-C) it kills the
child at once and re-raises, whether or not there is a deadline.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import time
import traceback

from stackopt.core import Status
from stackopt.oracle import WORK, work_since

from ..registry import MethodOutput, ReportedHistory


def isolated(task, hard_deadline: float, time_limit: float | None, fallback, progress=None) -> MethodOutput:
    """Run ``task(report)`` in a forked child; stop it at ``hard_deadline`` (``inf``: none).

    The child sends ``("best", payload)`` and ``("history", entry)`` as it
    goes and ``("done", MethodOutput)`` or ``("error", text)`` at the end;
    each history entry is passed to ``progress`` here, in the parent.
    """
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child():
        recv.close()
        before = dict(WORK)

        def report(kind, payload):
            if kind != "history":  # with each best point and the end: the child's oracle solves
                send.send(("work", work_since(before)))
            send.send((kind, payload))
        try:
            out = task(report)
            report("done", out)
        except KeyboardInterrupt:  # Ctrl-C reached the child too: the parent stops it
            pass
        except BaseException as exc:  # the parent turns it into an exception of its own
            report("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
        finally:
            send.close()

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    best, history, outcome = _collect(proc, recv, hard_deadline, progress)
    if outcome is not None and outcome[0] == "done":
        return outcome[1]
    if outcome is not None:
        raise RuntimeError(outcome[1])
    return _timed_out(best, history, time_limit, fallback)


def _collect(proc, recv, hard_deadline: float, progress):
    """The child's reports until it ends or ``hard_deadline`` passes (then it is killed):
    ``(best payload or None, history, ("done" | "error", payload) or None at the deadline)``."""
    best, history, outcome, work = None, ReportedHistory(progress), None, {}
    try:
        while True:
            remaining = hard_deadline - time.perf_counter()
            if remaining <= 0 or not recv.poll(None if math.isinf(remaining) else remaining):
                break
            try:
                kind, payload = recv.recv()
            except EOFError:  # the child died without a word
                outcome = ("error", f"the optimiser process ended unexpectedly (exit code "
                                    f"{proc.exitcode})")
                break
            if kind == "work":
                work = payload
            elif kind == "best":  # None: no point evaluated yet
                best = payload if payload is not None else best
            elif kind == "history":
                history.append(payload)
            else:
                outcome = (kind, payload)
                break
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
        for key, n in work.items():
            WORK[key] += n
    return best, history, outcome


def _timed_out(best, history, time_limit: float, fallback) -> MethodOutput:
    """The ``TIME_LIMIT`` output: the best point the child reported, else ``fallback``."""
    message = (f"time limit of {time_limit:g} s reached inside the optimiser; the optimiser "
               "process was stopped and the best point it reported is returned")
    if best is None:
        return MethodOutput(leader=fallback, status=Status.TIME_LIMIT,
                            message=message.replace("the best point it reported is returned",
                                                    "it reported no point: the initial point is "
                                                    "returned"), history=history)
    if best["n_failed"]:
        message += f"; the oracle did not converge at {best['n_failed']} of {best['n_oracle']} calls"
    return MethodOutput(leader=best["p"], status=Status.TIME_LIMIT,
                        claimed_objective=best["objective"], message=message, history=history,
                        follower_hint=best["x"])
