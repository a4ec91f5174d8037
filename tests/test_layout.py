"""The shape of the tree: no import cycles, no package reaching into another's private
modules or names, one registry that refuses duplicates and unknown names, config
fields that are command-line options with help, and the study list."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from fci.options import config_options
from fci.registry import DuplicateName, Registry, UnknownName
from tests.helpers import ROOT

PACKAGES = ("fci", "analyses", "app", "benchmarks")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _top_level_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of the imports executed when the module is imported: module
    level, outside `if TYPE_CHECKING:` blocks (imports inside functions run later)."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for n in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(n, ast.Import):
                out += [(a.name, []) for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
                out.append((n.module, [a.name for a in n.names]))
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the modules whose code runs when it is imported: the module imported
    and each package above it that the importer is not already inside."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names in _top_level_imports(path):
            targets = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES] + [target]
            for t in targets:
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    anc = ".".join(parts[:i])
                    if anc in MODULES and anc != mod and not mod.startswith(anc + "."):
                        graph[mod].add(anc)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_package_imports_another_packages_private_modules_or_names():
    bad = []
    for mod, path in MODULES.items():
        own = mod.split(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                target, names = node.module, [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                target, names = node.names[0].name, []
            else:
                continue
            if target.split(".")[0] == own or target.split(".")[0] not in PACKAGES:
                continue
            if any(_private(p) for p in target.split(".")) or any(_private(n) for n in names):
                bad.append(f"{mod}: {ast.unparse(node)}")
    assert bad == []


def test_the_registry_refuses_duplicates_and_unknown_names_in_one_line():
    reg: Registry[int] = Registry("colour", reserved=("none",))
    reg.register("red", 1)
    reg.register("green")(2)
    assert reg.names() == ["red", "green"] and "red" in reg and reg.get("green") == 2
    with pytest.raises(DuplicateName, match="a colour named 'red' is already registered"):
        reg.register("red", 3)
    with pytest.raises(DuplicateName, match="the colour name 'none' is reserved"):
        reg.register("none", 3)
    with pytest.raises(UnknownName, match=r"unknown colour 'rde' \(did you mean 'red'\?\); known: red, green") as e:
        reg.get("rde")
    assert "\n" not in str(e.value) and isinstance(e.value, ValueError)
    assert reg.unregister("red") == 1 and reg.names() == ["green"]


@pytest.mark.parametrize("kind", ["backend", "split", "dataset kind", "study"])
def test_every_registry_of_the_suite_refuses_duplicates_and_unknown_names(kind):
    from analyses import studies
    from fci.data.spec import DATASET_KINDS
    from fci.fpe.splits import REGISTRY as SPLITS
    from fci.train.backends import BACKENDS

    reg = {"backend": BACKENDS, "split": SPLITS, "dataset kind": DATASET_KINDS, "study": studies()}[kind]
    assert reg.what == kind and len(reg) >= 3
    first = reg.names()[0]
    with pytest.raises(DuplicateName):
        reg.register(first, reg.get(first))
    with pytest.raises(UnknownName, match=f"unknown {kind} 'nonesuch'"):
        reg.get("nonesuch")


def test_every_config_field_is_an_option_with_help():
    from fci.tasks import TaskConfig
    from fci.train import TrainConfig

    for cls in (TaskConfig, TrainConfig):
        options = {o.field: o for o in config_options(cls)}
        assert set(options) == {f.name for f in dataclasses.fields(cls)}, f"{cls.__name__} has fields that are no option"
        for o in options.values():
            assert o.help and o.flag.startswith("--"), o
    flags = [o.flag for cls in (TaskConfig, TrainConfig) for o in config_options(cls)]
    assert len(flags) == len(set(flags))


def test_every_option_of_the_commands_has_help_and_one_default():
    from analyses import studies
    from fci.__main__ import build_parser

    parsers = [build_parser()] + [s.parser() for _, s in studies().items()]
    for ap in parsers:
        for action in ap._actions:
            if action.help == "==SUPPRESS==" or action.dest == "help":
                continue
            assert action.help, f"{ap.prog} {action.option_strings} has no help"
            assert action.help.count("(default:") <= 1, f"{ap.prog} {action.option_strings}: {action.help}"


def test_python_m_analyses_lists_every_study_and_suggests_a_name_for_a_typo():
    from analyses import study_names

    out = subprocess.run([sys.executable, "-m", "analyses"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    listed = [ln.split()[0] for ln in out.stdout.splitlines() if ln.startswith("  ")]
    assert listed == study_names() and len(listed) >= 12
    bad = subprocess.run([sys.executable, "-m", "analyses", "superposition_swep"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "did you mean 'superposition_sweep'" in bad.stderr and len(bad.stderr.splitlines()) == 1
