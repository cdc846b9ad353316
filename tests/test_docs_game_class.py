"""docs/game-class.md: its example runs and does what the page says."""
import re
from pathlib import Path

import pytest

import stackopt

PAGE = Path(__file__).resolve().parent.parent / "docs" / "game-class.md"


def test_the_game_class_example_runs():
    code = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(PAGE), "exec"), scope)
    eq, result = scope["eq"], scope["result"]
    assert eq.converged and eq.multipliers["cap"] > 0  # the shared cap binds at p = (1, 1.2)
    assert result.status is stackopt.Status.OPTIMAL
    assert result.leader_objective == pytest.approx(result.bound, rel=1e-5)
