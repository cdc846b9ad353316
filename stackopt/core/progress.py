"""Progress of one solve: a method's per-step records shown as a bar or as periodic lines.

``solve(..., progress=...)`` picks the display with :func:`make_progress`:
``None`` (the default) shows a bar only where standard error is a terminal (an
interactive shell), so scripts, notebooks, logs, tests and sweeps stay quiet;
``True`` shows a bar on a terminal and otherwise one plain line every few
seconds; ``False`` shows nothing. A method passes each record it adds to its
``history`` to the display (``step``, objective, violation, stationarity where
it has them); the bar appears only after a second, so quick solves print
nothing.
"""
from __future__ import annotations

import math
import sys
import time
from typing import TextIO

BAR_DELAY_S = 1.0  # a bar appears only once a solve has run this long
BAR_REFRESH_S = 0.2  # the bar's text is rebuilt at most this often (a step may take 0.1 ms)
LINE_EVERY_S = 5.0  # seconds between two plain lines
# what a display shows, and the history keys the methods record it under
FIELDS = (("objective", ("leader_objective", "objective")),
          ("violation", ("violation", "primal_infeasibility")),
          ("stationarity", ("stationarity", "dual_infeasibility")))


def _first(record: dict, *keys):
    for key in keys:
        if key in record:
            return record[key]
    return None


def describe(record: dict) -> str:
    """``objective 1.5  violation 0  stationarity 3e-07`` from one history record."""
    parts = []
    for label, keys in FIELDS:
        v = _first(record, *keys)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {v:.6g}" if math.isfinite(v) else f"{label} {v}")
    return "  ".join(parts)


def _step(record: dict, count: int) -> int:
    v = _first(record, "step", "iteration")
    return int(v) if isinstance(v, (int, float)) and math.isfinite(v) else count


class Silent:
    """No display."""

    def __call__(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class Bar:
    """A tqdm bar on standard error: steps out of the method's step budget, and the last record."""

    def __init__(self, label: str, total: int | None, stream: TextIO):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=label, unit="step", file=stream, delay=BAR_DELAY_S,
                        leave=False, dynamic_ncols=True, mininterval=BAR_REFRESH_S)
        self.count, self.shown = 0, -float("inf")

    def __call__(self, record: dict) -> None:
        self.count += 1
        now = time.perf_counter()
        if now - self.shown >= BAR_REFRESH_S:
            self.bar.set_postfix_str(describe(record), refresh=False)
            self.shown = now
        self.bar.update(max(0, _step(record, self.count) - self.bar.n))

    def close(self) -> None:
        self.bar.close()


class Lines:
    """One line per ``every`` seconds (the first record and the last one always)."""

    def __init__(self, label: str, total: int | None, stream: TextIO, every: float = LINE_EVERY_S):
        self.label, self.total, self.stream, self.every = label, total, stream, every
        self.start = self.last = time.perf_counter()
        self.count, self.pending = 0, None

    def __call__(self, record: dict) -> None:
        self.count += 1
        now = time.perf_counter()
        if self.count == 1 or now - self.last >= self.every:
            self._print(record, now)
        else:
            self.pending = record

    def _print(self, record: dict, now: float) -> None:
        step = _step(record, self.count)
        of = f"/{self.total}" if self.total else ""
        print(f"{self.label}: step {step}{of}  {describe(record)}  ({now - self.start:.1f} s)",
              file=self.stream, flush=True)
        self.last, self.pending = now, None

    def close(self) -> None:
        if self.pending is not None:
            self._print(self.pending, time.perf_counter())


def make_progress(progress: bool | None, label: str, total: int | None = None,
                  stream: TextIO | None = None):
    """The display for ``solve(..., progress=progress)``: call it with each record, then close it."""
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress must be True, False or None (a bar on a terminal only), "
                         f"got {progress!r}")
    stream = sys.stderr if stream is None else stream
    terminal = _isatty(stream)
    if progress is False or (progress is None and not terminal):
        return Silent()
    return Bar(label, total, stream) if terminal else Lines(label, total, stream)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False
