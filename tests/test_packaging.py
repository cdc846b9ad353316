"""The package imports the same way from a checkout (editable install) and from site-packages,
and imports its heavy dependencies only when they are used."""
import json
import subprocess
import sys

import pytest

import stackopt

HEAVY = ("numpy", "scipy", "pyomo", "networkx", "matplotlib", "dask")


def _python(code: str, cwd) -> str:
    """Run ``code`` in a fresh interpreter outside the checkout (so the install is what imports)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_models_and_comparisons_are_subpackages_not_top_level(tmp_path):
    out = json.loads(_python(
        "import importlib.util, json, stackopt.models, stackopt.comparisons.config as c\n"
        "from importlib import resources\n"
        "print(json.dumps({'models': stackopt.models.__name__, 'config': c.__name__,\n"
        "  'top_models': importlib.util.find_spec('models') is not None,\n"
        "  'top_comparisons': importlib.util.find_spec('comparisons') is not None,\n"
        "  'quick': resources.files('stackopt.comparisons').joinpath('configs/quick.toml').is_file(),\n"
        "  'games': stackopt.models.available_games()}))", tmp_path))
    assert out["models"] == "stackopt.models" and out["config"] == "stackopt.comparisons.config"
    assert not out["top_models"] and not out["top_comparisons"]
    assert out["quick"]  # package data travels with the install
    assert {"nfg", "ssg", "cyber", "library"} <= set(out["games"])


def test_import_stackopt_and_the_command_line_help_import_nothing_heavy(tmp_path):
    out = json.loads(_python(
        "import contextlib, io, json, sys, stackopt, stackopt.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        stackopt.cli.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))", tmp_path))
    assert not set(HEAVY) & set(out), sorted(set(HEAVY) & set(out))
    out = json.loads(_python(
        "import contextlib, io, json, sys, stackopt.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        stackopt.cli.main(['solve', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))", tmp_path))
    assert not set(HEAVY) & set(out), sorted(set(HEAVY) & set(out))


def test_public_names_load_on_first_use(tmp_path):
    out = json.loads(_python(
        "import json, sys, stackopt\n"
        "before = 'pyomo' in sys.modules\n"
        "solve = stackopt.solve\n"
        "print(json.dumps({'before': before, 'after': 'pyomo' in sys.modules,\n"
        "  'methods': stackopt.available_methods(), 'dir': 'StackelbergGame' in dir(stackopt)}))",
        tmp_path))
    assert not out["before"] and out["after"] and out["dir"]
    assert {"gradient", "mpec-ipopt", "mpec-scip", "slsqp", "initial"} <= set(out["methods"])


def test_the_registry_loads_the_built_in_methods_without_import_stackopt(tmp_path):
    out = _python("from stackopt.methods import get_method\nprint(get_method('scholtes').name)",
                  tmp_path)
    assert out.strip() == "mpec-ipopt"


def test_lazy_names():
    from stackopt import api, models

    assert stackopt.solve is api.solve and stackopt.models is models
    assert set(stackopt.__all__) <= set(dir(stackopt))
    with pytest.raises(AttributeError, match="module 'stackopt' has no attribute 'sovle'"):
        stackopt.sovle  # noqa: B018


def test_every_package_of_the_checkout_is_installed():
    """``[tool.setuptools] packages`` lists every folder of ``stackopt/`` holding an ``__init__.py``."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "stackopt"
    names = [".".join(p.parent.relative_to(root.parent).parts) for p in root.rglob("__init__.py")]
    assert len(names) > 10
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    assert not missing, missing


