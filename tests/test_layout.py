"""The shape of importer/ that docs/ARCHITECTURE.md describes: no import circles, small modules.

The allowed arrows between the parts are import-linter's contracts (`make imports`); these two
rules are not contracts it can express.
"""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500


def _modules() -> set[str]:
    return {
        path.relative_to(ROOT)
        .with_suffix("")
        .as_posix()
        .replace("/", ".")
        .removesuffix(".__init__")
        for path in (ROOT / "importer").rglob("*.py")
        if "migrations" not in path.parts
    }


def test_it_has_no_circle_of_modules_importing_each_other() -> None:
    # Imports inside functions count; those under `if TYPE_CHECKING:` never run, so they do not.
    graph = grimp.build_graph("importer", exclude_type_checking_imports=True)
    modules = _modules()
    imports = {
        module: graph.find_modules_directly_imported_by(module) & modules - {module}
        for module in modules
    }
    try:
        TopologicalSorter(imports).prepare()
    except CycleError as error:
        raise AssertionError(f"modules importing each other: {error.args[1]}") from None


def test_it_keeps_every_module_under_500_lines() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "importer").rglob("*.py")
        if "migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}
