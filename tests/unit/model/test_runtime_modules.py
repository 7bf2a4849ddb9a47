"""The modules a logged model ships (its code_paths) are closed under their own imports."""

from __future__ import annotations

import ast
from pathlib import Path

from bluegreen.model import registry_io

MODEL_DIR = Path(registry_io.__file__).parent


def test_every_relative_import_of_a_shipped_module_is_shipped() -> None:
    shipped = set(registry_io.RUNTIME_MODULES)
    missing = set()
    for name in shipped:
        tree = ast.parse((MODEL_DIR / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module is not None:
                    target = f"{node.module.split('.')[0]}.py"
                    if target not in shipped:
                        missing.add(f"{name} imports .{node.module}")
                else:
                    missing.update(
                        f"{name} imports .{a.name}"
                        for a in node.names
                        if f"{a.name}.py" not in shipped and (MODEL_DIR / f"{a.name}.py").exists()
                    )
    assert not missing, sorted(missing)
