"""The comparison harness: configs, the results database, sweeps, reports and benchmarks.

``stackopt compare`` and ``stackopt report`` are its command line; :func:`load` reads a results
database into a pandas ``DataFrame`` (the ``analysis`` extra).
"""
from .analysis import load

__all__ = ["load"]
