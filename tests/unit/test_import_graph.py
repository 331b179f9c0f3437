"""The dependency direction of docs/design.md, checked on the source: no import runs upward or sideways.

triarb/ composes; producers/, consumers/ and dashboard/ are components that never import each other; common/
imports only schemas/; schemas/ imports nothing of ours. Every import counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = {"common", "consumers", "dashboard", "producers", "schemas", "scripts", "tests", "triarb"}
ALLOWED = {
    "schemas": {"schemas"},
    "common": {"common", "schemas"},
    "producers": {"producers", "common", "schemas"},
    "consumers": {"consumers", "common", "schemas"},
    "dashboard": {"dashboard", "common", "schemas"},
}


def our_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import of one of our packages in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue  # relative imports stay inside their own package
        found.extend((node.lineno, name.split(".")[0]) for name in names if name.split(".")[0] in OURS)
    return found


def violations(package: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {imported}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, imported in our_imports(path)
        if imported not in ALLOWED[package]
    ]


def test_components_never_import_each_other_nor_the_composition_root() -> None:
    assert violations("producers") + violations("consumers") + violations("dashboard") == []


def test_common_imports_only_schemas_and_schemas_imports_nothing_of_ours() -> None:
    assert violations("common") + violations("schemas") == []


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("import os\n\ndef later():\n"
                      "    from producers.feed import VenueFeed\n"
                      "    import consumers.paper\n")
    assert our_imports(module) == [(4, "producers"), (5, "consumers")]
