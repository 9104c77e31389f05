"""Record the runbooks' reference runs: tests/references/<name>.ipynb (what nbval compares with) and
docs/runs/<name>.html (what a run looks like, for people without Jupyter).

Usage (root): make references [NAMES="install configure"]   (every declared runbook when none is given; ~3 min)

Each runbook runs on its test sandbox through the one runner (hubrunbook.core.runner.execute_runbook): the runbooks
it runs `after` and itself once to converge, then once more; that converged run, with the sandbox parameters papermill
injected, is the reference. oauth's sandbox is a configured hub and the fake GitHub (tests/support/oauth.py).
Before anything is written, every secret of the sandbox (the files under <prefix>/secrets, the OAuth client id and
secret) is looked for in the notebook and the HTML; finding one stops the tool.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from support.sandbox import port_params  # noqa: E402
from support.nbval import REFERENCES, converge_sandbox, reference_params, teardown  # noqa: E402

from hubrunbook.core.runner import execute_runbook  # noqa: E402
from hubrunbook.runbooks import RUNBOOKS  # noqa: E402

RUNS_DOC = REPO / "docs" / "runs"


def collect_secrets(prefix: Path) -> set[str]:
    """Every secret value the sandbox holds: password files, the cookie secret, hub.env's values (8+ characters)."""
    found = set()
    for path in (prefix / "secrets").rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.name.endswith(".env"):
            found |= {line.split("=", 1)[1].strip().strip("'\"") for line in text.splitlines() if "=" in line}
        else:
            found.add(text.strip())
    return {s for s in found if len(s) >= 8}


@contextlib.contextmanager
def sandbox_of(name: str):
    """Yields (parameters, secrets()) of a converged sandbox for *name*; torn down afterwards."""
    if name == "oauth":
        from support.oauth import reference_sandbox

        with reference_sandbox() as (hub, gh, params), tempfile.TemporaryDirectory() as tmp:
            execute_runbook("oauth", Path(tmp) / "converge.ipynb", params)
            yield params, lambda: collect_secrets(hub.params.layout.root) | {gh.client_secret, gh.client_id}
        return
    params = reference_params(name, port_params())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            converge_sandbox(name, params, Path(tmp))
        yield params, lambda: collect_secrets(Path(params["prefix"]))
    finally:
        teardown(params)


def drop_run_metadata(nb: nbformat.NotebookNode) -> None:
    """Keep what the run showed and the parameters it ran with; drop timings and temporary paths (diff noise)."""
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    parameters = nb.metadata.get("papermill", {}).get("parameters", {})
    nb.metadata["papermill"] = {"parameters": parameters}


RUN_CSS = """body { max-width: 1200px; margin: 1em auto; font-family: sans-serif; line-height: 1.4; padding: 0 1em; }
.prompt { display: none; }
.input_area { background: #f5f5f5; border: 1px solid #e0e0e0; margin: 0.6em 0 0.2em; }
.input_area pre { margin: 0; padding: 0.5em; overflow-x: auto; }
.output_area pre { background: #fafafa; padding: 0.4em; overflow-x: auto; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 2px 6px; }
"""


def render_html(nb: nbformat.NotebookNode, name: str) -> str:
    """The run as a small page: nbconvert's basic template (no embedded stylesheet; the step rows carry their own
    colours) and the one shared docs/runs/run.css."""
    body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{name}.ipynb — a recorded run</title>\n"
            f"<link rel='stylesheet' href='run.css'></head>\n<body>\n{body}\n</body></html>\n")


def record(name: str) -> None:
    with sandbox_of(name) as (params, secrets), tempfile.TemporaryDirectory() as tmp:
        nb = nbformat.read(execute_runbook(name, Path(tmp) / f"{name}.ipynb", params), as_version=4)
        known = secrets()
    drop_run_metadata(nb)
    notebook = nbformat.writes(nb) + "\n"
    html = render_html(nb, name)
    leaked = [s for s in known if s in notebook or s in html]
    if leaked:
        raise SystemExit(f"{name}: the recorded run shows {len(leaked)} secret value(s) of its sandbox; nothing written")
    REFERENCES.mkdir(exist_ok=True)
    RUNS_DOC.mkdir(exist_ok=True)
    (REFERENCES / f"{name}.ipynb").write_text(notebook)
    (RUNS_DOC / f"{name}.html").write_text(html)
    (RUNS_DOC / "run.css").write_text(RUN_CSS)
    print(f"recorded tests/references/{name}.ipynb and docs/runs/{name}.html ({len(known)} secrets checked absent)")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("record_references: run as root (the runbooks create users and start hubs)")
    for n in sys.argv[1:] or [rb.name for rb in RUNBOOKS]:
        record(n)
