"""Ipopt through cyipopt: problems given as array callbacks (:func:`ipopt_solve`,
:class:`ArrayCallbacks`, :class:`LinearRowCallbacks`), and any Pyomo NLP with exact sparse
derivatives compiled once (:class:`NlpProblem`, :func:`solve_nlp`); Ipopt's statuses mapped to
stackopt's. Nothing is written onto a model unless asked.
"""
from .ipopt import ArrayCallbacks, IpoptRun, LinearRowCallbacks, ipopt_solve
from .nlp import NlpProblem, NlpResult, solve_nlp

__all__ = ["ArrayCallbacks", "IpoptRun", "LinearRowCallbacks", "NlpProblem", "NlpResult", "ipopt_solve",
           "solve_nlp"]
