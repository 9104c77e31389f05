"""The test house itself: fixtures come from plugins, runbooks run through the one runner, runs_last orders."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from support.sandbox import REPO

TESTS = REPO / "tests"
RUNNER = REPO / "lib" / "hubrunbook" / "core" / "runner.py"


def python_files(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*.py") if ".venv" not in p.parts)


def fixtures_defined_in(path: Path) -> set[str]:
    """Names of the functions decorated with pytest.fixture (bare or called) in *path*."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if ast.unparse(target) in ("pytest.fixture", "fixture"):
                    names.add(node.name)
    return names


def test_no_test_module_imports_a_fixture_by_name():
    fixtures = {f"support.{p.stem}": fixtures_defined_in(p) for p in (TESTS / "support").glob("*.py")}
    fixtures["conftest"] = fixtures_defined_in(TESTS / "conftest.py")
    imported = []
    for path in python_files(TESTS):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in fixtures:
                imported += [f"{path.relative_to(REPO)}: {a.name}" for a in node.names if a.name in fixtures[node.module]]
    assert not imported, f"name the fixture as an argument instead (plugins in tests/conftest.py): {imported}"


def test_every_module_with_fixtures_is_a_registered_plugin():
    conftest = ast.parse((TESTS / "conftest.py").read_text())
    plugins = next(ast.literal_eval(n.value) for n in conftest.body
                   if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "pytest_plugins")
    with_fixtures = {f"support.{p.stem}" for p in (TESTS / "support").glob("*.py") if fixtures_defined_in(p)}
    assert with_fixtures == set(plugins)
    assert not fixtures_defined_in(TESTS / "conftest.py"), "fixtures belong in a tests/support plugin"


def test_runbooks_run_only_through_the_one_runner():
    """papermill is called by hubrunbook.core.runner alone (tests/system runs the README's own commands in a
    container, and tools/record_* are being replaced: both outside this check)."""
    callers = []
    for path in python_files(TESTS, REPO / "bench", REPO / "lib"):
        if path in (RUNNER, Path(__file__).resolve()) or path.is_relative_to(TESTS / "system"):
            continue
        text = path.read_text()
        if "papermill.execute_notebook" in text or '"-m", "papermill"' in text or "papermill.cli" in text:
            callers.append(str(path.relative_to(REPO)))
    assert not callers, f"run runbooks with hubrunbook.core.runner.execute_runbook: {callers}"


class _Item:
    def __init__(self, name: str, last: bool):
        self.name, self.last = name, last

    def get_closest_marker(self, name: str):
        return object() if name == "runs_last" and self.last else None


def test_runs_last_moves_marked_tests_to_the_end_and_keeps_the_rest_in_order():
    from conftest import pytest_collection_modifyitems

    items = [_Item("a", False), _Item("nbval[install]", True), _Item("b", False), _Item("nbval[configure]", True),
             _Item("c", False)]
    pytest_collection_modifyitems(None, items)
    assert [i.name for i in items] == ["a", "b", "c", "nbval[install]", "nbval[configure]"]


def test_make_test_collects_the_nbval_tests_last():
    """The order `make test` collects in (collection only: nothing runs)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "tests/unit", "tests/integration"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    nbval = [i for i, n in enumerate(ids) if n.startswith("tests/integration/test_nbval.py::")]
    assert len(nbval) >= 3 and nbval == list(range(len(ids) - len(nbval), len(ids))), ids[-6:]
