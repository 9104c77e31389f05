"""The runbooks' sources: each ``runbooks/<name>.ipynb`` is paired by jupytext with an editable text file
(``runbooks/<name>.md``, MyST markdown; the pairing is ``runbooks/jupytext.toml``, so JupyterLab with jupytext keeps
both in step on save).

Only the ``parameters``-tagged cell is generated (from the parameter model, for the names
:func:`hubrunbook.runbooks.parameters_of` returns), in place by its tag; every other cell is text people edit.
Cells keep their ids; a cell without one gets an id derived from what it is (the step it runs, its heading), so
inserting a cell renumbers nothing. The committed ``.ipynb`` carries no outputs.

``make runbooks`` (``python -m hubrunbook.sources``) syncs every pair and also writes ``parameters/local.yaml`` and
``docs/troubleshoot-catalog.md``; :func:`check_runbook_source` is what the unit tests hold the committed files to.
"""
from __future__ import annotations

import json
import re
import sys
import types
import typing
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs
from jupytext.config import load_jupytext_configuration_file

from hubrunbook.core.params import Params
from hubrunbook.core.runner import REPO, RUNBOOKS_DIR
from hubrunbook.runbooks import RUNBOOKS, parameters_of

SYNC_COMMAND = "make runbooks"
PARAMETERS_TAG = "parameters"
JUPYTEXT_CONFIG = RUNBOOKS_DIR / "jupytext.toml"
LOCAL_YAML = REPO / "parameters" / "local.yaml"
CATALOG_DOC = REPO / "docs" / "troubleshoot-catalog.md"


# --- the pairing -----------------------------------------------------------------------------------------
def text_format() -> str:
    """The text half of the pairing named in runbooks/jupytext.toml, e.g. ``md:myst``."""
    config = load_jupytext_configuration_file(str(JUPYTEXT_CONFIG))
    pairing = config.formats if isinstance(config.formats, str) else ",".join(config.formats)
    formats = [f for f in pairing.split(",") if not f.startswith("ipynb")]
    if len(formats) != 1:
        raise ValueError(f"{JUPYTEXT_CONFIG}: formats must pair ipynb with one text format; got {config.formats!r}")
    return formats[0]


def text_path(name: str, directory: Path = RUNBOOKS_DIR) -> Path:
    ext = text_format().split(":")[0]
    return directory / f"{name}.{ext}"


def read_text_source(name: str, directory: Path = RUNBOOKS_DIR) -> nbformat.NotebookNode:
    return jupytext.read(text_path(name, directory), fmt=text_format())


def render_text_source(nb: nbformat.NotebookNode) -> str:
    return jupytext.writes(nb, fmt=text_format(), config=load_jupytext_configuration_file(str(JUPYTEXT_CONFIG)))


def render_ipynb(nb: nbformat.NotebookNode) -> str:
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


# --- the generated parameters cell -----------------------------------------------------------------------
def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "str"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (list, dict):
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


def render_parameters_cell(name: str) -> str:
    """The source of runbook *name*'s ``parameters`` cell: one typed line per parameter it reads, the default of the
    model (the embedded local deployment) and the field's description (with its choices) as comment."""
    lines = []
    for pname in parameters_of(name):
        field = Params.model_fields[pname]
        comment = field.description or ""
        if typing.get_origin(field.annotation) is typing.Literal:
            comment += f" ({' | '.join(repr(a) for a in typing.get_args(field.annotation))})"
        lines.append(f"{pname}: {_type_name(field.annotation)} = {field.default!r}  # {comment}")
    return "\n".join(lines)


def find_parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"a runbook has exactly one cell tagged {PARAMETERS_TAG!r}; found {len(cells)}")
    return cells[0]


def ensure_parameters_cell(nb: nbformat.NotebookNode, name: str) -> bool:
    """Set the ``parameters`` cell's source from the model; True when it changed. No other cell is touched."""
    cell = find_parameters_cell(nb)
    wanted = render_parameters_cell(name)
    if cell.source == wanted:
        return False
    cell.source = wanted
    return True


