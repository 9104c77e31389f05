"""Runbook sources (hubrunbook.sources): an edit in the .md or the .ipynb survives a sync, only the parameters cell is
generated, ids stay put, and the check names every kind of drift. Each test works on a copy of a committed pair."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest

from hubrunbook import sources
from hubrunbook.core.runner import RUNBOOKS_DIR

NAME = "configure"


@pytest.fixture
def pair(tmp_path) -> Path:
    for ext in ("ipynb", "md"):
        shutil.copy(RUNBOOKS_DIR / f"{NAME}.{ext}", tmp_path / f"{NAME}.{ext}")
    return tmp_path


def _touch_newer(path: Path, than: Path) -> None:
    t = than.stat().st_mtime + 5
    os.utime(path, (t, t))


def _ipynb(d: Path):
    return nbformat.read(d / f"{NAME}.ipynb", as_version=4)


def _write_raw(d: Path, nb) -> None:
    """Write without nbformat's validation, which would quietly repair missing and duplicate ids."""
    (d / f"{NAME}.ipynb").write_text(json.dumps(nb, indent=1))


def _ids(nb) -> list[str]:
    return [c["id"] for c in nb.cells]


def test_an_edit_in_the_markdown_survives_and_renumbers_nothing(pair):
    before = _ipynb(pair)
    md = pair / f"{NAME}.md"
    text = md.read_text()
    anchor = "## Step 2 — Generate the config file"
    assert anchor in text
    note = "An operator's note: keep a copy of the config before this step.\n\n"
    new_cell = "```{code-cell}\nprint(params.config_path)\n```\n\n+++\n\n"
    md.write_text(text.replace(anchor, note.replace("\n\n", "\n") + "\n+++\n\n" + new_cell + anchor, 1))
    _touch_newer(md, pair / f"{NAME}.ipynb")

    written = sources.sync_runbook(NAME, pair)

    assert pair / f"{NAME}.ipynb" in written
    after = _ipynb(pair)
    assert any(c.source.startswith("An operator's note") for c in after.cells)
    assert len(after.cells) == len(before.cells) + 2
    old_ids = _ids(before)
    kept = [i for i in _ids(after) if i in old_ids]
    assert kept == old_ids, "every existing cell keeps its id, in order"
    added = [i for i in _ids(after) if i not in old_ids]
    assert added == ["an-operator-s-note-keep-a-copy", "print"], added
    assert sources.check_runbook_source(NAME, pair) == []


def test_an_edit_in_the_notebook_survives(pair):
    nb = _ipynb(pair)
    i = next(n for n, c in enumerate(nb.cells) if c.source.startswith("## Step 3"))
    nb.cells[i].source += "\n\nEdited in JupyterLab."
    nb.cells.insert(i, nbformat.v4.new_markdown_cell("A cell added in JupyterLab."))
    del nb.cells[i]["id"]  # as an editor without cell ids would leave it
    _write_raw(pair, nb)
    _touch_newer(pair / f"{NAME}.ipynb", pair / f"{NAME}.md")

    sources.sync_runbook(NAME, pair)

    md = sources.read_text_source(NAME, pair)
    texts = [c.source for c in md.cells]
    assert "A cell added in JupyterLab." in texts
    assert any(t.endswith("Edited in JupyterLab.") for t in texts)
    assert "a-cell-added-in-jupyterlab" in _ids(_ipynb(pair))
    assert sources.check_runbook_source(NAME, pair) == []


def test_only_the_parameters_cell_is_regenerated_and_outputs_are_stripped(pair):
    nb = _ipynb(pair)
    cell = sources.find_parameters_cell(nb)
    cell.source = cell.source.replace("'/opt/hubrunbook'", "'/srv/edited'")
    code = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    code.outputs = [nbformat.v4.new_output("stream", text="ran here\n")]
    code.execution_count = 3
    prose = next(c for c in nb.cells if c.cell_type == "markdown")
    prose.source += "\nmy own words"
    (pair / f"{NAME}.ipynb").write_text(nbformat.writes(nb, version=4))
    _touch_newer(pair / f"{NAME}.ipynb", pair / f"{NAME}.md")
    problems = sources.check_runbook_source(NAME, pair, committed=True)
    assert any("values other than the model's defaults" in p for p in problems), problems
    assert any("carries outputs" in p for p in problems), problems
    assert any("differ (cell sources" in p for p in problems), problems

    sources.sync_runbook(NAME, pair)

    after = _ipynb(pair)
    assert sources.find_parameters_cell(after).source == sources.render_parameters_cell(NAME)
    assert "'/opt/hubrunbook'" in sources.find_parameters_cell(after).source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in after.cells if c.cell_type == "code")
    assert any(c.source.endswith("my own words") for c in after.cells)
    assert _ids(after) == _ids(nb)
    assert sources.check_runbook_source(NAME, pair, committed=True) == []


