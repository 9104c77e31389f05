"""Diagnosis: the scan that runs every catalog check with a bounded time, the report, repairs.

What a check is and the catalog they register in live in ``catalog.py``; the checks themselves in ``checks/``
(importing that package registers them); log messages the hub or proxy writes are data in ``logscan.py``.
Detectors only read; repairs are separate functions run by :func:`apply_repairs` when asked.
"""
from __future__ import annotations

import concurrent.futures
import html
import json
import os
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hubrunbook.core import secretref
from hubrunbook.core.errors import RunbookError
from hubrunbook.core.steps import COLORS, FAILED, OK, StepResult, WOULD_CHANGE, html_table, text_table
from hubrunbook.troubleshoot import catalog
from hubrunbook.troubleshoot import checks as _checks  # noqa: F401  (importing the package registers every check)
from hubrunbook.troubleshoot.catalog import _RANK, _SEV_COLOR, ERROR, INFO, SEVERITIES, WARNING, Check, Context, Finding


@dataclass
class CheckRun:
    id: str
    status: str  # ok | found | failed | timeout
    seconds: float


@dataclass
class Report:
    """The result of one scan: findings (errors first) and how each check ran."""

    findings: list[Finding]
    runs: list[CheckRun]
    started: str
    seconds: float
    prefix: str = ""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def ids(self, severity: str | None = None) -> set[str]:
        return {f.id for f in self.findings if severity is None or f.severity == severity}

    def headline(self) -> str:
        n = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        state = "no errors" if self.ok else f"{n[ERROR]} error(s)"
        return (f"{state}, {n[WARNING]} warning(s), {n[INFO]} info — {len(self.runs)} checks in {self.seconds:.1f} s"
                f" on {self.prefix}")

    def rows(self) -> list[tuple]:
        return [(f.severity, f.id, f.seen, f.evidence, f.fix, "yes" if f.repairable else "no") for f in self.findings]

    HEADER = ("severity", "finding", "seen", "evidence", "fix", "repair")
    TEXT_HEADER = ("severity", "finding", "seen", "repair")

    def _text_rows(self) -> list[tuple]:
        cut = lambda s, n: s if len(s) <= n else s[: n - 1] + "…"
        return [(f.severity, f.id, cut(f.seen, 110), "yes" if f.repairable else "no") for f in self.findings]

    def _repr_html_(self) -> str:
        color = _SEV_COLOR[ERROR] if not self.ok else COLORS[OK]
        body = html_table(self.HEADER, self.rows()) if self.findings else "<p>Nothing to report.</p>"
        return f"<p style='color:{color};font-weight:bold'>{html.escape(self.headline())}</p>" + body

    def __repr__(self) -> str:
        return self.headline() + ("\n" + text_table(self.TEXT_HEADER, self._text_rows()) if self.findings else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started, "seconds": round(self.seconds, 3), "prefix": self.prefix, "ok": self.ok,
            "findings": [f.as_dict() for f in self.findings],
            "checks": [{"id": r.id, "status": r.status, "seconds": round(r.seconds, 3)} for r in self.runs],
        }


def _run_one(check: Check, ctx: Context) -> list[Finding]:
    found = check.detect(ctx) or []
    for f in found:
        if not isinstance(f, Finding):
            raise TypeError(f"check {check.id} returned {type(f).__name__}, not Finding")
    return found


def _crash_finding(check: Check, what: str, evidence: str) -> Finding:
    return Finding(f"check-failed:{check.id}", WARNING, f"check {check.id} could not run", what, evidence,
                   "the check itself failed, so this part of the deployment was not examined",
                   "run the check's steps by hand (see the catalog) or report the traceback as a hubrunbook bug")


def run_checks(params, *, timeout_per_check: float = 10, checks: list[Check] | None = None,
               log_tail_kb: int = 256) -> Report:
    """Run every catalog check (read-only) in parallel; the whole scan is bounded by *timeout_per_check* seconds.

    A check that raises or times out becomes a finding of its own; the scan never crashes.
    """
    from hubrunbook.hub.envfile import read_hub_env

    checks = catalog.CATALOG if checks is None else checks
    try:
        read_hub_env(params)  # register the hub's secrets for masking before any finding is made
    except RunbookError:
        pass  # an unreadable hub.env becomes a finding of each check that reads it
    ctx = Context(params, log_tail_kb=log_tail_kb)
    t0 = time.monotonic()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # every check starts at once (they mostly wait on subprocesses and sockets), so one deadline bounds the scan
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="hrb-check")
    futures = [(c, pool.submit(_timed, c, ctx)) for c in checks]
    deadline = t0 + timeout_per_check
    findings: list[Finding] = []
    runs: list[CheckRun] = []
    for check, fut in futures:
        try:
            found, secs = fut.result(timeout=max(0.0, deadline - time.monotonic()))
            runs.append(CheckRun(check.id, "found" if found else "ok", secs))
            findings += found
        except concurrent.futures.TimeoutError:
            runs.append(CheckRun(check.id, "timeout", timeout_per_check))
            findings.append(_crash_finding(check, f"did not finish within {timeout_per_check:g} s", "timeout"))
        except Exception as exc:  # a broken check must not break the scan
            runs.append(CheckRun(check.id, "failed", 0.0))
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            findings.append(_crash_finding(check, f"raised {type(exc).__name__}", secretref.mask(tb)))
    pool.shutdown(wait=False, cancel_futures=True)
    findings.sort(key=lambda f: _RANK[f.severity])
    return Report(findings, runs, started, time.monotonic() - t0, str(params.layout.root))


