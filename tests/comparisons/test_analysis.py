"""comparisons.load: a results database as a pandas DataFrame."""
import builtins
import sys

import pytest

from stackopt import comparisons
from stackopt.comparisons.store import Store

pd = pytest.importorskip("pandas")


def _row(**kw):
    base = dict(experiment="e", game="g", params='{"budget":1.0,"seed":3}', seed=1, method="gradient",
                options="{}", status="converged", leader_objective=2.0, history=[{"step": 0}],
                follower_values={"f.x": 1.0})
    return {**base, **kw}


def test_load_gives_one_row_per_cell_with_the_grid_parameters_as_columns(tmp_path):
    db = tmp_path / "r.sqlite"
    with Store.open(db) as store:
        store.insert(_row())
        store.insert(_row(method="initial", leader_objective=1.0, params='{"budget":2.0,"seed":3}'))
    frame = comparisons.load(db)
    assert list(frame.columns[:6]) == ["experiment", "game", "seed", "method", "status", "leader_objective"]
    assert list(frame["budget"]) == [1.0, 2.0]
    assert list(frame["param_seed"]) == [3, 3] and list(frame["seed"]) == [1, 1]  # no clash
    assert frame.loc[0, "params"] == {"budget": 1.0, "seed": 3}
    assert frame.loc[0, "history"] == [{"step": 0}]
    assert frame.groupby("method").leader_objective.mean().to_dict() == {"gradient": 2.0, "initial": 1.0}
    assert len(comparisons.load(db, experiments=["other"])) == 0


def test_load_without_pandas_names_the_extra(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pandas")
    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r'pip install "stackopt\[analysis\]"'):
        comparisons.load(tmp_path / "r.sqlite")


def test_load_of_a_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        comparisons.load(tmp_path / "none.sqlite")
