"""Each follower's best response to the others, the others held: box-only followers all at once
by a batched projected Newton (``box``), followers with a box and one row by a batched projected
gradient (``row``), Ipopt otherwise (``best``, which picks among them).
"""
from .best import BestResponses

__all__ = ["BestResponses"]
