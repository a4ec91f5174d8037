"""The explorer's readers of store entries: one registry, filled by the studies,
and an app/ that names no study."""

from __future__ import annotations

import ast
import re

import pytest

from analyses import studies
from analyses.entries import READERS, readers, register_reader
from fci.registry import DuplicateName, UnknownName
from tests.helpers import ROOT


def _kinds_written(name: str, study: object) -> set[str]:
    """The store entry kinds a study writes: its jobs' `<name>-job`, or a trial
    study's Boolean FPE models (and a job study that trains through run_fpe on a
    DatasetSpec writes `fpe` models too)."""
    if type(study).__name__ == "JobStudy":
        return {f"{name}-job"}
    return {"boolean-fpe"}


def test_every_entry_kind_a_study_writes_has_a_reader():
    registry = readers()
    for name, study in studies().items():
        for kind in _kinds_written(name, study):
            assert kind in registry, f"study {name} writes {kind!r} entries that the explorer cannot read"
    assert "fpe" in registry  # run_fpe on a DatasetSpec (deep_fpe, real_data, wide_sparse train through it)


def test_the_registry_refuses_a_second_reader_and_names_an_unknown_kind():
    readers()
    with pytest.raises(DuplicateName):
        register_reader("fpe")(lambda entries: ([], []))
    with pytest.raises(UnknownName, match="did you mean 'deep_fpe-job'"):
        READERS.get("deep-fpe-job")


def test_app_imports_no_study_module():
    """app/ reads entries only through the registry: no module of it imports, or
    names in code, a study module (docstrings may mention commands)."""
    names = set(studies().names())
    assert names, "no study registered"
    pattern = re.compile(r"analyses[./](" + "|".join(sorted(names)) + r")\b")
    for path in sorted((ROOT / "app").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not pattern.fullmatch(node.module) and node.module.split(".")[-1] not in names, \
                    f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not pattern.fullmatch(alias.name), f"{path.name} imports {alias.name}"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not _is_docstring(tree, node):
                assert not pattern.search(node.value), f"{path.name} names a study in code: {node.value!r}"


def _is_docstring(tree: ast.AST, const: ast.Constant) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and body[0].value is const:
                return True
    return False


def test_readers_of_given_kinds_import_what_registers_them():
    assert "cnn_fpe-job" in readers(["cnn_fpe-job"])
    registry = readers(["../no such-job", "boolean-fpe"])  # a kind no study writes: every study imported, none added
    assert "../no such-job" not in registry and "boolean-fpe" in registry
