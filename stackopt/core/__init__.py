"""The vocabulary every layer shares: a solve's :class:`Result` and its :class:`Status`, and the
typed option domains (``check``, ``domain_of``) and name registries (``registrar``) of methods,
modes and solvers. It imports nothing of stackopt's and nothing heavy, so the command line's
help can use it.
"""
from .options import check, domain_of, registrar
from .result import Result, Status

__all__ = ["Result", "Status", "check", "domain_of", "registrar"]
