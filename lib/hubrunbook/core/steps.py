"""Step results, the journal of a run, and their display in a notebook."""
from __future__ import annotations

import html
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hubrunbook.core import secretref
from hubrunbook.core.errors import RunbookError, VerificationError

UNCHANGED, CHANGED, WOULD_CHANGE, FAILED, OK = "unchanged", "changed", "would change", "failed", "ok"
SKIPPED = "skipped"  # a check not run (dry run): never reported as passing
ICONS = {UNCHANGED: "✔", CHANGED: "✚", WOULD_CHANGE: "…", FAILED: "✘", OK: "✔", SKIPPED: "–"}
COLORS = {UNCHANGED: "#2e7d32", CHANGED: "#1565c0", WOULD_CHANGE: "#ef6c00", FAILED: "#c62828", OK: "#2e7d32", SKIPPED: "#757575"}


def html_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """Render rows as a small HTML table (cells escaped); a cell that is a status is coloured."""
    head = "".join(f"<th style='text-align:left'>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left{_status_style(c)}'>{html.escape(str(c))}</td>" for c in row)
        + "</tr>" for row in rows
    )
    return f"<table class='hrb-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status_style(cell) -> str:
    color = COLORS.get(str(cell)) if isinstance(cell, str) else None
    return f";color:{color};font-weight:bold" if color else ""


def status_row(step: str, status: str, detail: str, *, number: int | None = None) -> str:
    """One step as a coloured row: a bar and tint in the status colour, icon and status, step name, detail."""
    color = COLORS.get(status, "#000000")
    num = f"<span class='hrb-num' style='color:#757575;min-width:2em'>{number}</span>" if number else ""
    return (
        f"<div class='hrb-step' data-step='{html.escape(step, quote=True)}' data-status='{html.escape(status, quote=True)}'"
        f" style='display:flex;gap:0.8em;align-items:baseline;border-left:5px solid {color};background:{color}14;"
        f"padding:3px 8px;margin:1px 0;font-family:var(--jp-ui-font-family,sans-serif)'>{num}"
        f"<span class='hrb-status' style='color:{color};font-weight:bold;min-width:8.5em;white-space:nowrap'>"
        f"{ICONS.get(status, '')} {html.escape(status)}</span>"
        f"<code class='hrb-name' style='min-width:14em'>{html.escape(step)}</code>"
        f"<span class='hrb-detail'>{html.escape(detail)}</span></div>"
    )


