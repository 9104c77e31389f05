"""The steps of troubleshoot.ipynb: scan, explain, repair on request, scan again, prove a user gets in, report.

Each takes the validated params first (so ``Run`` can call and journal it). Only
:func:`repair_deployment` (with ``apply_fixes``) and :func:`check_user_spawns` change anything.
"""
from __future__ import annotations

from pathlib import Path

from hubrunbook.troubleshoot import diagnose
from hubrunbook.troubleshoot.catalog import ERROR, INFO, Finding
from hubrunbook.troubleshoot.diagnose import Report
from hubrunbook.core.errors import RunbookError
from hubrunbook.core.steps import CHANGED, FAILED, OK, SKIPPED, UNCHANGED, WOULD_CHANGE, StepResult


def report_path(params) -> Path:
    """Where the JSON report goes: report_file, or <prefix>/state/troubleshoot.json."""
    return Path(params.report_file) if params.report_file else params.layout.troubleshoot_report


def scan_deployment(params) -> Report:
    """Run every catalog check, read-only, the whole scan bounded by scan_timeout."""
    return diagnose.run_checks(params, timeout_per_check=params.scan_timeout, log_tail_kb=params.log_tail_kb)


class Details:
    """Every error and warning of a report with its evidence, cause and fix, for reading one by one."""

    def __init__(self, findings: list[Finding]):
        self.findings = [f for f in findings if f.severity != INFO]

    def _repr_html_(self) -> str:
        if not self.findings:
            return "<p>No errors or warnings: nothing to explain.</p>"
        return "".join(f._repr_html_() for f in self.findings)

    def __repr__(self) -> str:
        return "\n\n".join(repr(f) for f in self.findings) or "No errors or warnings: nothing to explain."


def explain_findings(report: Report) -> Details:
    return Details(report.findings)


def repair_deployment(params, report: Report, *, dry_run: bool = False) -> StepResult:
    """Repair every repairable finding when apply_fixes is true; otherwise say what a repair would do.

    Repairs act only on what the deployment owns (see repairs.py). Each one looks again after acting.
    """
    fixable = [f for f in report.findings if f.repairable]
    by_hand = [f for f in report.findings if not f.repairable and f.severity == ERROR]
    hand_rows = [(f.id, "by hand", f.fix) for f in by_hand]
    if not fixable:
        return StepResult("repair_deployment", UNCHANGED, "nothing that can be repaired automatically"
                          + (f"; {len(by_hand)} error(s) need you (see their fix)" if by_hand else ""),
                          hand_rows, ("finding", "repair", "detail"))
    dry = dry_run or not params.apply_fixes
    results = diagnose.apply_repairs(params, report, dry_run=dry)
    rows = [(r.step, r.status, r.detail) for r in results] + hand_rows
    failed = [r for r in results if r.failed]
    if dry:
        why = "dry_run" if dry_run else "apply_fixes is false"
        return StepResult("repair_deployment", WOULD_CHANGE,
                          f"{len(results)} repair(s) available, none applied ({why}); set apply_fixes: true to apply",
                          rows, ("repair", "result", "detail"))
    changed = [r for r in results if r.status == CHANGED]
    status = FAILED if failed else CHANGED if changed else UNCHANGED
    return StepResult("repair_deployment", status,
                      f"{len(changed)} repaired, {len(failed)} failed, {len(results) - len(changed) - len(failed)} "
                      "already fine", rows, ("repair", "result", "detail"))


def rescan_deployment(params, report: Report, repairs: StepResult) -> Report:
    """Scan again after repairs (the same report when nothing was changed)."""
    if repairs.status not in (CHANGED, FAILED):
        return report
    return scan_deployment(params)


def _verify_user(params) -> str | None:
    return params.verify_user or (params.users[0] if params.users else None)


def check_user_spawns(params, report: Report) -> StepResult:
    """After repairs: a user logs in with their password and gets a server, which is stopped again.

    Skipped when apply_fixes is false, in a dry run, or when there is no user to try; failed while errors remain.
    """
    from hubrunbook.hub import probe
    from hubrunbook.host.users import user_password

    name = "check_user_spawns"
    user = _verify_user(params)
    if not params.apply_fixes or params.dry_run:
        why = "dry_run" if params.dry_run else "apply_fixes is false (diagnosis only)"
        return StepResult(name, SKIPPED, f"not run: {why}")
    if report.errors:
        return StepResult(name, FAILED, f"not run: {len(report.errors)} error(s) remain ({', '.join(sorted(report.ids(ERROR)))})")
    if user is None:
        return StepResult(name, SKIPPED, "not run: no users parameter (and no verify_user) to log in with")
    url = params.public_url
    try:
        session = probe.login(url, user, user_password(params, user))
        seconds = probe.start_server(session, url, user, timeout=max(60, params.start_timeout))
        probe.stop_server(session, url, user)
    except RunbookError as exc:
        return StepResult(name, FAILED, str(exc).splitlines()[0], [("log in and spawn", FAILED, str(exc).splitlines()[0])])
    return StepResult(name, OK, f"{user} logged in at {url}/hub/login and got a server in {seconds:.1f} s (stopped again)",
                      [("log in", OK, f"{user}: 302 and login cookie"), ("spawn", OK, f"server ready in {seconds:.1f} s"),
                       ("stop", OK, "server stopped")])


def save_report(params, before: Report, repairs: StepResult, after: Report) -> StepResult:
    """Write the JSON report (findings before and after, the repairs) for automation; mode 0640."""
    path = report_path(params)
    diagnose.write_report_json(after, path, before=before, repairs=repairs)
    return StepResult("save_report", OK, f"wrote {path}: {len(after.errors)} error(s) remain")


def check_findings(params, report: Report) -> StepResult:
    """The verdict: failed while an error-level finding remains (headless runs then exit non-zero)."""
    return diagnose.check_report(report)


def catalog() -> diagnose.Catalog:
    return diagnose.Catalog()