# --- cell ids --------------------------------------------------------------------------------------------
def _slug(text: str, limit: int = 40) -> str:
    """Lower-case words joined by '-', whole words up to *limit* characters."""
    out = ""
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if out and len(out) + 1 + len(word) > limit:
            break
        out = f"{out}-{word}" if out else word[:limit]
    return out


def content_key(cell: nbformat.NotebookNode) -> str:
    """What a cell is, as an id stem: the step it runs (``run(ensure_proxy)`` → ``ensure-proxy``), else the first
    name it imports or the call on its last line; for markdown its heading (else its first words)."""
    src = cell.source
    if cell.cell_type == "code":
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return PARAMETERS_TAG
        for pattern in (r"\brun\((\w+)", r"^from\s+\S+\s+import\s+\(?\s*(\w+)"):
            if m := re.search(pattern, src, re.M):
                return _slug(m.group(1))
        calls = re.findall(r"([\w.]+)\(", src.strip().splitlines()[-1]) if src.strip() else []
        return _slug(calls[-1]) if calls else "code"
    heading = re.search(r"^#+\s+(.+)$", src, re.M)
    return _slug(heading.group(1) if heading else " ".join(src.split()[:6])) or cell.cell_type


def assign_cell_ids(nb: nbformat.NotebookNode, known: set[str]) -> list[str]:
    """Give every cell whose id is not in *known* (the ids the committed notebook had) an id derived from its
    content, made unique with a suffix; cells with a known id keep it. Returns the ids assigned."""
    kept = [c.get("id") in known for c in nb.cells]
    taken = {c["id"] for c, keep in zip(nb.cells, kept) if keep}
    seen: set[str] = set()
    assigned = []
    for cell, keep in zip(nb.cells, kept):
        if keep and cell["id"] not in seen:
            seen.add(cell["id"])
            continue
        stem, n = content_key(cell), 1
        new = stem
        while new in taken:
            n += 1
            new = f"{stem}-{n}"
        cell["id"] = new
        taken.add(new)
        seen.add(new)
        assigned.append(new)
    return assigned


def stored_cell_ids(ipynb: Path) -> list[str | None]:
    """The cell ids as written in the file (nbformat.read quietly replaces missing and duplicate ones)."""
    return [c.get("id") for c in json.loads(ipynb.read_text())["cells"]]


