"""Developer tooling: build runbook notebooks from cell lists, and record reference outputs.

Used by tools/build_runbooks.py and tools/record_reference.py; not part of the library.
"""
from __future__ import annotations

import json
import types
import typing
from pathlib import Path

import nbformat

from hubrunbook.core.params import Params

CHECK = "nbval-check-output"

VALIDATE = """\
from hubrunbook.core.notebook import load_params
from hubrunbook.core.steps import Run
params = load_params(globals())  # unknown keys, wrong types, bad values: an error here, nothing changed
run = Run("{name}", params)
params"""


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(src: str, *tags: str):
    cell = nbformat.v4.new_code_cell(src.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


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


def parameters_cell(names: list[str]):
    """The `parameters`-tagged cell: one typed, commented line per parameter, defaults = the embedded local default."""
    lines = []
    for name in names:
        field = Params.model_fields[name]
        ann = field.annotation
        default = field.default
        comment = field.description or ""
        if typing.get_origin(ann) is typing.Literal:
            comment += f" ({' | '.join(repr(a) for a in typing.get_args(ann))})"
        lines.append(f"{name}: {_type_name(ann)} = {default!r}  # {comment}")
    return code("\n".join(lines), "parameters")


def write_notebook(path: Path, cells) -> None:
    """Write cells as a notebook with a python3 kernelspec (outputs empty until recorded)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{path.stem}-{i:02d}"
    nbformat.validate(nb)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def transplant_outputs(source: Path, executed: Path) -> None:
    """Copy the outputs of *executed* (a papermill run) into *source*, cell by cell id; papermill metadata stays out."""
    src = nbformat.read(source, as_version=4)
    run = nbformat.read(executed, as_version=4)
    by_id = {c.get("id"): c for c in run.cells}
    for cell in src.cells:
        if cell.cell_type != "code":
            continue
        done = by_id.get(cell.get("id"))
        cell.outputs = done.outputs if done is not None else []
        cell.execution_count = done.execution_count if done is not None else None  # nbval skips "unrun" cells
    source.write_text(json.dumps(src, indent=1, ensure_ascii=False) + "\n")
