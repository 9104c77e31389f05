"""A runbook run headless, as `make deploy` runs it: through hubrunbook.core.runner, the one papermill runner."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from papermill.exceptions import PapermillExecutionError

from hubrunbook.core.runner import execute_runbook

CELL_TIMEOUT = 900  # seconds one cell may take before the run fails (a hung step must not hang the suite)


@dataclass
class RunbookRun:
    """The executed notebook and, when a cell failed, papermill's error: the cell, the exception, its traceback."""

    out: Path
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    def text(self) -> str:
        """Everything an operator can read after the run: the error and the executed notebook."""
        return self.error + (self.out.read_text() if self.out.exists() else "")


def run_runbook(name: str, params: dict, tmp_path: Path) -> RunbookRun:
    """Run runbooks/<name>.ipynb with *params* into tmp_path/<name>-out.ipynb; a failed cell is returned, not raised."""
    out = tmp_path / f"{name}-out.ipynb"
    try:
        execute_runbook(name, out, params, execution_timeout=CELL_TIMEOUT)
    except PapermillExecutionError as exc:
        return RunbookRun(out, str(exc))
    return RunbookRun(out)


def step_statuses(out: Path) -> dict[str, str]:
    """{step: status} from the audit-free source of truth: the summary cell's text output."""
    nb = json.loads(out.read_text())
    text = ""
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            text = "".join(o.get("data", {}).get("text/plain", "")) or text
    rows = {}
    for line in text.splitlines()[3:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            rows[parts[1]] = parts[2] if parts[2] != "would" else "would change"
    return rows
