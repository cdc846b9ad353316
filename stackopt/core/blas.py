"""How many threads BLAS and LAPACK use while stackopt computes: one, unless the caller says.

stackopt's dense linear algebra is small or medium: KKT matrices of at most
``dense_max`` (400) unknowns are factorised densely, larger ones by sparse LU
or GMRES; Hessian blocks and projections are smaller still. At these sizes a
multi-threaded BLAS gains nothing on idle cores (a 400 x 400 LU: 1.5 ms on one
thread, 1.6 ms on two) and loses badly where another process or thread keeps
the other cores busy (a 200 x 200 LU: 0.25 ms on one thread, 22-350 ms on two,
the threads waiting for each other's time slices). And the results depend on
the thread count: OpenBLAS's LU of a 200 x 200 matrix and its products of
400 x 400 ones differ in the last bits between one and two threads, so a
solve's path, and its answer, would depend on the machine and on its load.

So every public entry point (:func:`stackopt.solve`, :func:`stackopt.evaluate`,
:func:`stackopt.check_gradient`, :func:`stackopt.equilibria`,
:func:`stackopt.equilibrium`) runs its work
under :func:`blas_threads` with ``blas_threads=1`` unless given another count;
``blas_threads=None`` leaves BLAS as the process has it. Nothing is read from
environment variables. Code that drives the lower layers itself (an
:class:`~stackopt.oracle.EquilibriumOracle`) can use the context manager:

    >>> with stackopt.blas_threads(1):
    ...     eq = oracle.solve(p, rng=0)

A count above one is for large dense games on idle cores (``linear_solver=
"dense"`` with thousands of unknowns); their results are then those of that
count.

OpenBLAS's thread count is one setting for the whole process, not per thread
(``threadpoolctl`` changes it). Concurrent computations in one process (Dask
worker threads, a thread pool) share it: the first to start sets it and the
last to finish restores what the process had, so no computation's count is
changed under it; a computation asking for another count than the one in
force waits until those running finish. A call nested in one that holds a
count (in the same thread) runs under the outer count. BLAS calls of other
code in the process meanwhile run under the same count.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT = 1  # BLAS threads of stackopt's work unless the caller gives another count


def check_threads(threads) -> int | None:
    """``threads`` as a thread count (or ``None``: as the process has it); a clear
    ``ValueError`` for anything else."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"blas_threads must be a positive integer or None, got {threads!r}")
    return int(threads)


class _ProcessLimit:
    """The process's BLAS thread count while stackopt computes (one per process: the
    setting it manages is the process's; see the module docstring)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._count: int | None = None  # the count in force while holders run
        self._holders: dict[int, int] = {}  # thread ident -> nesting depth
        self._saved: list[int] = []  # each library's count before the first holder
        self._libs = None

    def _libraries(self) -> list:
        if self._libs is None:
            import scipy.linalg  # noqa: F401  (loads SciPy's BLAS beside NumPy's)
            from threadpoolctl import ThreadpoolController

            self._libs = ThreadpoolController().select(user_api="blas").lib_controllers
        return self._libs

    @contextmanager
    def hold(self, threads: int) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if me not in self._holders:
                while self._holders and self._count != threads:
                    self._cond.wait()
                if not self._holders:
                    libs = self._libraries()
                    self._saved = [lib.get_num_threads() for lib in libs]
                    for lib in libs:
                        _set_threads(lib, threads)
                    self._count = threads
            self._holders[me] = self._holders.get(me, 0) + 1
        try:
            yield
        finally:
            with self._cond:
                depth = self._holders.pop(me) - 1
                if depth:
                    self._holders[me] = depth
                elif not self._holders:
                    for lib, n in zip(self._libs, self._saved):
                        _set_threads(lib, n)
                    self._count = None
                    self._cond.notify_all()


def _set_threads(lib, threads: int) -> None:
    """``lib`` (a threadpoolctl controller) on ``threads`` threads. OpenBLAS ignores its
    process-wide setter when called from another thread than the main one once the main
    thread has called it; its ``openblas_set_num_threads_local`` then sets the count."""
    if threads is None or lib.get_num_threads() == threads:
        return
    lib.set_num_threads(threads)
    if lib.get_num_threads() != threads and lib.internal_api == "openblas":
        import ctypes

        setter = getattr(ctypes.CDLL(lib.filepath), "openblas_set_num_threads_local", None)
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
            setter(int(threads))


_PROCESS = _ProcessLimit()


@contextmanager
def blas_threads(threads: int | None = DEFAULT) -> Iterator[None]:
    """BLAS and LAPACK on ``threads`` threads inside the block (``None``: unchanged); see the
    module docstring for concurrent blocks in one process."""
    threads = check_threads(threads)
    if threads is None:
        yield
        return
    with _PROCESS.hold(threads):
        yield