@pytest.mark.parametrize("first", ["stackopt", "pyomo.environ"])
def test_a_solve_does_not_import_scipy_stats_and_pyomo_still_can(first, tmp_path):
    # Pyomo's import hook would import scipy.stats (half a second) with any SciPy import;
    # stackopt drops it, whichever of stackopt and Pyomo is imported first
    out = json.loads(_python(
        f"import json, sys, {first}\n"
        "from stackopt import solve\n"
        "from stackopt.models import build_game\n"
        "r = solve(build_game('nfg', seed=1, players=2, actions=3), 'gradient', seed=0, steps=2)\n"
        "after_solve = 'scipy.stats' in sys.modules\n"
        "from pyomo.common.dependencies import scipy, scipy_available\n"
        "ok = bool(scipy_available) and float(scipy.stats.norm.cdf(0.0)) == 0.5\n"
        "print(json.dumps({'solved': r.status.value, 'after_solve': after_solve, 'pyomo': ok}))",
        tmp_path))
    assert out["solved"] and not out["after_solve"]
    assert out["pyomo"]  # Pyomo's own scipy handle imports scipy.stats when Pyomo uses it


def test_the_command_solving_nfg_imports_only_what_it_needs(tmp_path):
    # a game's model and a method's module are imported alone: SciPy's optimisers (the
    # black-box methods, the library's derived optima), networkx (the security and cyber
    # games' graphs), Pyomo's plugins (pyomo.environ: solvers and transformations, which only
    # the MPEC methods use) and the other methods' modules stay unimported
    out = json.loads(_python(
        "import contextlib, io, json, sys, stackopt\n"
        "imported = [m for m in sys.modules]\n"
        "import stackopt.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = stackopt.cli.main(['solve', 'nfg', '--players', '2', '--actions', '3',\n"
        "                              '--budget', '1', '--steps', '3'])\n"
        "print(json.dumps({'code': code, 'import': imported, 'solve': sorted(sys.modules)}))",
        tmp_path))
    assert out["code"] == 0
    for when in ("import", "solve"):
        heavy = sorted(m for m in out[when] if m.split(".")[0] == "networkx" or m == "numba"
                       or m.startswith(("scipy.optimize", "pyomo.environ")))
        assert not heavy, (when, heavy)
    others = sorted(m for m in out["solve"] if m.startswith(("stackopt.methods.blackbox",
                    "stackopt.methods.mpec", "stackopt.methods.implicit_ipopt", "stackopt.models.ssg",
                    "stackopt.models.cyber", "stackopt.models.library", "stackopt.models.market")))
    assert not others, others
    assert "stackopt.methods.gradient" in out["solve"] and "stackopt.models.nfg" in out["solve"]


def test_importing_every_model_imports_neither_scipy_optimize_nor_networkx(tmp_path):
    # the library's derived optima are computed when read, the graphs' module where a graph is
    out = json.loads(_python(
        "import json, sys, stackopt.models as m\n"
        "games = m.available_games()\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.startswith(('scipy.optimize', 'networkx')))))",
        tmp_path))
    assert out == []


def test_the_built_in_methods_table_matches_their_registrations():
    """The registry's table of built-in names (which module registers each, without importing
    it) is what the modules register."""
    from stackopt.methods import available_methods
    from stackopt.methods.registry import _BUILTIN_MODULE, _METHODS, method_names

    listed = available_methods()  # imports every built-in method
    registered = {n: cls.__module__ for n, cls in _METHODS.items()
                  if cls.__module__.startswith("stackopt.methods.")}
    assert set(registered) == set(_BUILTIN_MODULE)
    for name, module in registered.items():
        assert module == _BUILTIN_MODULE[name] or module.startswith(_BUILTIN_MODULE[name] + "."), name
    assert method_names() == listed
    assert set(method_names(aliases=True)) == set(_METHODS)


def test_each_built_in_model_registers_the_game_of_its_name():
    from stackopt import models

    assert models.available_games() == models.game_names()
    assert {spec.builder.__module__ for name, spec in models._GAMES.items() if name in models._MODULES} \
        == {f"stackopt.models.{name}" for name in models._MODULES}
    for name in models._MODULES:
        assert models._GAMES[name].builder.__module__ == f"stackopt.models.{name}"


def test_a_method_of_a_built_in_name_is_refused_at_its_registration(tmp_path):
    out = subprocess.run([sys.executable, "-c",
                          "from stackopt.methods import Method, register_method\n"
                          "@register_method('slsqp')\n"
                          "class Mine(Method):\n"
                          "    pass\n"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode != 0 and "method name 'slsqp' is already registered" in out.stderr
