"""The README's settings tables are what bluegreen/settings.py declares."""

from __future__ import annotations

from pathlib import Path

from bluegreen.settings import markdown_table, variables
from tests.support.settings_doc import documented, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_reference_is_generated_from_the_settings() -> None:
    text = README.read_text()
    assert documented(text) == markdown_table(), "README is stale: run `just settings-doc`"


def test_every_setting_is_documented_once_with_a_meaning() -> None:
    table = markdown_table()
    for _, name, attribute in variables():
        assert table.count(f"| `{name}` |") == 1, name
        assert attribute.metadata.get("doc"), f"{name} has no documentation"


def test_render_replaces_only_the_generated_part() -> None:
    text = README.read_text()
    stale = text.replace(documented(text), "| old | table |\n")
    assert render(stale) == text
