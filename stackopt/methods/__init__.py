"""The solution methods and their registry. A method is a :class:`Method` subclass registered by
name (:func:`register_method`) that proposes a leader strategy (:class:`MethodOutput`); the
built-in ones (``gradient``, ``implicit_ipopt``, ``blackbox``, ``initial``, ``mpec``) are
subpackages or modules of their own, independent of each other, imported on the registry's first
use.
"""
from .registry import (
    Method,
    MethodOutput,
    ReportedHistory,
    available_methods,
    get_method,
    method_config,
    register_method,
)

__all__ = ["Method", "MethodOutput", "ReportedHistory", "available_methods", "get_method", "method_config",
           "register_method"]