def strip_outputs(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs and execution counts (and papermill's traces); True when there were any."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            cell.outputs, cell.execution_count = [], None
            changed = True
        for key in ("papermill", "execution"):
            changed |= cell.metadata.pop(key, None) is not None
    changed |= nb.metadata.pop("papermill", None) is not None
    return changed


# --- sync and check --------------------------------------------------------------------------------------
def _cell_view(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.cell_type, c.source, tuple(c.get("metadata", {}).get("tags", []))) for c in nb.cells]


def sync_runbook(name: str, directory: Path = RUNBOOKS_DIR) -> list[Path]:
    """Bring runbooks/<name>.ipynb and its text file into step (the newer one's cells win, as jupytext --sync
    decides), refresh the parameters cell, assign missing cell ids, strip outputs. Returns what was written."""
    ipynb, text = directory / f"{name}.ipynb", text_path(name, directory)
    if not ipynb.exists() and not text.exists():
        raise FileNotFoundError(f"neither {ipynb} nor {text} exists")
    committed = nbformat.read(ipynb, as_version=4) if ipynb.exists() else None  # fills in missing/duplicate ids
    if committed is None:
        nb = read_text_source(name, directory)
    elif text.exists() and text.stat().st_mtime > ipynb.stat().st_mtime:
        nb = combine_inputs_with_outputs(read_text_source(name, directory), committed, fmt=text_format())
    else:
        nb = committed
    ensure_parameters_cell(nb, name)
    assign_cell_ids(nb, set(stored_cell_ids(ipynb)) if committed else set())
    strip_outputs(nb)
    nb = nbformat.reads(render_ipynb(nb), as_version=4)  # keys in the .ipynb's order, whichever file was newer
    written = []
    for path, content in ((ipynb, render_ipynb(nb)), (text, render_text_source(nb))):
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            written.append(path)
    return written


def parameters_cell_shape(source: str) -> list[tuple[str, str, str]]:
    """(name, type, comment) of each line of a parameters cell: what the model fixes, without the values."""
    shape = []
    for line in source.splitlines():
        head, _, comment = line.rpartition("  # ") if "  # " in line else (line, "", "")
        name, _, rest = head.partition(":")
        shape.append((name.strip(), rest.split(" = ", 1)[0].strip(), comment.strip()))
    return shape


def check_runbook_source(name: str, directory: Path = RUNBOOKS_DIR, *, committed: bool = False) -> list[str]:
    """What is out of step for runbook *name* (empty when nothing): the pair, the parameters cell, ids.

    An operator's copy may hold their own parameter values and the outputs of their last Run All + save: only the
    shape of the parameters cell (names, types, comments) must be the model's. ``committed=True`` (CI, on a clean
    clone: ``make check-runbooks``) also demands the model's defaults and no outputs."""
    ipynb, text = directory / f"{name}.ipynb", text_path(name, directory)
    missing = [p.name for p in (ipynb, text) if not p.exists()]
    if missing:
        return [f"missing {', '.join(missing)}"]
    nb = nbformat.read(ipynb, as_version=4)
    problems = []
    ids = stored_cell_ids(ipynb)
    if _cell_view(nb) != _cell_view(read_text_source(name, directory)):
        problems.append(f"{ipynb.name} and {text.name} differ (cell sources, types or tags)")
    try:
        source, wanted = find_parameters_cell(nb).source, render_parameters_cell(name)
        if parameters_cell_shape(source) != parameters_cell_shape(wanted):
            problems.append(f"{ipynb.name}: the parameters cell differs from the parameter model (names, types, comments)")
        elif committed and source != wanted:
            problems.append(f"{ipynb.name}: the parameters cell holds values other than the model's defaults")
    except ValueError as exc:
        problems.append(f"{ipynb.name}: {exc}")
    if committed and any(c.get("outputs") or c.get("execution_count") is not None
                         for c in nb.cells if c.cell_type == "code"):
        problems.append(f"{ipynb.name} carries outputs or execution counts")
    if None in ids or "" in ids:
        problems.append(f"{ipynb.name}: a cell has no id")
    if len(set(ids)) != len(ids):
        problems.append(f"{ipynb.name}: duplicate cell ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return problems


def check_committed_runbooks() -> list[str]:
    """Every runbook in its committed form (CI): in step, the model's defaults, no outputs; generated files current."""
    from hubrunbook.runbooks import render_local_yaml
    from hubrunbook.troubleshoot.diagnose import render_catalog_markdown

    problems = [f"runbooks/{rb.name}: {p}" for rb in RUNBOOKS for p in check_runbook_source(rb.name, committed=True)]
    for path, content in ((LOCAL_YAML, render_local_yaml()), (CATALOG_DOC, render_catalog_markdown())):
        if not path.exists() or path.read_text() != content:
            problems.append(f"{path.relative_to(REPO)} is not what the code generates")
    return problems


def write_generated_docs() -> list[str]:
    """parameters/local.yaml and docs/troubleshoot-catalog.md from the code; returns what changed."""
    from hubrunbook.runbooks import render_local_yaml
    from hubrunbook.troubleshoot.diagnose import render_catalog_markdown

    written = []
    for path, content in ((LOCAL_YAML, render_local_yaml()), (CATALOG_DOC, render_catalog_markdown())):
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            written.append(path)
    return written


def sync_runbooks(names: list[str] | None = None) -> list[Path]:
    written = []
    for name in names or [rb.name for rb in RUNBOOKS]:
        written += sync_runbook(name)
    return written + write_generated_docs()


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        found = check_committed_runbooks()
        print("\n".join(found) + f"\nrun: {SYNC_COMMAND}" if found else "runbooks and generated files are current")
        sys.exit(1 if found else 0)
    for path in sync_runbooks(sys.argv[1:]):
        print(f"wrote {path.relative_to(REPO)}")
