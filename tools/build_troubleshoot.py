"""Regenerate runbooks/troubleshoot.ipynb (cells without outputs).

Usage: .venv/bin/python tools/build_troubleshoot.py [docs]
  (no argument) rewrites the notebook (outputs cleared) and docs/troubleshoot-catalog.md; then record reference
  outputs: .venv/bin/python tools/record_reference.py troubleshoot (needs CHAINS["troubleshoot"] in
  tests/nbval_support.py: ["install", "configure"]);
  docs: only docs/troubleshoot-catalog.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from nbtools import CHECK, code, md, parameters_cell, write_notebook  # noqa: E402

from hubrunbook.runbooks import parameters_of  # noqa: E402

RUNBOOKS = Path(__file__).resolve().parents[1] / "runbooks"


def troubleshoot():
    return [
        md("""
# Troubleshoot JupyterHub (guide §3, and what an operator meets on a bad day)

Open this when the hub does not work. It examines the deployment **read-only**, names every problem it
finds with the evidence (the log line, the PID and its command line, the file mode), the cause and the fix,
and — only with `apply_fixes = True` — repairs what it safely can and proves that a user can log in and
get a server again.

| changes | when |
|---|---|
| nothing | `apply_fixes = False` (the default): a diagnosis, a table of findings and a JSON report |
| a stale configurable-http-proxy on **our** proxy API port is stopped by its PID (found by the port, command line confirmed) | `apply_fixes = True` |
| the hub env's jupyterhub/jupyterlab/tornado reinstalled at the pinned versions; configurable-http-proxy or Node.js installed | `apply_fixes = True` |
| the database copied to `<prefix>/state/backups/`, then `jupyterhub upgrade-db` | `apply_fixes = True` |
| managed users (from `users`/`admin_users`) and their notebook dirs created; our secret files set to 0600; the managed config lines rewritten from the parameters | `apply_fixes = True` |
| the managed hub started, and a user's server spawned and stopped again as proof | `apply_fixes = True` |

Never touched: processes this deployment does not own (a foreign program on the public port or the hub
port is reported, not killed — unlike the guide's `ps aux | grep … ; kill`), users hubrunbook did not create,
files outside the prefix. **Safe to re-run**; on a healthy hub it reports no errors and changes nothing.
**Takes** a few seconds to scan; repairs take as long as what they do (a reinstall ~5 s, a hub start ~5 s).
A headless run (`papermill`) exits non-zero while an error-level finding remains. The findings are also
written as JSON to `report_file` for automation.
"""),
        md("""
## Prerequisites

| what | why |
|---|---|
| the same parameters file the deployment was made with (`install.ipynb`, `configure.ipynb`) | the checks compare what runs with what was asked for: ports, versions, users, paths |
| root | reading other processes' command lines and the hub's secret files, repairs |

## Parameters
`apply_fixes = False` only diagnoses. The other parameters are those of the deployment (one file serves every runbook).
"""),
        parameters_cell(parameters_of("troubleshoot")),
        md("""
## Validate the parameters
Unknown or misspelt names, wrong types and bad values stop the run here, before anything is examined.
"""),
        code("""\
from hubrunbook.core.notebook import load_params
from hubrunbook.core.steps import Run
params = load_params(globals())
run = Run("troubleshoot", params)
params""", CHECK),
        md("""
## Step 1 — Scan the deployment (read-only)
Every check of the catalog (appendix) runs in parallel, the whole scan bounded by `scan_timeout`; a check that
fails or hangs becomes a finding of its own instead of stopping the scan. It looks at: the hub env (`pip check`,
tornado against what JupyterHub requires, the pinned JupyterHub version — guide §3.1), Node.js and
configurable-http-proxy, who listens on the three ports (a stale proxy with another token gives the guide's 403,
§3.2), the secret files' modes, the database schema, free disk, the config as JupyterHub loads it (allow rule,
OAuth callback and client), the users' accounts, homes and notebook dirs, whether spawned users can run
`jupyterhub-singleuser`, whether the hub runs and answers, and known messages in the last run of the hub's log.
"""),
        code("""\
