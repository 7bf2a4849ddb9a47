"""Which tree may import which, and nobody edits sys.path.

The test support code (``tests/support``) is the one shared place: the load tests and the
benchmarks import it, the benchmarks may run the load test as one of their sections, and the
reverse never happens, so each tree can change without breaking the one below it::

    bluegreen  <-  tests (support)  <-  loadtests  <-  bench

Everything is imported as the package it is, from the repository root (``python -m
bench.run_all``, ``python -m loadtests.swap_under_load``, pytest's rootdir): a ``sys.path`` edit
would hide an import that only works from one directory."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN: dict[str, set[str]] = {
    "bluegreen": {"tests", "loadtests", "bench", "dashboards"},
    "tests": {"loadtests", "bench", "dashboards"},
    "loadtests": {"bench", "dashboards"},
    "bench": {"dashboards"},
    "dashboards": {"tests", "loadtests", "bench"},
}
"""Tree -> the top-level packages its modules must not import."""


def imported_packages(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(top-level package, line) of every absolute import, ``importlib.import_module("x")``
    with a literal name included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value.split(".")[0], node.lineno


def path_edits(tree: ast.AST) -> Iterator[int]:
    """Lines that touch the import path: ``sys.path`` in any use, ``from sys import path``,
    ``site.addsitedir``."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in {("sys", "path"), ("site", "addsitedir")}
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module in {"sys", "site"}
            and any(alias.name in {"path", "addsitedir"} for alias in node.names)
        ):
            yield node.lineno


def _modules(tree_name: str) -> Iterator[tuple[str, ast.AST]]:
    for path in sorted((REPO / tree_name).rglob("*.py")):
        yield str(path.relative_to(REPO)), ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("tree_name", sorted(FORBIDDEN))
def test_imports_go_one_way(tree_name: str) -> None:
    wrong = [
        f"{where}:{line} imports {package}"
        for where, tree in _modules(tree_name)
        for package, line in imported_packages(tree)
        if package in FORBIDDEN[tree_name]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("tree_name", ["tests", "loadtests", "bench", "dashboards"])
def test_nothing_edits_the_import_path(tree_name: str) -> None:
    edits = [f"{where}:{line}" for where, tree in _modules(tree_name) for line in path_edits(tree)]
    assert not edits, "sys.path edited at " + ", ".join(edits)


def test_the_trees_are_packages_importable_from_the_root() -> None:
    for tree_name in ("tests", "tests/support", "loadtests", "bench"):
        assert (REPO / tree_name / "__init__.py").is_file(), tree_name


@pytest.mark.parametrize(
    ("source", "imports", "edits"),
    [
        ("from loadtests.swap_under_load import Scenario\n", [("loadtests", 1)], []),
        ("def f():\n    import bench.wrk\n", [("bench", 2)], []),
        ("import importlib\nimportlib.import_module('bench.report')\n",
         [("importlib", 1), ("bench", 2)], []),
        ("import sys\nsys.path.insert(0, 'x')\n", [("sys", 1)], [2]),
        ("from sys import path\npath.append('x')\n", [("sys", 1)], [1]),
        ("import site\nsite.addsitedir('x')\n", [("site", 1)], [2]),
        ("from . import sibling\nimport os\n", [("os", 2)], []),
    ],
)  # fmt: skip
def test_the_walk_finds_imports_and_path_edits(
    source: str, imports: list[tuple[str, int]], edits: list[int]
) -> None:
    tree = ast.parse(source)
    assert sorted(imported_packages(tree)) == sorted(imports)
    assert list(path_edits(tree)) == edits
