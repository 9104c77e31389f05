"""The one way a runbook is executed headlessly: papermill, from runbooks/, into a private output notebook.

Used by `make deploy`, the tests, the tools that record references and the benchmarks.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
RUNBOOKS_DIR = REPO / "runbooks"


class _KnownToUs(logging.Filter):
    """Drop papermill's "Passed unknown parameter" lines: every key was validated against our model already,
    and a key of another runbook is expected when one file serves all of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Passed unknown parameter")


_KNOWN_TO_US = _KnownToUs()


def runbook_path(name: str) -> Path:
    return RUNBOOKS_DIR / f"{name}.ipynb"


def create_private(path: Path) -> None:
    """Create *path* empty and 0600 before papermill writes it (it writes while it runs: every parameter value and
    output). Not a umask: the kernel would inherit it, and what the runbook creates must stay readable by users."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600))
    os.chmod(path, 0o600)


def execute_runbook(name: str, output: Path, parameters: dict[str, Any], *, source: Path | None = None,
                    prepare_only: bool = False, log_output: bool = False,
                    execution_timeout: int | None = None) -> Path:
    """Execute runbooks/<name>.ipynb (or *source*) with *parameters* into *output* (0600); raises papermill's
    PapermillExecutionError naming the failed cell. *prepare_only*: inject the parameters, execute nothing (the
    committed outputs stay); *execution_timeout*: seconds any one cell may take (none by default)."""
    import papermill

    logging.getLogger("papermill").addFilter(_KNOWN_TO_US)  # once: the same filter object is not added twice
    output.parent.mkdir(parents=True, exist_ok=True)
    create_private(output)
    papermill.execute_notebook(str(source or runbook_path(name)), str(output), parameters=parameters,
                               cwd=str(RUNBOOKS_DIR), progress_bar=False, prepare_only=prepare_only,
                               log_output=log_output, execution_timeout=execution_timeout)
    return output
