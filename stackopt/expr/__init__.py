"""Pyomo expressions compiled once into flat, vectorised NumPy programs (values, symbolic
derivatives, sparse Jacobians; mutable Params and fixed variables as inputs read at call time),
and programs evaluated at many points each for one group of its outputs. It knows nothing of
games: the kernel and the Ipopt adapter compile what they need through it.
"""
from .compiler import (
    Parameters,
    PolyBatch,
    Program,
    SparseJacobian,
    compile_exprs,
    compile_jacobian,
    compile_sparse,
    derivatives,
    jacobian_entries,
    parameters_of,
    scan,
)
from .grouped import GroupedProgram
from .loops import LOOP_MIN_TERMS, warm

__all__ = [
    "LOOP_MIN_TERMS", "GroupedProgram", "Parameters", "PolyBatch", "Program", "SparseJacobian", "compile_exprs",
    "compile_jacobian", "compile_sparse", "derivatives", "jacobian_entries", "parameters_of",
    "scan", "warm",
]
