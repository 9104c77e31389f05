"""Project files agree with each other: dependencies, local defaults, runbook sources and their parameter cells."""
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from hubrunbook.core.params import Params, load_params_file
from hubrunbook.runbooks import RUNBOOKS as DECLARED, render_local_yaml
from hubrunbook.sources import SYNC_COMMAND, check_runbook_source

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted((REPO / "runbooks").glob("*.ipynb"))


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_and_pyproject_name_the_same_dependencies():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(d) for d in py["dependencies"]} | {_name(d) for d in py["optional-dependencies"]["test"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    missing = wanted - conda
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    extra = conda - wanted - {"python", "nodejs", "configurable-http-proxy", "pip"}
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"


def test_local_yaml_is_the_model_default():
    data = yaml.safe_load((REPO / "parameters" / "local.yaml").read_text())
    assert set(data) == set(Params.model_fields), "local.yaml must list every parameter"
    assert load_params_file(REPO / "parameters" / "local.yaml") == Params()


@pytest.mark.parametrize("name", [rb.name for rb in DECLARED], ids=str)
def test_runbook_source_is_in_step(name):
    """The .ipynb and its .md pair agree, the parameters cell has the model's names, types and comments, every cell has
    its own id. (An operator's values and outputs are allowed here; `make check-runbooks` in CI refuses them.)"""
    problems = check_runbook_source(name)
    assert not problems, f"runbooks/{name}: " + "; ".join(problems) + f" — run: {SYNC_COMMAND}"


def test_generated_files_are_current():
    assert (REPO / "parameters" / "local.yaml").read_text() == render_local_yaml(), f"run: {SYNC_COMMAND}"


@pytest.mark.parametrize("nb_path", RUNBOOKS, ids=lambda p: p.name)
def test_runbook_code_cells_are_short_and_plain(nb_path):
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "parameters" in cell.get("metadata", {}).get("tags", []):
            continue
        src = "".join(cell["source"])
        assert len(src.splitlines()) <= 5, f"{nb_path.name}: code cell longer than 5 lines:\n{src}"
        assert not re.search(r"^\s*(!|%%?(bash|sh|system))|\btry:|\bfor .* in |\bwhile ", src, re.M), src


@pytest.mark.parametrize("path", sorted((REPO / "parameters").glob("*.yaml")), ids=lambda p: p.name)
def test_every_parameter_file_validates(path):
    load_params_file(path)


def test_readme_shows_the_two_commands_and_ci_calls_the_test_command():
    readme = (REPO / "README.md").read_text()
    assert "make deploy" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
