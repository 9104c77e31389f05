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


def render_html(nb: nbformat.NotebookNode, name: str) -> str:
    body, _ = HTMLExporter().from_notebook_node(nb, resources={"metadata": {"name": f"{name} — a recorded run"}})
    return body


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
    print(f"recorded tests/references/{name}.ipynb and docs/runs/{name}.html ({len(known)} secrets checked absent)")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("record_references: run as root (the runbooks create users and start hubs)")
    for n in sys.argv[1:] or [rb.name for rb in RUNBOOKS]:
        record(n)
