import pytest
from games import make_duopoly


def pytest_configure(config):
    import importlib.util

    if importlib.util.find_spec("stackopt.models") is None:  # models/ is mapped in by the install
        raise pytest.UsageError(
            "stackopt.models cannot be imported: the checkout's stackopt/ folder shadows the "
            "installed package (`python -m pytest` puts the current directory first on sys.path). "
            "Run `pytest` instead, or develop with an editable install: pip install -e \".[test]\"")


@pytest.fixture
def duopoly():
    return make_duopoly()