def test_the_check_names_missing_and_duplicate_ids(pair):
    nb = _ipynb(pair)
    nb.cells[3]["id"] = nb.cells[2]["id"]
    _write_raw(pair, nb)
    assert any("duplicate cell ids" in p for p in sources.check_runbook_source(NAME, pair))
    raw = (pair / f"{NAME}.ipynb").read_text().replace(f'"id": "{nb.cells[5]["id"]}",', "", 1)
    (pair / f"{NAME}.ipynb").write_text(raw)
    assert any("has no id" in p for p in sources.check_runbook_source(NAME, pair))


def test_the_pairing_is_the_jupytext_config():
    assert sources.text_format() == "md:myst"
    for name in ("install", "configure", "oauth", "troubleshoot"):
        nb = jupytext.read(RUNBOOKS_DIR / f"{name}.md")  # what JupyterLab with jupytext reads
        assert sources.find_parameters_cell(nb).source == sources.render_parameters_cell(name)


def test_nbval_copy_takes_reference_outputs_by_id_and_checks_a_new_step():
    from support.nbval import CHECK_TAG, transplant_outputs

    ref = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("run(a)", id="a"),
                                          nbformat.v4.new_code_cell("run(b)", id="b")])
    ref.cells[0].outputs, ref.cells[0].execution_count = [nbformat.v4.new_output("stream", text="A\n")], 4
    ref.cells[1].outputs, ref.cells[1].execution_count = [nbformat.v4.new_output("stream", text="B\n")], 5
    new_step = nbformat.v4.new_code_cell("run(c)", id="c", metadata={"tags": [CHECK_TAG]})
    scratch = nbformat.v4.new_code_cell("x = 1", id="x")
    current = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("edited prose", id="m"),
                                              ref.cells[1].copy(), new_step, scratch, ref.cells[0].copy()])
    for cell in current.cells[1:]:
        cell.outputs, cell.execution_count = [], None
    transplant_outputs(current, ref)
    by_id = {c.id: c for c in current.cells}
    assert by_id["a"].outputs[0].text == "A\n" and by_id["b"].outputs[0].text == "B\n"  # by id, not position
    assert by_id["c"].outputs == [] and by_id["c"].execution_count == 1  # nbval compares it: any output fails
    assert by_id["x"].execution_count is None  # untagged: nbval only runs it


@pytest.mark.parametrize("newer", ["md", "ipynb"])
def test_a_committed_pair_is_a_fixed_point_of_the_sync(pair, newer):
    other = "ipynb" if newer == "md" else "md"
    _touch_newer(pair / f"{NAME}.{newer}", pair / f"{NAME}.{other}")
    assert sources.sync_runbook(NAME, pair) == [], "syncing an in-step pair rewrites nothing"


def test_an_operators_run_all_and_save_passes_make_test_but_not_the_committed_check(pair):
    """JupyterLab with jupytext saves both files: the operator's values and outputs are theirs, not drift."""
    nb = _ipynb(pair)
    cell = sources.find_parameters_cell(nb)
    cell.source = cell.source.replace("port: int = 8000", "port: int = 8443")
    code = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    code.outputs, code.execution_count = [nbformat.v4.new_output("stream", text="ran here\n")], 1
    (pair / f"{NAME}.ipynb").write_text(nbformat.writes(nb, version=4))
    jupytext.write(nb, pair / f"{NAME}.md", fmt=sources.text_format())
    assert "port: int = 8443" in (pair / f"{NAME}.md").read_text()
    assert sources.check_runbook_source(NAME, pair) == []
    committed = sources.check_runbook_source(NAME, pair, committed=True)
    assert any("values other than the model's defaults" in p for p in committed), committed
    assert any("carries outputs" in p for p in committed), committed


def test_a_parameter_line_renamed_or_retyped_is_drift_even_in_an_operators_copy(pair):
    nb = _ipynb(pair)
    cell = sources.find_parameters_cell(nb)
    cell.source = cell.source.replace("port: int = 8000", "prot: int = 8000")
    (pair / f"{NAME}.ipynb").write_text(nbformat.writes(nb, version=4))
    jupytext.write(nb, pair / f"{NAME}.md", fmt=sources.text_format())
    problems = sources.check_runbook_source(NAME, pair)
    assert any("differs from the parameter model (names, types, comments)" in p for p in problems), problems
