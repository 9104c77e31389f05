"""The runbook declarations (hubrunbook.runbooks) agree with the notebooks and the files derived from them."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hubrunbook.core.params import Params
from hubrunbook.runbooks import RUNBOOKS, STEPS, deploy_chain, parameters_of, render_local_yaml

REPO = Path(__file__).resolve().parents[2]


def _library_calls(nb_path: Path) -> list[str]:
    """Names the notebook's code cells import from hubrunbook, in cell order."""
    out = []
    for cell in json.loads(nb_path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hubrunbook"):
                out += [f"{node.module}.{a.name}" for a in node.names]
    return out


@pytest.mark.parametrize("rb", RUNBOOKS, ids=lambda rb: rb.name)
def test_declared_steps_are_what_the_notebook_runs_in_order(rb):
    declared = [c for name in rb.steps for c in STEPS[name].callables]
    assert _library_calls(REPO / "runbooks" / f"{rb.name}.ipynb") == declared


def test_every_declared_step_is_in_a_runbook():
    used = {s for rb in RUNBOOKS for s in rb.steps}
    assert set(STEPS) == used, f"steps no runbook runs: {sorted(set(STEPS) - used)}"


def test_deploy_chain_is_install_then_configure():
    assert deploy_chain() == ["install", "userenv", "configure"]


def test_every_parameter_belongs_to_exactly_one_runbook():
    owners = [n for rb in RUNBOOKS for n in rb.own]
    assert sorted(owners) == sorted(Params.model_fields)


def test_troubleshoot_parameters_include_what_its_repairs_rerun():
    """The hand-kept list once lacked these, so an interactive apply_fixes repaired with their defaults."""
    ts = parameters_of("troubleshoot")
    for name in ("allowed_users", "allow_all", "default_url", "passwords", "home_base", "user_shell", "installer",
                 "concurrent_spawn_limit", "spawn_timeout", "ssl_key"):
        assert name in ts, name


@pytest.mark.parametrize("rb", RUNBOOKS, ids=lambda rb: rb.name)
def test_parameters_cell_order_is_the_local_yaml_order(rb):
    names = parameters_of(rb.name)
    order = [line.split(":")[0] for line in render_local_yaml().splitlines() if line and not line.startswith("#")]
    assert names == [n for n in order if n in names]
    assert set(rb.own) <= set(names)
