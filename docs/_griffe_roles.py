"""Render Sphinx cross-reference roles in docstrings (`:func:`decode``) as code (`decode`).

A few of fci's docstrings use Sphinx roles, which `help()` shows as written and which
Markdown would otherwise show with their role prefix. Loaded by mkdocstrings
(`extensions:` in mkdocs.yml); the docstrings themselves are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:func|meth|class|mod|attr|obj|data|exc|const):`~?\.?([^`<]+?)`")


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(r"`\1`", obj.docstring.value)
