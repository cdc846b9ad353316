"""Games and plugins named by reference: ``module:function`` or ``path/to/file.py:function``.

A game reference names a builder that returns a
:class:`~stackopt.game.StackelbergGame`. Its parameters are those of its
registration where the function is registered with
:func:`~stackopt.models.register_game`, else those of its signature: every
parameter but ``seed`` needs a default, whose type (or the annotation, where it
is ``int``, ``float``, ``str`` or ``bool``) is the parameter's type; a line
``name: text`` in the docstring is its help. ``seed`` is passed where the
function takes it.

A relative path is read against ``base`` (the command line: the current
directory; a comparison config: the config's folder); a module that is not
importable as it stands is looked for in ``base`` too, so neither needs
``PYTHONPATH``. :func:`locate` returns the reference in a form that loads the
same function from any working directory (an absolute path), which is what
the harness sends to its worker processes.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
import typing
from pathlib import Path
from types import ModuleType

FLAG_TYPES = (bool, int, float, str)


def is_reference(name: str) -> bool:
    """Whether ``name`` names a builder by reference rather than a registered game."""
    return ":" in name


def split_reference(ref: str) -> tuple[str, str]:
    """``(module or path, function)`` of ``module:function`` or ``path.py:function``."""
    where, _, func = ref.rpartition(":")
    if not where or not func.isidentifier():
        raise ValueError(f"game reference {ref!r} is not of the form module:function or "
                         "path/to/file.py:function (for example examples/my_game.py:build)")
    return where, func


def load_module(where: str, base: str | Path | None = None) -> tuple[ModuleType, str]:
    """The module named by a dotted name or a ``.py`` path, and its location as a string that
    loads it again from anywhere (the absolute path, or the importable dotted name)."""
    relative_to = "the current directory" if base is None else repr(str(base))
    base = Path.cwd() if base is None else Path(base)
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ValueError(f"file {where!r} does not exist (looked for {str(path)!r}); give a "
                             f"path to a .py file, absolute or relative to {relative_to}")
        return _from_file(path.resolve()), str(path.resolve())
    try:
        return importlib.import_module(where), where
    except ModuleNotFoundError as exc:
        if exc.name != where.split(".")[0]:
            raise ValueError(f"module {where!r} cannot be imported: {exc}") from None
    candidates = [base.joinpath(*where.split(".")).with_suffix(".py"),
                  base.joinpath(*where.split("."), "__init__.py")]
    for path in candidates:
        if path.is_file():
            return _from_file(path.resolve()), str(path.resolve())
    raise ValueError(f"module {where!r} is not importable and there is no {candidates[0].name} "
                     f"in {str(base)!r}; write path/to/file.py:function, or install the module")


def _from_file(path: Path) -> ModuleType:
    """Import a file once per process under a name made from its path."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"stackopt_user_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look it up there
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise
    return module


def locate(ref: str, base: str | Path | None = None):
    """``(function, reference that loads it from anywhere)`` for a game reference."""
    where, func = split_reference(ref)
    module, location = load_module(where, base)
    fn = getattr(module, func, None)
    if not callable(fn):
        found = sorted(n for n, v in vars(module).items()
                       if callable(v) and not n.startswith("_") and getattr(v, "__module__", None)
                       == module.__name__)
        close = difflib.get_close_matches(func, found, n=1)
        raise ValueError(f"{where!r} has no function {func!r}"
                         + (f"; did you mean {where}:{close[0]}?" if close else "")
                         + f" Its functions are {found}")
    return fn, f"{location}:{func}"


def signature_params(fn, param_type):
    """The builder's parameters (all but ``seed``) as ``param_type(type, default, help)``."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not evaluate: fall back to the defaults' types
        hints = {}
    helps = _docstring_help(fn.__doc__ or "")
    params = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name == "seed" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise ValueError(f"parameter {name!r} of game builder {fn.__qualname__} has no default; "
                             f"give it one (def {fn.__name__}(..., {name}=...)), so that every "
                             "parameter of the game has a value")
        params[name] = param_type(_param_type(hints.get(name), p.default), p.default,
                                  helps.get(name, ""))
    return params


def takes_seed(fn) -> bool:
    return "seed" in inspect.signature(fn).parameters


def _param_type(hint, default) -> type:
    if hint in FLAG_TYPES:
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]  # Optional[int] and int | None
    if len(args) == 1 and args[0] in FLAG_TYPES:
        return args[0]
    for t in FLAG_TYPES:  # bool before int: True is an int
        if type(default) is t:
            return t
    return object


def _docstring_help(doc: str) -> dict[str, str]:
    """``name: text`` lines of a docstring (Google style ``Args:``), by name."""
    out = {}
    for m in re.finditer(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(\S.*)$", inspect.cleandoc(doc), re.M):
        out.setdefault(m.group(1), m.group(2).strip())
    return out
