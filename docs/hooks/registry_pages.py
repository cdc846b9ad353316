"""MkDocs hook: the pages written from stackopt itself at build time, never copied by hand.

* ``<!-- stackopt:methods -->``, alone on a line of a page, becomes every registered method (its
  aliases, description and options: flag, what it accepts, default), then the
  MPEC methods' registered modes and solvers;
* ``<!-- stackopt:params GAME -->`` becomes the parameter table of a registered game;
* ``changelog.md`` is the repository's ``CHANGELOG.md``.

The site documents the installed package: ``stackopt.models`` and
``stackopt.comparisons`` are the folders ``models/`` and ``comparisons/``
mapped into it by a regular install (``pip install ".[docs]"``).
"""
from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

MARKER = re.compile(r"^<!-- stackopt:(methods|params) ?([\w-]*) -->$", re.M)  # alone on a line
ROOT = Path(__file__).resolve().parents[2]


def on_config(config):
    spec = importlib.util.find_spec("stackopt")
    if spec is None or not (Path(spec.origin).parent / "models").is_dir():
        raise PluginError("the documentation reads the installed stackopt package, which must hold "
                          "stackopt.models: build it after a regular install, "
                          'pip install ".[docs]" && mkdocs build --strict (an editable install '
                          "maps models/ into the package only at import time)")
    return config


def on_files(files, config):
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    return files


def on_page_markdown(markdown, page, config, files):
    return MARKER.sub(lambda m: _methods() if m.group(1) == "methods" else _params(m.group(2)),
                      markdown)


# ----------------------------------------------------------------------------- rendering
def md(text: str) -> str:
    """A docstring's reStructuredText as Markdown: roles and literals as code."""
    text = re.sub(r":[\w:]+:`~?([^`<]*?)\s*<[^`]*>`", r"\1", text)
    text = re.sub(r":[\w:]+:`~([^`]*)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    text = re.sub(r":[\w:]+:`([^`]*)`", r"`\1`", text)
    return re.sub(r"``([^`]*)``", r"`\1`", text)


def _cell(text: str) -> str:
    return md(" ".join(str(text).split())).replace("|", "\\|").replace("*", "\\*")


def _option_rows(cfg) -> list[str]:
    from stackopt.core.options import choices, describe, domain_of

    rows = ["| option | accepts | default | what it does |", "|---|---|---|---|"]
    for key in cfg.keys():
        value = cfg.get(key)
        domain = domain_of(value)
        opts = choices(domain)
        accepts = " / ".join(f"`{o}`" for o in opts) if opts else (describe(domain) or "")
        default = cfg[key]
        doc = value._description or value._doc or ""
        rows.append(f"| `{key}` | {_cell(accepts)} | `{default!r}` | {_cell(doc)} |")
    return rows


def _methods() -> str:
    from stackopt.methods import available_methods, get_method
    from stackopt.methods.mpec.registry import MODES, SOLVERS
    from stackopt.methods.registry import _METHODS

    out = []
    for name in available_methods():
        cls = get_method(name)
        aliases = sorted(k for k, c in _METHODS.items() if c is cls and k != name)
        out += [f"## `{name}`", ""]
        if aliases:
            out += ["Also called " + ", ".join(f"`{a}`" for a in aliases) + ".", ""]
        out += [md(inspect.cleandoc(cls.__doc__ or "")), ""]
        out += [f"Options: keywords of `solve(game, \"{name}\", ...)`, and flags of "
                f"`stackopt solve GAME --method {name}` with dashes for underscores:", ""]
        out += _option_rows(cls.CONFIG()) + [""]
    out += ["## MPEC modes and solvers", "",
            "The `mpec` method takes a `mode` (how each complementarity pair is written) and a "
            "`solver`; both are registries of their own (see [Add a reformulation mode]"
            "(how-to/add-a-mode.md) and [Add a solver](how-to/add-a-solver.md)).", "",
            "| kind | name | aliases | what it is |", "|---|---|---|---|"]
    for kind, table in (("mode", MODES), ("solver", SOLVERS)):
        for name in sorted({c.name for c in table.values()}):
            cls = table[name]
            aliases = ", ".join(f"`{k}`" for k, c in sorted(table.items()) if c is cls and k != name)
            first = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
            out.append(f"| {kind} | `{name}` | {aliases} | {_cell(first)} |")
    return "\n".join(out) + "\n"


def _params(game: str) -> str:
    from stackopt.models import game_spec

    spec = game_spec(game)
    rows = [f"Parameters of `{game}` (keywords of `build_game(\"{game}\", seed, ...)`, flags of "
            f"`stackopt solve {game}`):", "", "| parameter | flag | type | default | meaning |",
            "|---|---|---|---|---|"]
    for key, p in spec.params.items():
        flag = f"`{p.cli or '--' + key.replace('_', '-')}`" if p.type in (int, float, str, bool) \
            else "(Python only)"
        kind = p.type.__name__ if p.type is not object else "data"
        rows.append(f"| `{key}` | {flag} | {kind} | `{p.default!r}` | {_cell(p.help)} |")
    return "\n".join(rows) + "\n"
