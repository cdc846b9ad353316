import pytest
from games import make_duopoly


def pytest_configure(config):
    import importlib.util

    if importlib.util.find_spec("stackopt.models") is None:  # models/ is mapped in by the install
        raise pytest.UsageError(
            "stackopt.models cannot be imported: the checkout's stackopt/ folder shadows the "
            "installed package (`python -m pytest` puts the current directory first on sys.path). "
            "Run `pytest` instead, or develop with an editable install: pip install -e \".[test]\"")


@pytest.fixture(scope="session", autouse=True)
def compiled_loops():
    """stackopt's Numba loops compiled (or loaded from the cache) before the first test: a
    fresh install compiles them once, in the first preparation of a large game, which would
    count against the time limit of whichever test prepares one first."""
    from stackopt.expr import warm
    from stackopt.oracle.boxrow import warm_projection

    warm()
    warm_projection()


@pytest.fixture
def duopoly():
    return make_duopoly()
