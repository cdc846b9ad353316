"""Griffe extension: the docstrings' reStructuredText roles and literals as Markdown code.

stackopt's docstrings write ``name`` and :class:`~package.Name` (read as plain text by
``stackopt methods`` and ``help()``); the API reference shows both as code.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import griffe

_spec = importlib.util.spec_from_file_location("registry_pages", Path(__file__).with_name("registry_pages.py"))
_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_pages)


class RstRoles(griffe.Extension):
    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _pages.md(obj.docstring.value)