def _timed(check: Check, ctx: Context):
    t = time.monotonic()
    return _run_one(check, ctx), time.monotonic() - t


def check_report(report: Report) -> StepResult:
    """A StepResult for the run summary: failed while an error-level finding remains."""
    rows = [(f.id, f.severity, f.seen) for f in report.findings]
    return StepResult("check_deployment", FAILED if report.errors else OK, report.headline(), rows,
                      header=("finding", "severity", "seen"))


def write_report_json(report: Report, path: str | Path, *, before: Report | None = None,
                      repairs: StepResult | None = None) -> Path:
    """Write *report* as JSON to *path* (mode 0640, replaced atomically); optionally the scan *before* repairs and
    the *repairs* step. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = report.as_dict()
    if before is not None:
        data["before_repairs"] = before.as_dict()
    if repairs is not None:
        data["repairs"] = repairs.as_dict()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    return path


def apply_repairs(params, report: Report, *, dry_run: bool = False) -> list[StepResult]:
    """Run the repair of every repairable finding, in catalog order (processes first, hub restart last).

    Each repair is idempotent; one that fails becomes a failed StepResult and the others still run.
    """
    by_id = {c.id: c for c in catalog.CATALOG}
    order = {c.id: i for i, c in enumerate(catalog.CATALOG)}
    todo = sorted((f for f in report.findings if f.repairable and f.check in by_id), key=lambda f: order[f.check])
    results: list[StepResult] = []
    done: set[tuple] = set()
    for f in todo:
        check = by_id[f.check]
        key = (check.repair, tuple(sorted((k, str(v)) for k, v in f.data.items())))
        if key in done:
            continue
        done.add(key)
        name = getattr(check.repair, "__name__", f.id)
        try:
            results.append(check.repair(params, f, dry_run=dry_run))
        except RunbookError as exc:
            results.append(StepResult(name, FAILED, secretref.mask(str(exc)).splitlines()[0]))
    if not todo:
        results.append(StepResult("apply_repairs", OK, "nothing to repair"))
    elif dry_run:
        results = [r if r.status != OK else StepResult(r.step, WOULD_CHANGE, r.detail) for r in results]
    return results


def catalog_rows() -> list[tuple[str, str, str, str, str, str]]:
    """The catalog as a table: (id, problem, example, cause, action, repair) for every check and known log message."""
    from hubrunbook.troubleshoot.logscan import LOG_MESSAGES

    rows = [(c.id, c.title, c.example, c.cause, c.action, "yes" if c.repair else "no") for c in catalog.CATALOG]
    rows += [(f"log:{m.id}", m.title, m.example, m.cause, m.action, "-") for m in LOG_MESSAGES]
    return rows


def render_catalog_markdown() -> str:
    """docs/troubleshoot-catalog.md: the catalog of checks and known log messages as one table (``make runbooks``)."""
    cell = lambda s: s.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "# Troubleshooting catalog",
        "",
        "What `runbooks/troubleshoot.ipynb` checks, like JupyterHub's \"log messages\" page: each check (a read-only",
        "detector in `lib/hubrunbook/troubleshoot/checks/`) and each known log message",
        "(`lib/hubrunbook/troubleshoot/logscan.py`) with an example of what you see, its cause and the action.",
        "*Repair* says whether `apply_fixes: true` repairs it.",
        "Generated by `make runbooks`; a unit test keeps it in step with the code.",
        "",
        "| id | problem | example | cause | action | repair |",
        "|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in catalog_rows()]
    return "\n".join(lines) + "\n"


class Catalog:
    """Displays the catalog (checks and known log messages) as a table in a notebook."""

    HEADER = ("id", "problem", "example", "cause", "action", "repair")

    def _repr_html_(self) -> str:
        return html_table(self.HEADER, catalog_rows())

    def __repr__(self) -> str:
        return "\n".join(f"{r[0]}: {r[1]}\n  example: {r[2]}\n  cause: {r[3]}\n  action: {r[4]}" for r in catalog_rows())
