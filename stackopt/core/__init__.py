"""The vocabulary every layer shares: a solve's :class:`Result` and its :class:`Status`, the
typed option domains (``check``, ``domain_of``) and name registries (``registrar``) of methods,
modes and solvers, and the progress display of a solve (``make_progress``). It imports nothing
of stackopt's and nothing heavy, so the command line's help can use it.
"""
from .options import check, did_you_mean, domain_of, registrar
from .progress import make_progress
from .result import Result, Status

__all__ = ["Result", "Status", "check", "did_you_mean", "domain_of", "make_progress", "registrar"]