from hubrunbook.troubleshoot.steps import scan_deployment
report = scan_deployment(params)
report""", CHECK),
        md("""
## Step 2 — What each finding means
Each error and warning with what was seen, the evidence, the cause and the fix. `repair: available` means
`apply_fixes = True` repairs it; `by hand` means it needs you (usually because it is not ours to change).
"""),
        code("""\
from hubrunbook.troubleshoot.steps import explain_findings
explain_findings(report)"""),
        md("""
## Step 3 — Repair (only with `apply_fixes = True`)
Repairs run in a fixed order: broken installs first, then stray processes, files, the database and users, the hub
start last. Each one proves its target again right before acting (a proxy must still listen on our API port and
still be configurable-http-proxy) and looks again afterwards. Without `apply_fixes` this lists what would be done.
"""),
        code("""\
from hubrunbook.troubleshoot.steps import repair_deployment
repairs = run(repair_deployment, report)
repairs""", CHECK),
        md("""
## Step 4 — Scan again
After repairs, the same checks once more: what remains is what needs you.
"""),
        code("""\
from hubrunbook.troubleshoot.steps import rescan_deployment
after = rescan_deployment(params, report, repairs)
after""", CHECK),
        md("""
## Step 5 — Prove a user gets in (after repairs)
The hub works again when a user can log in and get a server: `verify_user` (default: the first of `users`) logs
in over HTTP with their password and spawns a server, which is stopped again. Skipped when only diagnosing.
"""),
        code("""\
from hubrunbook.troubleshoot.steps import check_user_spawns
run(check_user_spawns, after)""", CHECK),
        md("""
## Step 6 — Write the JSON report
For automation: every finding (id, severity, seen, evidence, cause, fix) before and after repairs, and the repairs.
"""),
        code("""\
from hubrunbook.troubleshoot.steps import save_report
run(save_report, report, repairs, after)"""),
        md("""
## Summary
Fails while an error-level finding remains, so a headless run exits non-zero.
"""),
        code("""\
from hubrunbook.troubleshoot.steps import check_findings
run(check_findings, after)
run.summary()""", CHECK),
        md("""
## Appendix — the catalog
What the scan knows, like JupyterHub's "log messages" page: each check and each known log message with an example
of what you see, its cause and the action.
"""),
        code("""\
from hubrunbook.troubleshoot.steps import catalog
catalog()""", CHECK),
    ]


def catalog_markdown() -> str:
    """docs/troubleshoot-catalog.md: the catalog of checks and known log messages as one table."""
    from hubrunbook.troubleshoot.diagnose import catalog_rows

    cell = lambda s: s.replace("|", "\\|").replace("\n", " ")
    lines = [
        "# Troubleshooting catalog",
        "",
        "What `runbooks/troubleshoot.ipynb` checks, like JupyterHub's \"log messages\" page: each check (a read-only",
        "detector in `lib/hubrunbook/checks.py`) and each known log message (`lib/hubrunbook/logscan.py`) with an",
        "example of what you see, its cause and the action. *Repair* says whether `apply_fixes: true` repairs it.",
        "Generated by `tools/build_troubleshoot.py`; a unit test keeps it in step with the code.",
        "",
        "| id | problem | example | cause | action | repair |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in catalog_rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if "docs" not in sys.argv[1:]:  # the notebook loses its reference outputs: record them again afterwards
        write_notebook(RUNBOOKS / "troubleshoot.ipynb", troubleshoot())
        print("wrote runbooks/troubleshoot.ipynb")
    (RUNBOOKS.parent / "docs" / "troubleshoot-catalog.md").write_text(catalog_markdown())
    print("wrote docs/troubleshoot-catalog.md")