def text_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    """Render rows as an aligned plain-text table."""
    n = max([len(header)] + [len(r) for r in rows])
    pad = lambda r: tuple(str(c) for c in r) + ("",) * (n - len(r))
    cells = [pad(header)] + [pad(r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(n)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([fmt(cells[0]), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in cells[1:]])


@dataclass
class StepResult:
    """What one step found or did: status, one-line detail, optional table rows."""

    step: str
    status: str
    detail: str
    rows: list[tuple] = field(default_factory=list)
    header: tuple[str, ...] = ("check", "result", "detail")
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.detail = secretref.mask(self.detail)
        self.rows = [tuple(secretref.mask(str(c)) for c in r) for r in self.rows]

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def _repr_html_(self) -> str:
        return status_row(self.step, self.status, self.detail) + (html_table(self.header, self.rows) if self.rows else "")

    def __repr__(self) -> str:
        text = f"[{self.status}] {self.step}: {self.detail}"
        if self.rows:
            text += "\n" + text_table(self.header, self.rows)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "status": self.status, "detail": self.detail, "rows": [list(r) for r in self.rows]}


class Summary:
    """The table of every step of a run; displayed at the end of a runbook."""

    def __init__(self, runbook: str, results: list[StepResult]):
        self.runbook, self.results = runbook, results

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        return not any(r.failed for r in self.results)

    def headline(self) -> str:
        c = self.counts
        state = "OK" if self.ok else "FAILED"
        parts = ", ".join(f"{n} {s}" for s, n in sorted(c.items()))
        return f"{self.runbook}: {state} — {len(self.results)} steps ({parts})"

    def _rows(self):
        return [(i + 1, r.step, r.status, r.detail) for i, r in enumerate(self.results)]

    def _repr_html_(self) -> str:
        color = COLORS[OK] if self.ok else COLORS[FAILED]
        head = (f"<div class='hrb-summary' data-ok='{str(self.ok).lower()}' style='color:{color};font-weight:bold;"
                f"font-size:1.1em;margin:4px 0'>{'✔' if self.ok else '✘'} {html.escape(self.headline())}</div>")
        return head + "".join(status_row(r.step, r.status, r.detail, number=i + 1) for i, r in enumerate(self.results))

    def __repr__(self) -> str:
        return self.headline() + "\n" + text_table(("#", "step", "status", "detail"), self._rows())


class Run:
    """The journal of one runbook run: calls steps, records results, writes the audit log."""

    def __init__(self, runbook: str, params, *, dry_run: bool | None = None, audit_log: str | os.PathLike | None = None):
        """*dry_run*: the run's dry run (default params.dry_run; uninstall.ipynb also makes an unconfirmed run one).
        *audit_log*: where the run's audit lines go (default <prefix>/state/audit.jsonl, once the prefix exists;
        uninstall.ipynb writes beside its final backup, outside the prefix it removes)."""
        from hubrunbook.host.preflight import check_trusted_paths
        from hubrunbook.core.runlock import acquire

        check_trusted_paths(params)  # root never runs code from a path another user can change, not even in a dry run
        acquire(params.prefix, runbook)  # one run at a time per prefix, held until this process ends
        # what the run creates for users (the hub env, the proxy, homes) must be readable by them whatever umask the
        # operator's shell has (077 on hardened servers); secrets are written with explicit 0600/0700 modes
        os.umask(0o022)
        self.runbook, self.params = runbook, params
        self._dry_run = None if dry_run is None else bool(dry_run)
        self.audit_log = Path(audit_log) if audit_log is not None else None
        self.results: list[StepResult] = []
        self._pending: list[dict] = []
        self.started = datetime.now(timezone.utc)

    @property
    def dry_run(self) -> bool:
        """The run's dry run: params.dry_run unless the run was started with its own."""
        return self.params.dry_run if self._dry_run is None else self._dry_run

    def __call__(self, step: Callable[..., StepResult], *args, **kwargs) -> StepResult:
        """Run *step* with the run's params (and dry_run where the step takes it); record its result."""
        if "dry_run" in inspect.signature(step).parameters:
            kwargs.setdefault("dry_run", self.dry_run)
        t0 = time.monotonic()
        try:
            result = step(self.params, *args, **kwargs)
        except RunbookError as exc:
            msg = secretref.mask(str(exc))
            self._record(StepResult(step.__name__, FAILED, msg.splitlines()[0] if msg else type(exc).__name__), t0)
            err = type(exc)(f"step {step.__name__} failed: {msg}")
            err.step, err.cause = step.__name__, msg
            raise err from None
        self._record(result, t0)
        return result

    def _record(self, result: StepResult, t0: float) -> None:
        self.results.append(result)
        self._pending.append({
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runbook": self.runbook,
            "seconds": round(time.monotonic() - t0, 3),
            **result.as_dict(),
        })
        self._flush_audit()

    def _flush_audit(self) -> None:
        """Append pending entries to <prefix>/state/audit.jsonl once the prefix exists, or to the run's own audit_log
        (its directory made 0700); never in dry runs."""
        if self.dry_run:
            return
        if self.audit_log is not None:
            self.audit_log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.audit_log
        elif not self.params.layout.root.is_dir():
            return
        else:
            self.params.layout.state_dir.mkdir(mode=0o700, exist_ok=True)
            path = self.params.layout.audit_log
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with open(fd, "a") as fh:
            fh.writelines(json.dumps(e) + "\n" for e in self._pending)
        self._pending.clear()

    def release(self) -> None:
        """End the run: give back the prefix's lock (also given back when the kernel ends)."""
        from hubrunbook.core.runlock import release

        release(self.params.prefix)

    def summary(self) -> Summary:
        """Return the summary and end the run; raise VerificationError (after showing it) when any step failed."""
        self.release()
        summary = Summary(self.runbook, list(self.results))
        if not summary.ok:
            try:
                from IPython.display import display

                display(summary)
            except ImportError:  # pragma: no cover - outside a kernel
                pass
            failed = ", ".join(r.step for r in self.results if r.failed)
            err = VerificationError(f"{self.runbook} failed: {failed}")
            err.what, err.cause = f"{self.runbook} failed", f"failed step(s): {failed}"
            err.next_action = ("each failed row above says why; fix what it names and run again, or run "
                               "troubleshoot.ipynb (apply_fixes: true repairs what is ours)")
            raise err
        return summary
